"""What augmentation costs a training epoch: the real `train classifier`
as `make train` runs it (quick preset, its batch and split, `--precision
auto`; fine-tuning epoch 2, timed by its own history.csv) with
`--augment none`, `2` (whole-pixel shifts) and
`rotate=15,shift=0.1,zoom=0.1` (one affine resample per batch), interleaved
round by round in one run; and, because two such epochs differ by more
than the augmentation costs, the augmentation alone (`bench augment-time`:
the loop's own gathers, draws and resample over an epoch's batches, with
no training; the runs' batch and training images), as a share of the plain
epoch. Writes bench/results/augment.md and
bench/results/augment.json; `make bench` runs it, and it runs alone too.

usage: python bench/drivers/augment_cost.py BIN_DIR DATA_DIR [--quick]
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile

from machine import cpu

BIN, DATA = sys.argv[1], sys.argv[2]
QUICK = "--quick" in sys.argv
ROUNDS = 2 if QUICK else 4
LIMIT = 6000 if QUICK else 12000
HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "..", "results")  # what a run writes
IMAGES = os.path.join(DATA, "train-images-idx3-ubyte")
LABELS = os.path.join(DATA, "train-labels-idx1-ubyte")
SPECS = ["none", "2", "rotate=15,shift=0.1,zoom=0.1"]


def main():
    name, flags, cores = cpu()
    print(f"augment_cost: {name}, {cores} CPUs; flags: {' '.join(flags)}", file=sys.stderr)
    work = tempfile.mkdtemp()
    ae = os.path.join(work, "ae")
    common = ["--images", IMAGES, "--limit", str(LIMIT), "--threads", "2", "--quiet", "--force"]
    subprocess.run([os.path.join(BIN, "train"), "autoencoder", "--epochs", "1", *common, "--out", ae], check=True)
    samples = {s: [] for s in SPECS}
    for r in range(ROUNDS):
        for spec in SPECS:
            out = os.path.join(work, "clf")
            subprocess.run([os.path.join(BIN, "train"), "classifier", "--autoencoder", ae, "--labels", LABELS,
                            "--test-images", "none", "--frozen-epochs", "1", "--epochs", "1", "--augment", spec,
                            "--precision", "auto", "--tensorboard", "false", *common, "--out", out],
                           check=True, stdout=subprocess.DEVNULL)
            cfg = json.load(open(os.path.join(out, "config.json")))
            count, t = cfg["dataset"]["count"], cfg["train"]
            run = {"train_images": count - round(count * t["val_split"]), "batch": t["batch_size"],
                   "precision": t.get("precision", "32")}
            rows = open(os.path.join(out, "history.csv")).read().strip().splitlines()
            samples[spec].append(float(rows[2].split(",")[5]))  # epoch 2: fine-tuning
            print(f"augment_cost: round {r + 1} {spec}: {samples[spec][-1]:.2f} s", file=sys.stderr)
    med = {s: statistics.median(v) for s, v in samples.items()}
    base = med["none"]
    alone = {}
    for spec in SPECS:
        out = subprocess.run([os.path.join(BIN, "bench"), "--threads", "2", "augment-time", "--images", IMAGES,
                              "--limit", str(run["train_images"]), "--batch", str(run["batch"]), "--spec", spec,
                              "--reps", "7"],
                             check=True, capture_output=True, text=True).stdout
        alone[spec] = json.loads(out.strip().splitlines()[-1])
        print(f"augment_cost: {spec} alone: {alone[spec]['seconds']:.3f} s per epoch", file=sys.stderr)
    result = {"cpu": name, "flags": flags, "cores": cores, "images": LIMIT, **run, "rounds": ROUNDS, "seconds": med,
              "samples": samples,
              "overhead": {s: med[s] / base - 1 for s in SPECS}, "alone": alone,
              "alone_share": {s: (alone[s]["seconds"] - alone["none"]["seconds"]) / base for s in SPECS}}
    json.dump(result, open(os.path.join(RESULTS, "augment.json"), "w"), indent=1)
    lines = [
        "# What augmentation costs a training epoch",
        "",
        f"`train classifier` as `make train` runs it (quick preset, `--precision auto`: {run['precision']}), "
        f"fine-tuning epoch on {run['train_images']} MNIST training images, batch {run['batch']}, 2 threads; "
        f"median of {ROUNDS} interleaved rounds (`python bench/drivers/augment_cost.py BIN DATA`).",
        f"CPU: {name}; flags: {' '.join(flags)}.",
        "",
        "| --augment | epoch seconds (median) | rounds (min–max) | vs none | gathers + augmentation alone, s per epoch (median of 7) | augmentation ÷ the plain epoch |",
        "|---|---|---|---|---|---|",
    ]
    for s in SPECS:
        lines.append(f"| `{s}` | {med[s]:.2f} | {min(samples[s]):.2f}–{max(samples[s]):.2f} | "
                     f"{100 * (med[s] / base - 1):+.1f} % | {alone[s]['seconds']:.3f} | "
                     f"{100 * result['alone_share'][s]:.1f} % |")
    lines += ["", "The last column is the cost the 10 % budget is about: what the training loop spends "
              "augmenting (its batch gathers, which `none` does too, subtracted), measured without the training, "
              "whose rounds spread by more than it, as a share of the median plain epoch."]
    open(os.path.join(RESULTS, "augment.md"), "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
