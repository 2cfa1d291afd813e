"""Python onnxruntime on the same ONNX file, same threads and optimisation
level as `infer`: images/s over the IDX images at one batch size.

usage: python bench/peers/ort_ref.py MODEL IMAGES BATCH THREADS
"""
import json
import sys
import time

import onnxruntime as ort

from idx import read_images  # noqa: E402

model, images, batch, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
x = read_images(images)
n = len(x)
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
