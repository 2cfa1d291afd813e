"""Reads training runs' TensorBoard logs with TensorBoard's own reader
(EventAccumulator, orphaned data not purged, so a resumed run's files must
hold each point once): the per-epoch scalars equal history.csv, batch_loss
points are unique and in order, every epoch has its validation image, and
the hparams plugin's session is recorded, started and ended.

usage: python tests/tensorboard_check.py RUN_DIR... (exit 1 on the first failure)
"""
import csv
import math
import os
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2


def fail(run, msg):
    print(f"tensorboard_check: {run}: {msg}", file=sys.stderr)
    sys.exit(1)


def load(path):
    ea = EventAccumulator(path, size_guidance={"scalars": 0, "images": 0, "tensors": 0}, purge_orphaned_data=False)
    ea.Reload()
    return ea


def same(a, b):
    # TensorBoard stores simple_value as float32.
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


def check_run(run):
    rows = list(csv.DictReader(open(os.path.join(run, "history.csv"))))
    if not rows:
        fail(run, "history.csv has no rows")
    classifier = rows[0]["accuracy"] != ""
    tb = os.path.join(run, "tensorboard")
    train, val, root = load(os.path.join(tb, "train")), load(os.path.join(tb, "validation")), load(tb)

    def scalars(ea, tag, where):
        if tag not in ea.Tags()["scalars"]:
            fail(run, f"{where} has no scalar {tag} (has {ea.Tags()['scalars']})")
        return [(e.step, e.value) for e in ea.Scalars(tag)]

    def per_epoch(ea, tag, where, column):
        points = scalars(ea, tag, where)
        steps = [s for s, _ in points]
        if steps != [int(r["epoch"]) for r in rows]:
            fail(run, f"{where}/{tag} is logged at steps {steps}, history.csv has epochs {[r['epoch'] for r in rows]}")
        for (step, v), r in zip(points, rows):
            if column is not None and not same(v, float(r[column])):
                fail(run, f"{where}/{tag} at epoch {step} is {v}, history.csv's {column} is {r[column]}")
        return points

    per_epoch(train, "epoch_loss", "train", "loss")
    per_epoch(val, "epoch_loss", "validation", "val_loss")
    per_epoch(train, "epoch_learning_rate", "train", "lr")
    for step, v in per_epoch(train, "epoch_images_per_second", "train", None):
        if not v > 0:
            fail(run, f"train/epoch_images_per_second at epoch {step} is {v}")
    if classifier:
        per_epoch(train, "epoch_accuracy", "train", "accuracy")
        per_epoch(val, "epoch_accuracy", "validation", "val_accuracy")
    batch = [s for s, _ in scalars(train, "batch_loss", "train")]
    if not batch or any(b <= a for a, b in zip(batch, batch[1:])):
        fail(run, f"train/batch_loss steps are not unique and increasing: {batch[:20]}")

    tag = "confusion_matrix" if classifier else "reconstructions"
    if tag not in val.Tags()["images"]:
        fail(run, f"validation has no image {tag} (has {val.Tags()['images']})")
    images = val.Images(tag)
    if [e.step for e in images] != [int(r["epoch"]) for r in rows]:
        fail(run, f"validation/{tag} is at steps {[e.step for e in images]}, expected one per epoch")
    for e in images:
        if not (e.encoded_image_string.startswith(b"\x89PNG\r\n\x1a\n") and e.width > 0 and e.height > 0):
            fail(run, f"validation/{tag} at epoch {e.step} is not a PNG")

    try:
        content = root.PluginTagToContent("hparams")
    except KeyError:
        fail(run, "no hparams plugin data in tensorboard/")
    for t in ("_hparams_/session_start_info", "_hparams_/session_end_info"):
        if t not in content:
            fail(run, f"hparams has no {t} (has {sorted(content)})")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    hp = dict(start.hparams)
    for key in ("network", "layers", "filters", "epochs", "batch_size", "lr", "optimizer", "seed"):
        if key not in hp:
            fail(run, f"hparams has no {key} (has {sorted(hp)})")
    network = hp["network"].string_value
    if network != ("classifier" if classifier else "autoencoder"):
        fail(run, f"hparams say network {network!r}")
    end = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_end_info"]).session_end_info
    if end.status != 1:
        fail(run, f"hparams session ended with status {end.status}, expected STATUS_SUCCESS")
    print(f"tensorboard_check: {run}: {len(rows)} epochs, {len(batch)} batch_loss points, {len(images)} {tag} images, "
          f"{len(hp)} hparams: ok")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for run in sys.argv[1:]:
        check_run(run)
