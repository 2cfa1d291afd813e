"""Deotte's single-CNN MNIST recipe in PyTorch, as a user would write it
from his Kaggle study ("How to choose CNN Architecture MNIST"): 32-32-32/2
→ 64-64-64/2 → 128 convolutions with BatchNorm and dropout 0.4, random
rotation ±15°, zoom ±0.15 and shift ±0.1 per image, Adam at 1e-3 · 0.95^epoch,
batch 64 — trained for a wall-clock budget (the epochs that fit), the
contender bench/drivers/accurate.py sets beside `train --preset accurate`.

Trains on a seeded share of the training images, the rest held out
(`--val-split`, 0.2 unless told: bench/drivers/accurate.py passes the preset's), reports
the final epoch's validation accuracy and then reads the test set once.
Prints one JSON line.

usage: python bench/peers/deotte.py --images I --labels L --test-images TI --test-labels TL
                              --seed S --budget SECONDS [--val-split 0.2] [--bf16] [--threads 2]
"""
import argparse
import contextlib
import json
import math
import time

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from idx import read_idx  # noqa: E402


def block(c_in, c_out, k, stride=1):
    return [nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2 if stride > 1 else 0), nn.ReLU(),
            nn.BatchNorm2d(c_out)]


def deotte():
    """Deotte's best single network (Keras: Conv2D(..., activation='relu') then BatchNormalization)."""
    return nn.Sequential(
        *block(1, 32, 3), *block(32, 32, 3), *block(32, 32, 5, 2), nn.Dropout(0.4),  # [B, 32, 12, 12]
        *block(32, 64, 3), *block(64, 64, 3), *block(64, 64, 5, 2), nn.Dropout(0.4),  # [B, 64, 4, 4]
        *block(64, 128, 4), nn.Flatten(), nn.Dropout(0.4), nn.Linear(128, 10))  # [B, 128, 1, 1] → [B, 10]


def augment(x, gen):
    """Per-image random rotation ±15°, zoom ±0.15, shift ±0.1: one batched affine resample."""
    n = x.shape[0]
    u = lambda: torch.rand(n, generator=gen) * 2 - 1  # noqa: E731
    angle, zoom, tx, ty = u() * math.radians(15), 1 + u() * 0.15, u() * 0.2, u() * 0.2  # shift in [-1, 1] units
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)  # [B, 2, 3]
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


def main():
    p = argparse.ArgumentParser()
    for a in ("--images", "--labels", "--test-images", "--test-labels"):
        p.add_argument(a, required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--budget", type=float, required=True, help="seconds of training (whole epochs that fit)")
    p.add_argument("--bf16", action="store_true", help="forward and loss under torch.autocast('cpu', bfloat16)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--val-split", type=float, default=0.2, help="share of the training images held out")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    load = lambda i, l: (torch.from_numpy(read_idx(i).astype(np.float32) / 255.0).unsqueeze(1),  # noqa: E731
                         torch.from_numpy(read_idx(l).astype(np.int64)))
    x, y = load(a.images, a.labels)
    perm = torch.randperm(len(x), generator=gen)
    n_val = round(len(x) * a.val_split)
    vx, vy, tx, ty = x[perm[:n_val]], y[perm[:n_val]], x[perm[n_val:]], y[perm[n_val:]]
    model = deotte().to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 0.95 ** e)
    amp = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if a.bf16 else contextlib.nullcontext

    def accuracy(xs, ys):
        model.eval()
        correct = 0
        with torch.no_grad(), amp():
            for i in range(0, len(xs), 1000):
                correct += (model(xs[i:i + 1000].contiguous(memory_format=torch.channels_last)).argmax(1)
                            == ys[i:i + 1000]).sum().item()
        return correct / len(xs)

    start, epochs, curve, last = time.perf_counter(), 0, [], 0.0
    while time.perf_counter() - start + last <= a.budget:
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(len(tx), generator=gen)
        for b in range(0, len(tx), 64):
            idx = order[b:b + 64]
            xb = augment(tx[idx], gen).contiguous(memory_format=torch.channels_last)
            opt.zero_grad()
            with amp():
                loss = F.cross_entropy(model(xb), ty[idx])
            loss.backward()
            opt.step()
        sched.step()
        epochs += 1
        curve.append(accuracy(vx, vy))
        last = time.perf_counter() - t0
    seconds = time.perf_counter() - start
    x_test, y_test = load(a.test_images, a.test_labels)
    print(json.dumps({"seed": a.seed, "epochs": epochs, "seconds": seconds, "val_accuracy": curve[-1],
                      "val_curve": curve, "test_accuracy": accuracy(x_test, y_test), "bf16": a.bf16,
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
