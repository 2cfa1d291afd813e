"""The reference contender: the same architecture and optimiser in PyTorch
eager mode. Prints one JSON line: steady-state training images/s and the
parameter count (checked equal to the Rust model's by run.py).

usage: python bench/torch_ref.py --network autoencoder|classifier [--layers 4 --filters 16 ...]
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from idx import read_idx  # noqa: E402


class ConvBn(nn.Module):
    """Conv(K×K, same; the extra pad of an even K after) → BatchNorm."""

    def __init__(self, c_in, c_out, k):
        super().__init__()
        self.before = (k - 1) // 2
        self.after = k - 1 - self.before
        self.conv = nn.Conv2d(c_in, c_out, k, padding=self.before if self.before == self.after else 0, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x):
        if self.before != self.after:
            x = F.pad(x, (self.before, self.after, self.before, self.after))
        return self.bn(self.conv(x))


class Encoder(nn.Module):
    def __init__(self, layers, k, filters):
        super().__init__()
        chans = [1] + [filters << i for i in range(layers)]
        self.blocks = nn.ModuleList(ConvBn(chans[i], chans[i + 1], k) for i in range(layers))

    def forward(self, x):
        for i, b in enumerate(self.blocks):
            x = F.relu(b(x))
            if i < 2:
                x = F.max_pool2d(x, 2)
        return x


class Autoencoder(nn.Module):
    def __init__(self, layers, k, filters):
        super().__init__()
        self.layers = layers
        self.encoder = Encoder(layers, k, filters)
        chans = [filters << (layers - 1 - j) for j in range(layers)]
        ins = [filters << (layers - 1)] + chans[:-1]
        self.decoder = nn.ModuleList(ConvBn(i, o, k) for i, o in zip(ins, chans))
        self.out = nn.Conv2d(chans[-1], 1, 3, padding=1)

    def forward(self, x):
        x = self.encoder(x)
        pools = min(self.layers, 2)
        for j, b in enumerate(self.decoder):
            x = F.relu(b(x))
            if j + pools >= self.layers:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
        return torch.sigmoid(self.out(x))


class Classifier(nn.Module):
    def __init__(self, layers, k, filters, fc, classes, hw):
        super().__init__()
        self.encoder = Encoder(layers, k, filters)
        div = 1 << min(layers, 2)
        emb = (filters << (layers - 1)) * (hw[0] // div) * (hw[1] // div)
        self.fc = nn.Linear(emb, fc)
        self.head = nn.Linear(fc, classes)

    def forward(self, x):
        return self.head(F.relu(self.fc(torch.flatten(self.encoder(x), 1))))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--network", required=True, choices=["autoencoder", "classifier"])
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--filter-size", type=int, default=3)
    p.add_argument("--filters", type=int, default=16)
    p.add_argument("--fc-units", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--optimizer", default="adam", choices=["adam", "rmsprop"])
    p.add_argument("--images", required=True)
    p.add_argument("--labels")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    imgs = read_idx(a.images)
    x_all = torch.from_numpy(imgs.astype(np.float32) / 255.0).unsqueeze(1)
    y_all = torch.from_numpy(read_idx(a.labels).astype(np.int64)) if a.labels else torch.zeros(len(imgs), dtype=torch.int64)
    if a.network == "autoencoder":
        model = Autoencoder(a.layers, a.filter_size, a.filters)
        loss_fn = lambda out, x, y: F.mse_loss(out, x)  # noqa: E731
    else:
        model = Classifier(a.layers, a.filter_size, a.filters, a.fc_units, 10, imgs.shape[1:])
        loss_fn = lambda out, x, y: F.cross_entropy(out, y)  # noqa: E731
    model.train()
    # Keras-like settings, as the Rust side: eps 1e-7; RMSprop rho (alpha) 0.9.
    if a.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    else:
        opt = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
    n = len(x_all)
    gen = torch.Generator().manual_seed(1)

    def step():
        idx = torch.randint(0, n, (a.batch,), generator=gen)
        x, y = x_all[idx], y_all[idx]
        opt.zero_grad()
        loss = loss_fn(model(x), x, y)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    secs = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(json.dumps({"images_per_second": a.steps * a.batch / secs, "seconds": secs,
                      "images": a.steps * a.batch, "parameters": params, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
