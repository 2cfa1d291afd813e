"""The IDX format (MNIST's), for the Python checks and benchmarks: one
reader, plain or gzip, any u8 array.

    from idx import read_idx, read_images, write_images

`make setup` puts scripts/ on the venv's path (a .pth file), so the venv's
Python imports it from any script.
"""
import gzip

import numpy as np


def read_idx(path):
    """The u8 array an IDX file holds, shaped by its header."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise ValueError(f"{path}: not a u8 IDX file")
    nd = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims)


def read_images(path):
    """IDX images as the models take them: float32 [N, 1, H, W] in [0, 1]."""
    x = read_idx(path)
    return (x.astype(np.float32) / 255.0).reshape(x.shape[0], 1, *x.shape[1:])


def write_images(path, pixels):
    """u8 images [N, H, W] (or [N, 1, H, W]) as an IDX file."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    n, h, w = pixels.shape[0], pixels.shape[-2], pixels.shape[-1]
    header = bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in (n, h, w))
    with open(path, "wb") as f:
        f.write(header + pixels.tobytes())
