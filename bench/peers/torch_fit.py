"""The reference contender: the same architecture and optimiser in PyTorch
eager mode. Prints one JSON line: steady-state training images/s and the
parameter count (checked equal to the Rust model's by run.py).

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


def random_shift(x, m, gen):
    """Each image moved by a random (dx, dy) in [-m, m]², zero fill: pad, then one crop per image."""
    n, _, h, w = x.shape
    padded = F.pad(x, (m, m, m, m))
    d = torch.randint(0, 2 * m + 1, (n, 2), generator=gen).tolist()
    return torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(d)])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--network", required=True, choices=["autoencoder", "classifier"])
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--filter-size", type=int, default=3)
    p.add_argument("--filters", type=int, default=16)
    p.add_argument("--fc-units", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--optimizer", default="adam", choices=["adam", "rmsprop"])
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--cosine", action="store_true", help="cosine decay over each stage's steps")
    p.add_argument("--warmup", type=float, default=0.0,
                   help="fraction of each stage warming up linearly from lr/25 (with --cosine: one-cycle, as train)")
    p.add_argument("--augment", type=int, default=0)
    p.add_argument("--limit", type=int)
    p.add_argument("--val-split", type=float, default=0.2)
    p.add_argument("--frozen-epochs", type=int, default=0, help="classifier: epochs with the encoder frozen first")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--channels-last", action="store_true",
                   help="model and batches in torch.channels_last (PyTorch's advice for CPU and GPU convolutions)")
    p.add_argument("--bf16", action="store_true",
                   help="forward and loss under torch.autocast('cpu', dtype=torch.bfloat16), training and validation "
                        "(PyTorch's mixed-precision recipe for CPUs; the optimizer and weights stay float32)")
    p.add_argument("--images", required=True)
    p.add_argument("--labels")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    imgs = read_idx(a.images)[: a.limit]
    x_all = torch.from_numpy(imgs.astype(np.float32) / 255.0).unsqueeze(1)
    y_all = torch.from_numpy(read_idx(a.labels)[: a.limit].astype(np.int64)) if a.labels else None
    perm = torch.randperm(len(x_all), generator=gen)
    n_val = round(len(x_all) * a.val_split)
    val_x, train_x = x_all[perm[:n_val]], x_all[perm[n_val:]]
    val_y, train_y = (y_all[perm[:n_val]], y_all[perm[n_val:]]) if y_all is not None else (None, None)
    if a.network == "autoencoder":
        model = Autoencoder(a.layers, a.filter_size, a.filters)
        loss_fn = lambda out, x, y: F.mse_loss(out, x)  # noqa: E731
    else:
        model = Classifier(a.layers, a.filter_size, a.filters, a.fc_units, 10, imgs.shape[1:])
        loss_fn = lambda out, x, y: F.cross_entropy(out, y)  # noqa: E731
    params = sum(p.numel() for p in model.parameters())
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    n = len(train_x)
    amp = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if a.bf16 else contextlib.nullcontext
    steps_per_epoch = -(-n // a.batch)

    def make_opt(stage_epochs):
        ps = [p for p in model.parameters() if p.requires_grad]
        # Keras-like settings, as the Rust side: eps 1e-7; RMSprop rho (alpha) 0.9.
        if a.optimizer == "adam":
            opt = torch.optim.Adam(ps, lr=a.lr, eps=1e-7)
        else:
            opt = torch.optim.RMSprop(ps, lr=a.lr, alpha=0.9, eps=1e-7)
        total = steps_per_epoch * stage_epochs
        warm = round(a.warmup * total)

        def factor(s):  # train's Stage::lr_at
            if s < warm:
                return 1 / 25 + (1 - 1 / 25) * s / warm
            if not a.cosine or total <= warm:
                return 1.0
            return 0.5 * (1 + math.cos(math.pi * (s - warm) / (total - warm)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return opt, sched

    def epoch(opt, sched, frozen):
        t0 = time.perf_counter()
        # Stage 1 keeps the frozen encoder's BatchNorm statistics (eval mode).
        model.train(not frozen)
        order = torch.randperm(n, generator=gen)
        seen, loss_sum, correct = 0, 0.0, 0
        for b in range(steps_per_epoch):
            idx = order[b * a.batch:(b + 1) * a.batch]
            x = train_x[idx]
            if a.augment:
                x = random_shift(x, a.augment, gen)
            x = x.contiguous(memory_format=fmt)
            y = train_y[idx] if train_y is not None else None
            opt.zero_grad()
            with amp():
                out = model(x)
                loss = loss_fn(out, x, y)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(idx)
            if y is not None:
                correct += (out.argmax(1) == y).sum().item()
            seen += len(idx)
        model.eval()
        with torch.no_grad():
            val = 0.0
            for i in range(0, len(val_x), 1000):
                xb = val_x[i:i + 1000].contiguous(memory_format=fmt)
                yb = val_y[i:i + 1000] if val_y is not None else None
                with amp():
                    out = model(xb)
                    val += loss_fn(out, xb, yb).item() * len(xb)
                if yb is not None:
                    (out.argmax(1) == yb).sum().item()
        last_val[0] = val / len(val_x)
        return time.perf_counter() - t0

    seconds, last_val = [], [None]
    stages = [(a.frozen_epochs, True), (a.epochs - a.frozen_epochs, False)] if a.network == "classifier" else [(a.epochs, False)]
    for count, frozen in stages:
        if count <= 0:
            continue
        if a.network == "classifier":
            for p_ in model.encoder.parameters():
                p_.requires_grad_(not frozen)
        opt, sched = make_opt(count)
        for _ in range(count):
            seconds.append(epoch(opt, sched, frozen))
    print(json.dumps({"epoch_seconds": seconds, "val_loss": last_val[0], "train_images": n, "val_images": len(val_x), "parameters": params,
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
