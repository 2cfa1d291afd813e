"""The four benchmark models' training epochs, shared by bench/drivers/run.py and
bench/drivers/precision.py: the `train` command of each, and bench/peers/torch_fit.py's
command for the same epochs in PyTorch."""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.path.join(HERE, "..", "peers")  # the alternatives measured against

# label, preset, filters, fc units, {network: (batch, optimizer, lr, cosine, warmup, augment)}, images (full, quick)
CONFIGS = [
    # The quick preset's network (L4 FS3 FL16), trained as it was before the
    # preset took the recipe (batch 64, ±2-pixel shifts): both sides get it.
    ("quick's network (L4 FS3 FL16)", "quick", 16, 64,
     {"autoencoder": (64, "adam", 5e-3, True, 0.3, 0), "classifier": (64, "adam", 1e-3, True, 0.0, 2)}, (12000, 6000)),
    ("reference (L4 FS3 FL32)", "paper", 32, 32,
     {"autoencoder": (40, "rmsprop", 1e-3, False, 0.0, 0), "classifier": (64, "rmsprop", 1e-3, False, 0.0, 0)},
     (5000, 3000)),
]


def commands(bin_dir, py, images, labels, work, config, network, limit, threads):
    """(ours, theirs, our run directory): two epochs of `network` — the
    autoencoder's 2 epochs, or the classifier's frozen epoch and one
    fine-tuning epoch on the autoencoder run in `work` — by `train` and by
    bench/peers/torch_fit.py."""
    label, preset, filters, fc_units, nets, _ = config
    batch, opt, lr, cosine, warmup, augment = nets[network]
    ae_dir = os.path.join(work, f"ae{filters}")
    common = ["--images", images, "--limit", str(limit), "--threads", str(threads)]
    # Every setting torch_fit.py is given, spelt out: the presets' own
    # (e.g. the accurate preset's 5 % validation share, the quick preset's
    # batch of 128, weight average, affine augmentation and label
    # smoothing) would make the two sides' work differ.
    same = ["--optimizer", opt, "--lr", str(lr), "--cosine", str(cosine).lower(), "--warmup", str(warmup),
            "--val-split", "0.2"]
    if network == "classifier":
        same += ["--finetune-lr", str(lr), "--augment", str(augment), "--ema", "0", "--label-smoothing", "0"]
    if network == "autoencoder":
        out = ae_dir
        ours = [os.path.join(bin_dir, "train"), "autoencoder", "--preset", preset, "--epochs", "2",
                "--batch-size", str(batch), *same, *common, "--quiet", "--force", "--out", out]
    else:
        out = os.path.join(work, "clf")
        ours = [os.path.join(bin_dir, "train"), "classifier", "--preset", preset, "--autoencoder", ae_dir,
                "--labels", labels, "--test-images", "none", "--frozen-epochs", "1", "--epochs", "1",
                "--batch-size", str(batch), *same, *common, "--quiet", "--force", "--out", out]
    theirs = [py, os.path.join(PEERS, "torch_fit.py"), "--network", network, "--filters", str(filters),
              "--fc-units", str(fc_units), "--batch", str(batch), "--optimizer", opt, "--lr", str(lr),
              "--augment", str(augment), "--warmup", str(warmup), *common]
    theirs += (["--cosine"] if cosine else []) + (
        ["--labels", labels, "--frozen-epochs", "1", "--epochs", "2"] if network == "classifier" else ["--epochs", "2"])
    return ours, theirs, out


def epoch2(run):
    """(seconds of epoch 2, val_loss, val_accuracy or None) from a run's history.csv."""
    import csv
    rows = list(csv.DictReader(open(os.path.join(run, "history.csv"))))
    r = rows[1]
    acc = r.get("val_accuracy")
    return float(r["seconds"]), float(r["val_loss"]), (float(acc) if acc not in (None, "") else None)
