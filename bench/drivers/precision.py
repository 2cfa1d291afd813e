"""Mixed-precision training against PyTorch's: the four benchmark models'
epochs (bench/drivers/models.py) by `train --precision 32` and `bf16-mixed`, and
by bench/peers/torch_fit.py in float32 and under `torch.autocast("cpu",
dtype=torch.bfloat16)`, both channels-last, interleaved round by round;
then the quick preset's two networks over seeds in each precision (final
validation MSE and accuracy; the test set is not read), to show whether
bf16-mixed's figures differ from float32's by more than seeds do. On a CPU
without native bfloat16 it records the refusal and measures float32 only.
Writes bench/results/precision.md and bench/results/precision.json; `make bench` runs it.

usage: python bench/drivers/precision.py BIN_DIR DATA_DIR [--quick]
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile

from machine import cpu
from models import CONFIGS, commands, epoch2

BIN, DATA = sys.argv[1], sys.argv[2]
QUICK = "--quick" in sys.argv
ROUNDS = 2 if QUICK else 3
SEEDS = [1, 2] if QUICK else [1, 2, 3]
QUALITY_LIMIT = 6000 if QUICK else 12000
THREADS = 2
PY = sys.executable
HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "..", "results")  # what a run writes
IMAGES = os.path.join(DATA, "train-images-idx3-ubyte")
LABELS = os.path.join(DATA, "train-labels-idx1-ubyte")
TRAIN = os.path.join(BIN, "train")


def log(msg):
    print(f"precision: {msg}", file=sys.stderr, flush=True)


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def refusal():
    """`train --precision bf16-mixed`'s message where the CPU lacks bfloat16 (None: it runs)."""
    with tempfile.TemporaryDirectory() as d:
        p = subprocess.run([TRAIN, "autoencoder", "--images", IMAGES, "--limit", "600", "--epochs", "1", "--quiet",
                            "--precision", "bf16-mixed", "--out", os.path.join(d, "r")], capture_output=True, text=True)
    if p.returncode == 0:
        return None
    assert p.returncode == 2, p.stderr
    return p.stderr.strip()


def speed(bf16):
    rows = []
    work = tempfile.mkdtemp()
    for config in CONFIGS:
        limit = config[5][1] if QUICK else config[5][0]
        for network in ("autoencoder", "classifier"):
            ours, theirs, out = commands(BIN, PY, IMAGES, LABELS, work, config, network, limit, THREADS)
            seen = {}

            def rust(precision):
                def f():
                    subprocess.run(ours + ["--precision", precision], check=True, stdout=subprocess.DEVNULL)
                    secs, val, acc = epoch2(out)
                    cfg = json.load(open(os.path.join(out, "config.json")))
                    n = cfg["dataset"]["count"] - round(cfg["dataset"]["count"] * cfg["train"]["val_split"])
                    seen.setdefault(f"train {precision}", []).append((val, acc))
                    return n / secs
                return f

            def torch(extra, name):
                def f():
                    v = run_json(theirs + ["--channels-last", *extra])
                    seen.setdefault(name, []).append((v["val_loss"], None))
                    return v["train_images"] / v["epoch_seconds"][1]
                return f

            contenders = {"train 32": rust("32"), "PyTorch 32": torch([], "PyTorch 32")}
            if bf16:
                contenders["train bf16-mixed"] = rust("bf16-mixed")
                contenders["PyTorch bf16 autocast"] = torch(["--bf16"], "PyTorch bf16 autocast")
            if network == "autoencoder":
                rust("32")()  # the classifier's encoder run, and a warm-up
                seen.clear()
            samples = {k: [] for k in contenders}
            for r in range(ROUNDS):
                for k, f in contenders.items():
                    samples[k].append(f())
                    log(f"{config[0]} {network} round {r + 1} {k}: {samples[k][-1]:.0f} img/s")
            med = {k: statistics.median(v) for k, v in samples.items()}
            rows.append({"config": config[0], "network": network, "images": limit, "images_per_second": med,
                         "samples": samples, "val_loss": {k: [v for v, _ in s] for k, s in seen.items()}})
    return rows


def quality(bf16):
    """Each seed: the quick preset's autoencoder then classifier on QUALITY_LIMIT images, per precision."""
    precisions = ["32", "bf16-mixed"] if bf16 else ["32"]
    runs = {p: [] for p in precisions}
    work = tempfile.mkdtemp()
    common = ["--limit", str(QUALITY_LIMIT), "--threads", str(THREADS), "--quiet", "--force", "--tensorboard", "false"]
    for seed in SEEDS:
        for p in precisions:
            ae, clf = os.path.join(work, f"ae-{p}"), os.path.join(work, f"clf-{p}")
            flags = [*common, "--seed", str(seed), "--precision", p]
            subprocess.run([TRAIN, "autoencoder", "--images", IMAGES, *flags, "--out", ae], check=True)
            subprocess.run([TRAIN, "classifier", "--autoencoder", ae, "--images", IMAGES, "--labels", LABELS,
                            "--test-images", "none", *flags, "--out", clf], check=True)
            hist = lambda run: [l.split(",") for l in open(os.path.join(run, "history.csv")).read().split()[1:]]  # noqa: E731
            a, c = hist(ae), hist(clf)
            runs[p].append({"seed": seed, "ae_val_mse": float(a[-1][2]), "clf_val_accuracy": float(c[-1][4]),
                            "seconds": sum(float(r[5]) for r in a + c)})
            log(f"seed {seed} {p}: {runs[p][-1]}")
    return runs


