"""The committed classifiers on digits written less neatly than MNIST's:
the 10 000 MNIST test digits, each tilted by 12–25° one way or the other
and shifted by up to 3 pixels on each axis (seeded; bilinear rotation about
the centre, then a whole-pixel shift, by scipy.ndimage), written as IDX and
classified by `infer classify`, float and int8.

The committed float classifier must score at least MIN_ACCURACY (0.985)
there, and its int8 one at most MAX_INT8_DROP below it: a model that only
learned upright, centred digits fails. A models/ that `make train`
retrained (its files differ from the commit's) is measured and reported,
not held to the committed models' figure.

usage: tilted.py BIN_DIR DATA_DIR MODELS_DIR
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from scipy import ndimage

from idx import read_idx, write_images  # noqa: E402

MIN_ACCURACY = 0.985
MAX_INT8_DROP = 0.003
SEED = 2026


def tilted(images, seed=SEED):
    """Each image rotated by ±(12–25)° and shifted by up to 3 pixels per axis."""
    rng = np.random.default_rng(seed)
    out = np.empty_like(images)
    for i, img in enumerate(images):
        angle = rng.uniform(12.0, 25.0) * rng.choice([-1.0, 1.0])
        dy, dx = rng.integers(-3, 4, size=2)
        r = ndimage.rotate(img.astype(np.float32), angle, reshape=False, order=1, mode="constant", cval=0.0)
        r = ndimage.shift(r, (dy, dx), order=0, mode="constant", cval=0.0)
        out[i] = np.clip(np.round(r), 0, 255).astype(np.uint8)
    return out


def accuracy(infer, model, images, labels):
    run = subprocess.run([infer, "classify", "--model", model, "--images", images, "--labels", labels,
                          "--format", "json", "--quiet"], capture_output=True, text=True)
    assert run.returncode == 0, f"{model}: exit {run.returncode}: {run.stderr}"
    return json.loads(run.stdout)["report"]["accuracy"]


def committed(path):
    """Whether `path` is the file the checked-out commit holds (git's blob hash); True where git cannot say."""
    here = os.path.dirname(os.path.abspath(path))
    run = lambda *cmd: subprocess.run(cmd, cwd=here, capture_output=True, text=True)  # noqa: E731
    head = run("git", "rev-parse", f"HEAD:./{os.path.basename(path)}")
    now = run("git", "hash-object", os.path.basename(path))
    if head.returncode != 0 or now.returncode != 0:
        return True
    return head.stdout.strip() == now.stdout.strip()


def main():
    bin_dir, data, models = sys.argv[1:4]
    infer = os.path.join(bin_dir, "infer")
    with tempfile.TemporaryDirectory() as tmp:
        images = os.path.join(tmp, "tilted-images-idx3-ubyte")
        write_images(images, tilted(read_idx(os.path.join(data, "t10k-images-idx3-ubyte"))))
        labels = os.path.join(data, "t10k-labels-idx1-ubyte")
        upright = accuracy(infer, os.path.join(models, "classifier.onnx"), os.path.join(data, "t10k-images-idx3-ubyte"),
                           labels)
        float_acc = accuracy(infer, os.path.join(models, "classifier.onnx"), images, labels)
        int8_acc = accuracy(infer, os.path.join(models, "classifier.int8.onnx"), images, labels)
    print(f"tilted: MNIST test digits tilted 12–25° and shifted up to 3 px: classifier {float_acc:.4f}, "
          f"int8 {int8_acc:.4f} (upright: {upright:.4f})")
    if not committed(os.path.join(models, "classifier.onnx")):
        print(f"tilted: {models}/classifier.onnx is not the committed file (retrained): reported, not held to "
              f"{MIN_ACCURACY}")
        return
    assert float_acc >= MIN_ACCURACY, f"the committed classifier scores {float_acc:.4f} < {MIN_ACCURACY} on tilted digits"
    assert int8_acc >= float_acc - MAX_INT8_DROP, f"int8 {int8_acc:.4f} is more than {MAX_INT8_DROP} below float"


if __name__ == "__main__":
    main()
