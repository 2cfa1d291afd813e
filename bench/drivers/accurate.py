"""`train --preset accurate` over seeds, against Deotte's recipe in PyTorch
(bench/peers/deotte.py) given the same wall-clock per seed, interleaved seed by
seed in one run. For each seed: both networks of the preset as `make train`
runs them (autoencoder, then the classifier with its test report), the
time they took, the validation curve and the test accuracy (the test set is
read once, at the end of each run); then deotte.py trained for that time.
Writes bench/results/accurate.md and bench/results/accurate.json.

usage: python bench/drivers/accurate.py BIN_DIR DATA_DIR [--seeds 1,2,3] [--precision auto]
"""
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from machine import cpu

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.path.join(HERE, "..", "peers")  # the alternatives measured against
RESULTS = os.path.join(HERE, "..", "results")  # what a run writes
FILES = [("images", "train-images-idx3-ubyte"), ("labels", "train-labels-idx1-ubyte"),
         ("test_images", "t10k-images-idx3-ubyte"), ("test_labels", "t10k-labels-idx1-ubyte")]


def log(msg):
    print(f"accurate: {msg}", file=sys.stderr, flush=True)


def ours(train, files, precision, seed, work):
    ae, clf = os.path.join(work, f"ae-{seed}"), os.path.join(work, f"clf-{seed}")
    flags = ["--preset", "accurate", "--seed", str(seed), "--precision", precision, "--threads", "2", "--quiet",
             "--force", "--tensorboard", "false"]
    t0 = time.perf_counter()
    subprocess.run([train, "autoencoder", "--images", files["images"], *flags, "--out", ae], check=True)
    subprocess.run([train, "classifier", "--autoencoder", ae, "--images", files["images"], "--labels", files["labels"],
                    "--test-images", files["test_images"], "--test-labels", files["test_labels"], *flags, "--out", clf],
                   check=True)
    seconds = time.perf_counter() - t0
    rows = list(csv.DictReader(open(os.path.join(clf, "history.csv"))))
    test = json.load(open(os.path.join(clf, "test_metrics.json")))
    settings = json.load(open(os.path.join(clf, "config.json")))["train"]
    return {"seed": seed, "seconds": seconds, "precision": settings.get("precision", "32"),
            "val_split": settings["val_split"], "epochs": len(rows),
            "val_accuracy": float(rows[-1]["val_accuracy"]), "val_curve": [float(r["val_accuracy"]) for r in rows],
            "test_accuracy": test["accuracy"], "test_epoch": test.get("epoch")}


def theirs(files, seed, budget, val_split, bf16):
    cmd = [sys.executable, os.path.join(PEERS, "deotte.py"), "--images", files["images"], "--labels", files["labels"],
           "--test-images", files["test_images"], "--test-labels", files["test_labels"], "--seed", str(seed),
           "--budget", str(budget), "--val-split", str(val_split)] + (["--bf16"] if bf16 else [])
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])


def stats(v):
    return statistics.mean(v), (statistics.stdev(v) if len(v) > 1 else float("nan"))


def report(result):
    """The markdown of a run's `accurate.json`: the command, the per-seed table, mean ± sd, the curves."""
    rows, seeds, precision = result["seeds"], [r["seed"] for r in result["seeds"]], result["precision"]
    held_out = f"{rows[0]['train'].get('val_split', 0.2):.0%}"
    ot, dt = stats([r["train"]["test_accuracy"] for r in rows]), stats([r["deotte"]["test_accuracy"] for r in rows])
    ov, dv = stats([r["train"]["val_accuracy"] for r in rows]), stats([r["deotte"]["val_accuracy"] for r in rows])
    L = [f"CPU: {result['cpu']}; flags: {' '.join(result['flags'])}; {result['cores']} CPUs, 2 threads; {result.get('date', '')}. "
         f"One run of `python bench/drivers/accurate.py BIN DATA --seeds {','.join(map(str, seeds))} --precision {precision}`; "
         "every figure below is from that run. Per seed: `train autoencoder` and `train classifier --preset accurate` "
         "(with its test report), timed together; then `bench/peers/deotte.py` (Deotte's single CNN with BatchNorm and "
         "dropout, rotation ±15°, zoom ±0.15, shift ±0.1, Adam 1e-3·0.95^epoch, batch 64, trained from scratch on the "
         "same share of the training images) for whole epochs within the same seconds, in the same precision. "
         f"Validation accuracy is the last epoch's on the held-out {held_out} of the training images; "
         "the test set is read once per run.", "",
         "| seed | train: seconds | epochs | val accuracy | **test accuracy** | deotte.py: epochs | val accuracy | **test accuracy** |",
         "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        o, t = r["train"], r["deotte"]
        L.append(f"| {r['seed']} | {o['seconds']:.0f} ({o['precision']}) | {o['epochs']} | {o['val_accuracy']:.4f} | "
                 f"**{o['test_accuracy']:.4f}** | {t['epochs']} | {t['val_accuracy']:.4f} | **{t['test_accuracy']:.4f}** |")
    L.append(f"| mean ± sd | {statistics.mean(r['train']['seconds'] for r in rows):.0f} | | {ov[0]:.4f} ± {ov[1]:.4f} | "
             f"**{ot[0]:.4f} ± {ot[1]:.4f}** | | {dv[0]:.4f} ± {dv[1]:.4f} | **{dt[0]:.4f} ± {dt[1]:.4f}** |")
    L += ["", "Validation accuracy per epoch of `train --preset accurate` (stage 1 frozen, then fine-tuning):", ""]
    for r in rows:
        L.append(f"- seed {r['seed']}: " + " ".join(f"{v:.4f}" for v in r["train"]["val_curve"]))
    L += ["", "deotte.py's validation accuracy per epoch:", ""]
    for r in rows:
        L.append(f"- seed {r['seed']}: " + " ".join(f"{v:.4f}" for v in r["deotte"]["val_curve"]))
    return L


def main():
    BIN, DATA = sys.argv[1], sys.argv[2]
    arg = lambda name, default: sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default  # noqa: E731
    seeds = [int(s) for s in arg("--seeds", "1,2,3").split(",")]
    precision = arg("--precision", "auto")
    files = {k: os.path.join(DATA, f) for k, f in FILES}
    train = os.path.join(BIN, "train")
    name, flags, cores = cpu()
    log(f"{name}, {cores} CPUs; flags: {' '.join(flags)}")
    work = tempfile.mkdtemp()
    rows = []
    for seed in seeds:
        o = ours(train, files, precision, seed, work)
        log(f"seed {seed} train: {o}")
        t = theirs(files, seed, o["seconds"], o["val_split"], o["precision"] == "bf16-mixed")
        log(f"seed {seed} deotte.py: {t}")
        rows.append({"seed": seed, "train": o, "deotte": t})
    result = {"cpu": name, "flags": flags, "cores": cores, "precision": precision, "seeds": rows,
              "date": time.strftime("%Y-%m-%d")}
    json.dump(result, open(os.path.join(RESULTS, "accurate.json"), "w"), indent=1)
    L = ["# `--preset accurate` over seeds, beside Deotte's recipe in PyTorch", ""] + report(result)
    open(os.path.join(RESULTS, "accurate.md"), "w").write("\n".join(L) + "\n")
    print("\n".join(L))


if __name__ == "__main__":
    main()
