"""What a user would write instead of `infer classify`: load the model, read
the IDX files, predict in batches, print scikit-learn's report.

usage: python bench/peers/classify.py MODEL IMAGES LABELS [THREADS] [BATCH]
"""
import sys
import time

import numpy as np
import onnxruntime as ort
from sklearn.metrics import classification_report, confusion_matrix

from idx import read_idx, read_images  # noqa: E402

t0 = time.perf_counter()
model, images, labels = sys.argv[1:4]
threads = int(sys.argv[4]) if len(sys.argv) > 4 else 2
batch = int(sys.argv[5]) if len(sys.argv) > 5 else 64
so = ort.SessionOptions()
so.intra_op_num_threads = threads
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
x = read_images(images)
n = len(x)
y = read_idx(labels)
preds = []
for i in range(0, n, batch):
    p = sess.run(["probabilities"], {"image": x[i:i + batch]})[0]
    preds.append(p.argmax(1))
pred = np.concatenate(preds)
print(classification_report(y, pred))
print(confusion_matrix(y, pred))
print(f"{n} images in {time.perf_counter() - t0:.3f}s", file=sys.stderr)
