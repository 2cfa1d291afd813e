"""Training on a machine another process shares: one autoencoder epoch
(bench/drivers/models.py's first network, L4 FS3 FL16, on 12 000 images, batch 64)
by `train` and by bench/peers/torch_fit.py in PyTorch, each idle and beside one
busy process (a Python loop that never sleeps, as a build or a second run
would be), interleaved round by round. Epoch 2's seconds, so the first
epoch's start-up is out.

Contenders, each in the precision `--precision auto` picks here
(bf16-mixed where the CPU has native bfloat16, float32 elsewhere):
- `train`, libtorch's threads following the free cores (the default:
  train/src/cores.rs);
- `train --threads N` (N: the physical cores), the count pinned as it was
  before: the idle baseline;
- PyTorch, `torch.set_num_threads(N)` (its default), channels-last, under
  `torch.autocast("cpu", dtype=torch.bfloat16)` where bf16 runs natively.
Writes bench/results/shared_core.md and bench/results/shared_core.json; `make bench` runs it.

usage: python bench/drivers/shared_core.py BIN_DIR DATA_DIR [--quick]
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from machine import cpu
from models import CONFIGS, commands, epoch2

BIN, DATA = sys.argv[1], sys.argv[2]
QUICK = "--quick" in sys.argv
ROUNDS = 2 if QUICK else 3
PY = sys.executable
HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "..", "results")  # what a run writes
IMAGES = os.path.join(DATA, "train-images-idx3-ubyte")
TRAIN = os.path.join(BIN, "train")
BUSY = [PY, "-c", "while True: pass"]


def log(msg):
    print(f"shared_core: {msg}", file=sys.stderr, flush=True)


def physical_cores():
    """Physical cores, as libtorch's default and `train` count them."""
    cores = set()
    phys = core = None
    for line in open("/proc/cpuinfo"):
        if line.startswith("physical id"):
            phys = line.split(":")[1].strip()
        elif line.startswith("core id"):
            core = line.split(":")[1].strip()
        elif not line.strip() and core is not None:
            cores.add((phys, core))
    return max(len(cores), 1) if cores else os.cpu_count()


def native_bf16():
    """Whether `train --precision bf16-mixed` runs here (it refuses, exit 2, without native bfloat16)."""
    with tempfile.TemporaryDirectory() as d:
        p = subprocess.run([TRAIN, "autoencoder", "--images", IMAGES, "--limit", "600", "--epochs", "1", "--quiet",
                            "--precision", "bf16-mixed", "--out", os.path.join(d, "r")], capture_output=True)
    return p.returncode == 0


def without_threads(cmd):
    """`cmd` without its `--threads N`: the default, which follows the free cores."""
    i = cmd.index("--threads")
    return cmd[:i] + cmd[i + 2:]


def epoch(cmd, out, busy):
    """Epoch 2's seconds of `cmd` (ours: from its history.csv; PyTorch's: from its JSON line), beside a
    busy process when `busy`."""
    loop = subprocess.Popen(BUSY) if busy else None
    try:
        if loop:
            time.sleep(0.5)  # running before the contender starts
        if out:
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return epoch2(out)[0]
        line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        return json.loads(line)["epoch_seconds"][1]
    finally:
        if loop:
            loop.kill()
            loop.wait()


def main():
    name, flags, cpus = cpu()
    cores = physical_cores()
    log(f"{name} ({' '.join(flags)}), {cpus} CPUs, {cores} physical cores")
    bf16 = native_bf16()
    precision = "bf16-mixed" if bf16 else "32"
    config = CONFIGS[0]
    limit = config[5][1] if QUICK else config[5][0]
    work = tempfile.mkdtemp()
    ours, theirs, out = commands(BIN, PY, IMAGES, None, work, config, "autoencoder", limit, cores)
    ours = ours + ["--precision", precision]
    theirs = theirs + ["--channels-last"] + (["--bf16"] if bf16 else [])
    contenders = {
        "train (threads follow the free cores)": (without_threads(ours), out),
        f"train --threads {cores} (pinned)": (ours, out),
        f"PyTorch ({cores} threads{', bf16 autocast' if bf16 else ''}, channels-last)": (theirs, None),
    }
    samples = {(k, busy): [] for k in contenders for busy in (False, True)}
    epoch(*contenders[next(iter(contenders))], False)  # a warm-up: files in the page cache
    for r in range(ROUNDS):
        for k, (cmd, o) in contenders.items():
            for busy in (False, True):
                samples[(k, busy)].append(epoch(cmd, o, busy))
                log(f"round {r + 1} {k} {'busy' if busy else 'idle'}: {samples[(k, busy)][-1]:.2f} s")
    med = {k: statistics.median(v) for k, v in samples.items()}
    rows = []
    for k in contenders:
        idle, busy = med[(k, False)], med[(k, True)]
        rows.append({"contender": k, "idle_s": idle, "busy_s": busy, "ratio": busy / idle,
                     "idle_samples": samples[(k, False)], "busy_samples": samples[(k, True)]})
    result = {"cpu": name, "flags": flags, "cpus": cpus, "physical_cores": cores, "precision": precision,
              "images": limit, "rounds": ROUNDS, "rows": rows}
    json.dump(result, open(os.path.join(RESULTS, "shared_core.json"), "w"), indent=1)
    L = ["# Training beside a busy process", "",
         f"CPU: {name}; flags: {' '.join(flags)}; {cpus} CPUs, {cores} physical cores. One run of "
         f"`python bench/drivers/shared_core.py BIN DATA` (`make bench` runs it); every figure below is from that run.", "",
         f"One autoencoder epoch ({config[0]}, batch 64, {limit} images of which 80 % train, "
         f"`--precision {precision}` as `auto` picks here), idle and beside one busy process (`python -c '{BUSY[2]}'`), {ROUNDS} interleaved rounds; epoch 2's seconds, medians (each round's figures in "
         "shared_core.json).", "",
         "| contender | idle (s) | beside a busy process (s) | busy / idle |", "|---|---:|---:|---:|"]
    for row in rows:
        L.append(f"| {row['contender']} | {row['idle_s']:.2f} | {row['busy_s']:.2f} | {row['ratio']:.2f}× |")
    follow, pinned = rows[0], rows[1]
    L += ["", f"Following the free cores costs the idle epoch {follow['idle_s'] / pinned['idle_s'] - 1:+.1%} against "
          f"the pinned count (rounds: {', '.join(f'{v:.2f}' for v in follow['idle_samples'])} s against "
          f"{', '.join(f'{v:.2f}' for v in pinned['idle_samples'])} s).", ""]
    open(os.path.join(RESULTS, "shared_core.md"), "w").write("\n".join(L))
    print("\n".join(L))


if __name__ == "__main__":
    main()
