"""Python onnxruntime on the same ONNX file, same threads and optimisation
level as `infer`: images/s over the IDX images at one batch size.

usage: python bench/ort_ref.py MODEL IMAGES BATCH THREADS
"""
import json
import sys
import time

import numpy as np
import onnxruntime as ort

model, images, batch, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
raw = open(images, "rb").read()
n, h, w = (int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(3))
x = (np.frombuffer(raw, dtype=np.uint8, offset=16).astype(np.float32) / 255.0).reshape(n, 1, h, w)
so = ort.SessionOptions()
so.intra_op_num_threads = threads
so.inter_op_num_threads = 1
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
name = sess.get_inputs()[0].name
sess.run(None, {name: x[:batch]})
t0 = time.perf_counter()
for i in range(0, n, batch):
    sess.run(None, {name: x[i:i + batch]})
secs = time.perf_counter() - t0
print(json.dumps({"images_per_second": n / secs, "seconds": secs, "images": n, "onnxruntime": ort.__version__}))
