"""Accuracy of float32 and int8 versions of one model on the test set, in
Python onnxruntime: the classifier's accuracy, the autoencoder's MSE.

usage: python bench/peers/int8_accuracy.py KIND IMAGES LABELS MODEL…
prints one JSON line: {MODEL: figure, …}
"""
import json
import sys

import onnxruntime as ort

from idx import read_idx, read_images  # noqa: E402

kind, images, labels, models = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
x = read_images(images)
y = read_idx(labels)
out = {}
for m in models:
    sess = ort.InferenceSession(m, providers=["CPUExecutionProvider"])
    if kind == "classifier":
        p = sess.run(["probabilities"], {"image": x})[0]
        out[m] = float((p.argmax(1) == y).mean())
    else:
        r = sess.run(["reconstruction"], {"image": x})[0]
        out[m] = float(((r - x) ** 2).mean())
print(json.dumps(out))
