"""Writes a small seed corpus for `make fuzz`: valid IDX files of every type
(plain and gzip), a PNG and a JPEG-like header, and infer requests (JSON,
and JSON header + binary tensors; the first two bytes are the header
length, FFFF for none). usage: python fuzz/seeds.py DIR"""
import gzip
import json
import os
import struct
import sys
import zlib

out = sys.argv[1]
os.makedirs(os.path.join(out, "idx"), exist_ok=True)
os.makedirs(os.path.join(out, "picture"), exist_ok=True)
os.makedirs(os.path.join(out, "request"), exist_ok=True)


def idx(code, dims, payload):
    return bytes([0, 0, code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + payload


seeds = {
    "images": idx(0x08, [2, 4, 4], bytes(range(32))),
    "labels": idx(0x08, [3], bytes([1, 2, 3])),
    "i8": idx(0x09, [2], bytes([0x80, 0x7F])),
    "i16": idx(0x0B, [2], struct.pack(">hh", -1, 2)),
    "i32": idx(0x0C, [1, 2], struct.pack(">ii", -5, 6)),
    "f32": idx(0x0D, [1, 1, 2], struct.pack(">ff", 0.5, -1.0)),
    "f64": idx(0x0E, [1], struct.pack(">d", 3.25)),
}
for name, data in seeds.items():
    open(os.path.join(out, "idx", name), "wb").write(data)
    open(os.path.join(out, "idx", name + ".gz"), "wb").write(gzip.compress(data))


def png(w, h, pixels):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + pixels[y * w:(y + 1) * w] for y in range(h))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


open(os.path.join(out, "picture", "gray8x8.png"), "wb").write(png(8, 8, bytes(range(64))))
open(os.path.join(out, "picture", "gray28.png"), "wb").write(png(28, 28, bytes((i * 7) % 256 for i in range(784))))


def request(name, doc, binary=None):
    head = json.dumps(doc).encode()
    length = b"\xff\xff" if binary is None else struct.pack("<H", len(head))
    open(os.path.join(out, "request", name), "wb").write(length + head + (binary or b""))


image = {"name": "image", "shape": [1, 1, 28, 28], "datatype": "FP32"}
request("json", {"id": "a", "inputs": [dict(image, data=[0.5] * 784)], "outputs": [{"name": "logits"}]})
request("nested", {"inputs": [dict(image, data=[[[[0.0] * 28] * 28]])],
                   "parameters": {"binary_data_output": True}})
request("classes", {"inputs": [dict(image, data=[1] * 784)],
                    "outputs": [{"name": "probabilities", "parameters": {"classification": 3}}]})
request("binary", {"inputs": [dict(image, parameters={"binary_data_size": 3136})],
                   "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]},
        struct.pack("<784f", *([0.25] * 784)))
