"""The peer of `train export --int8`: ONNX Runtime's own static quantizer
(`onnxruntime.quantization.quantize_static`) on the same float model, as its
documentation advises: QDQ format, per-channel int8 weights, int8
activations, min-max calibration on N seeded training images, and
`reduce_range` (7-bit weights) on CPUs without VNNI, where its docs warn that
full-range weights saturate.

usage: python bench/peers/ort_quantize.py FLOAT_MODEL TRAIN_IMAGES OUT N SEED
prints one JSON line: {"reduce_range": …, "calibration_images": N, "seconds": …}
"""
import json
import sys
import time

import numpy as np
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from idx import read_images  # noqa: E402

model, images, out, n, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
x = read_images(images)
pick = np.random.default_rng(seed).choice(len(x), size=min(n, len(x)), replace=False)


class Reader(CalibrationDataReader):
    def __init__(self):
        self.batches = iter([{"image": x[pick[i:i + 64]]} for i in range(0, len(pick), 64)])

    def get_next(self):
        return next(self.batches, None)


flags = open("/proc/cpuinfo").read()
vnni = any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))
t0 = time.perf_counter()
quantize_static(model, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=not vnni,
                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
print(json.dumps({"reduce_range": not vnni, "calibration_images": len(pick), "seconds": time.perf_counter() - t0}))