def mean_sd(v):
    return statistics.mean(v), (statistics.stdev(v) if len(v) > 1 else float("nan"))


def main():
    name, flags, cores = cpu()
    log(f"{name}, {cores} CPUs; flags: {' '.join(flags)}")
    refused = refusal()
    bf16 = refused is None
    rows = speed(bf16)
    runs = quality(bf16)
    result = {"cpu": name, "flags": flags, "cores": cores, "rounds": ROUNDS, "refusal": refused, "speed": rows,
              "quality": {"images": QUALITY_LIMIT, "seeds": SEEDS, "runs": runs}}
    json.dump(result, open(os.path.join(RESULTS, "precision.json"), "w"), indent=1)
    L = ["# Mixed-precision training", "",
         f"CPU: {name}; flags: {' '.join(flags)}; {cores} CPUs, {THREADS} threads. One run of "
         f"`python bench/drivers/precision.py BIN DATA` (`make bench` runs it); every figure below is from that run.", ""]
    if refused:
        L += ["This CPU has no native bfloat16, so `--precision bf16-mixed` is refused (exit 2):", "",
              f"    {refused}", "", "and only float32 is measured.", ""]
    L += ["## Epoch speed", "",
          f"Training images per second of epoch 2 (the classifier's: fine-tuning), median of {ROUNDS} interleaved "
          "rounds; `train` timed by its own history.csv, PyTorch 2.13 eager by bench/peers/torch_fit.py, channels-last, "
          "its bf16 run under `torch.autocast(\"cpu\", dtype=torch.bfloat16)` over forward and loss, training and "
          "validation.", ""]
    keys = list(rows[0]["images_per_second"])
    L.append("| model | images | " + " | ".join(keys) + (" | train bf16 ÷ PyTorch bf16 | train bf16 ÷ train 32 |" if bf16 else " | train ÷ PyTorch |"))
    L.append("|---|---|" + "---|" * len(keys) + ("---|---|" if bf16 else "---|"))
    for r in rows:
        m = r["images_per_second"]
        cells = [f"{m[k]:.0f} ({min(r['samples'][k]):.0f}–{max(r['samples'][k]):.0f})" for k in keys]
        tail = ([f"**{m['train bf16-mixed'] / m['PyTorch bf16 autocast']:.2f}×**", f"{m['train bf16-mixed'] / m['train 32']:.2f}×"]
                if bf16 else [f"{m['train 32'] / m['PyTorch 32']:.2f}×"])
        L.append(f"| {r['network']} {r['config']} | {r['images']} | " + " | ".join(cells + tail) + " |")
    L += ["", "Cells: median (min–max of the rounds).", "",
          "## Quality over seeds", "",
          f"The quick preset (autoencoder 4 epochs, classifier 1 frozen + 8) on {QUALITY_LIMIT} training images "
          f"(a fifth held out for validation), seeds {', '.join(map(str, SEEDS))}; final epoch's validation figures "
          "(the test set is not read).", "",
          "| precision | autoencoder val MSE (mean ± sd) | classifier val accuracy (mean ± sd) | training seconds (mean) | per seed (MSE / accuracy) |",
          "|---|---|---|---|---|"]
    for p, rs in runs.items():
        mse, acc = mean_sd([r["ae_val_mse"] for r in rs]), mean_sd([r["clf_val_accuracy"] for r in rs])
        secs = statistics.mean(r["seconds"] for r in rs)
        per = "; ".join(f"{r['ae_val_mse']:.5f} / {r['clf_val_accuracy']:.4f}" for r in rs)
        L.append(f"| {p} | {mse[0]:.5f} ± {mse[1]:.5f} | {acc[0]:.4f} ± {acc[1]:.4f} | {secs:.1f} | {per} |")
    if bf16:
        a, b = runs["32"], runs["bf16-mixed"]
        d_mse = statistics.mean(r["ae_val_mse"] for r in b) - statistics.mean(r["ae_val_mse"] for r in a)
        d_acc = statistics.mean(r["clf_val_accuracy"] for r in b) - statistics.mean(r["clf_val_accuracy"] for r in a)
        sd_mse = statistics.mean([mean_sd([r["ae_val_mse"] for r in x])[1] for x in (a, b)])
        sd_acc = statistics.mean([mean_sd([r["clf_val_accuracy"] for r in x])[1] for x in (a, b)])
        L += ["", f"bf16-mixed − 32: val MSE {d_mse:+.5f} (seeds' sd {sd_mse:.5f}, {abs(d_mse) / sd_mse:.1f} sd), "
              f"val accuracy {d_acc:+.4f} (seeds' sd {sd_acc:.4f}, {abs(d_acc) / sd_acc:.1f} sd)."]
    open(os.path.join(RESULTS, "precision.md"), "w").write("\n".join(L) + "\n")
    print("\n".join(L))


if __name__ == "__main__":
    main()
