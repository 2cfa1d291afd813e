"""`make bench`: measures this toolchain against the alternatives a user
would pick, in one run, on the same data, interleaving contenders
(A B A B …) and reporting medians and ratios. Writes BENCHMARKS.md and
bench/results/results.json.

usage: python bench/drivers/run.py BIN_DIR DATA_DIR MODELS_DIR [--quick]

main() measures (the measure_* functions, each a section of the report,
in the order run), then render() writes the report from what was measured.
"""
import datetime
import json
import math
import os
import platform
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import machine
from models import CONFIGS, commands, epoch2

THREADS = 2
PY = sys.executable
HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.path.join(HERE, "..", "peers")  # the alternatives measured against
RESULTS = os.path.join(HERE, "..", "results")  # what a run writes


class Setup:
    """What a run measures with: the binaries, the data, the models, and
    how many rounds (--quick: fewer, on fewer images)."""

    def __init__(self, argv):
        if len(argv) < 4:
            raise SystemExit(__doc__)
        self.bin, self.data, self.models = argv[1], argv[2], argv[3]
        self.quick = "--quick" in argv
        self.rounds = 2 if self.quick else 3
        self.train_images = os.path.join(self.data, "train-images-idx3-ubyte")
        self.train_labels = os.path.join(self.data, "train-labels-idx1-ubyte")
        self.test_images = os.path.join(self.data, "t10k-images-idx3-ubyte")
        self.test_labels = os.path.join(self.data, "t10k-labels-idx1-ubyte")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run_json(cmd):
    """Runs a command that prints one JSON line; returns it with peak RSS."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.communicate()
    if p.returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} failed:\n{err}")
    v = json.loads(out.strip().splitlines()[-1])
    v["wall"] = time.perf_counter() - t0
    return v


def timed(cmd):
    """Wall time and peak RSS (MiB) of a whole process. Its stderr goes to a
    file, not a pipe: a child that writes more than a pipe holds would block
    while we wait for it to exit."""
    with tempfile.TemporaryFile() as err_file:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err_file)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        err_file.seek(0)
        err = err_file.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} failed:\n{err}")
    return wall, usage.ru_maxrss / 1024.0


def checkpoint_parameters(run):
    """Trainable parameters of the model a run trained, counted in its
    checkpoint (safetensors: an 8-byte header length, then a JSON header of
    shapes): every tensor but the optimizer's state and BatchNorm's running
    statistics, which PyTorch keeps as buffers, not parameters (nor, with
    --ema, the training weights kept beside the average)."""
    with open(os.path.join(run, "weights.safetensors"), "rb") as f:
        header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    return sum(math.prod(v["shape"]) for k, v in header.items()
               if k != "__metadata__" and not k.startswith(("optimizer.", "train_weights."))
               and not k.endswith(("running_mean", "running_var", "num_batches_tracked")))


def interleave(contenders, rounds):
    """contenders: {name: thunk returning a number}; runs A B A B …; medians."""
    samples = {k: [] for k in contenders}
    for _ in range(rounds):
        for k, f in contenders.items():
            samples[k].append(f())
    return {k: statistics.median(v) for k, v in samples.items()}, samples


def bench(s, *args):
    """A `bench` subcommand line (the Rust measurement tool)."""
    return [os.path.join(s.bin, "bench"), "--threads", str(THREADS), *args]


def measure_ceiling_and_loading(s, results):
    """0. The float32 matrix-multiply ceiling; loading the training set as IDX and as an image folder."""
    log("matmul ceiling …")
    ceilings = [run_json(bench(s, "matmul", "--n", "2048", "--reps", "8")) for _ in range(3)]
    ceiling = statistics.median(c["gflops_per_second"] for c in ceilings)
    results["matmul"] = ceilings
    results["matmul_gflops"] = ceiling

    log("IDX loading …")
    loads = [run_json(bench(s, "idx-load", "--images", s.train_images)) for _ in range(5)]
    results["idx_load"] = {"seconds": statistics.median(l["seconds"] for l in loads), "bytes": loads[0]["bytes"],
                           "samples": [l["seconds"] for l in loads]}

    # The same 60 000 pictures as an image folder (grayscale PNGs, one folder
    # per class) and as the IDX file, each loaded the way `train` loads a
    # training set (data::load: an image folder is scanned, hashed for
    # provenance and decoded in parallel), interleaved.
    log("image folder vs IDX loading …")
    FOLDER = os.path.join(HERE, "..", "out", "mnist-folder")
    if not os.path.isdir(os.path.join(FOLDER, "09")):
        subprocess.run([os.path.join(s.bin, "train"), "convert", "--images", s.train_images, "--labels", s.train_labels,
                        "--out", FOLDER, "--quiet"], check=True)
    folder_png_bytes = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(FOLDER) for f in fs)
    med, samples = interleave({
        "folder": lambda: run_json(bench(s, "dataset-load", "--images", FOLDER))["images_per_second"],
        "idx": lambda: run_json(bench(s, "dataset-load", "--images", s.train_images))["images_per_second"],
    }, 5)
    results["dataset_load"] = {"images_per_second": med, "samples": samples, "folder_png_bytes": folder_png_bytes}
    return ceiling


def measure_training(s, ceiling):
    """1. Training: the real `train` commands against the same epochs in PyTorch."""
    # The real code path: `train autoencoder` / `train classifier` (their `fit`
    # loop, progress bar and validation; the checkpoint is written after the
    # epoch's time is taken), timed by their own
    # history.csv; against bench/peers/torch_fit.py doing the same epochs in PyTorch.
    # Epoch 2 is compared (epoch 1 warms up; for the classifier, epoch 2 is the
    # fine-tuning stage, the whole network training).

    train_rows = []
    work = tempfile.mkdtemp()
    for config in CONFIGS:
        label, preset, filters, fc_units, nets, limits = config
        limit = limits[1] if s.quick else limits[0]
        ae_dir = os.path.join(work, f"ae{filters}")
        for network in ("autoencoder", "classifier"):
            batch, opt, lr, cosine, warmup, augment = nets[network]
            size = run_json(bench(s, "flops", "--network", network, "--filters", str(filters), "--fc-units", str(fc_units)))
            ours, theirs, _ = commands(s.bin, PY, s.train_images, s.train_labels, work, config, network, limit, THREADS)
            keep = {}

            def rust():
                subprocess.run(ours, check=True, stdout=subprocess.DEVNULL)
                out = ae_dir if network == "autoencoder" else os.path.join(work, "clf")
                secs = epoch2(out)[0]
                cfg = json.load(open(os.path.join(out, "config.json")))
                keep["rust_train_images"] = cfg["dataset"]["count"] - round(cfg["dataset"]["count"] * cfg["train"]["val_split"])
                return keep["rust_train_images"] / secs

            def torch():
                v = run_json(theirs)
                keep["torch"] = v
                return v["train_images"] / v["epoch_seconds"][1]

            def torch_cl():
                v = run_json(theirs + ["--channels-last"])
                return v["train_images"] / v["epoch_seconds"][1]

            if network == "autoencoder":
                rust()  # the classifier's encoder run, and a warm-up
            log(f"training {network} {label} …")
            med, samples = interleave({"train": rust, "PyTorch eager": torch, "PyTorch channels-last": torch_cl}, s.rounds)
            # The models that were timed: PyTorch's against the checkpoint `train` wrote.
            ours = checkpoint_parameters(ae_dir if network == "autoencoder" else os.path.join(work, "clf"))
            assert keep["torch"]["parameters"] == ours == size["parameters"], (keep["torch"]["parameters"], ours, size["parameters"])
            assert keep["torch"]["train_images"] == keep["rust_train_images"]
            gf = med["train"] * size["train_flops_per_image"] / 1e9
            train_rows.append({
                "model": network, "config": label, "batch": batch, "optimizer": opt, "threads": THREADS,
                "images": limit, "train_images": keep["rust_train_images"], "augment": augment,
                "parameters": size["parameters"], "flops_per_image": size["train_flops_per_image"],
                "rust": med["train"], "torch": med["PyTorch eager"], "ratio": med["train"] / med["PyTorch eager"],
                "torch_cl": med["PyTorch channels-last"], "ratio_cl": med["train"] / med["PyTorch channels-last"],
                "gflops": gf, "of_ceiling": gf / ceiling, "samples": samples,
            })
    return train_rows


def measure_inference(s, ceiling):
    """2. Inference throughput through infer's session against Python onnxruntime."""
    infer_rows = []
    for name in ("classifier", "autoencoder"):
        model = os.path.join(s.models, f"{name}.onnx")
        meta = json.loads(subprocess.run([os.path.join(s.bin, "infer"), "info", "--model", model, "--format", "json"],
                                         check=True, capture_output=True, text=True).stdout)["metadata"]
        cfg = json.loads(meta["model_config"])
        ae = cfg["model"]["encoder"] if name == "classifier" else cfg["model"]
        arch = ["--network", name, "--layers", str(ae["layers"]), "--filter-size", str(ae["filter_size"]),
                "--filters", str(ae["filters"])]
        if name == "classifier":
            arch += ["--fc-units", str(cfg["model"]["fc_units"])]
        flops = run_json(bench(s, "flops", *arch))["forward_flops_per_image"]
        for batch in (1, 64, 256):
            def ours():
                return run_json(bench(s, "ort-infer", "--model", model, "--images", s.test_images, "--batch", str(batch)))["images_per_second"]

            def python():
                return run_json([PY, os.path.join(PEERS, "ort_ref.py"), model, s.test_images, str(batch), str(THREADS)])["images_per_second"]

            log(f"inference {name} batch {batch} …")
            med, samples = interleave({"infer (ORT)": ours, "Python onnxruntime": python}, s.rounds)
            gf = med["infer (ORT)"] * flops / 1e9
            infer_rows.append({
                "model": name, "batch": batch, "threads": THREADS, "flops_per_image": flops,
                "infer": med["infer (ORT)"], "python_ort": med["Python onnxruntime"],
                "ratio_python": med["infer (ORT)"] / med["Python onnxruntime"],
                "gflops": gf, "of_ceiling": gf / ceiling, "samples": samples,
            })
    return infer_rows


def measure_int8(s):
    """2b. Our int8 models against float32 and against ONNX Runtime's quantize_static."""
    # Our int8 models (`train export --int8`, committed beside the float ones)
    # against the float32 models and against ONNX Runtime's own quantize_static
    # output for the same float model (bench/peers/ort_quantize.py: QDQ, per-channel,
    # 1024 calibration images, reduce_range as its docs advise for this CPU),
    # through infer's session, interleaved; accuracy on the 10 000 test images.
    peer_dir = tempfile.mkdtemp()
    int8_rows, int8_accuracy, peer_settings = [], {}, {}
    for name in ("classifier", "autoencoder"):
        f32 = os.path.join(s.models, f"{name}.onnx")
        ours8 = os.path.join(s.models, f"{name}.int8.onnx")
        peer8 = os.path.join(peer_dir, f"{name}.int8.onnx")
        log(f"int8 {name}: quantize_static peer, accuracy …")
        peer_settings[name] = run_json([PY, os.path.join(PEERS, "ort_quantize.py"), f32, s.train_images, peer8, "1024", "42"])
        acc = run_json([PY, os.path.join(PEERS, "int8_accuracy.py"), name, s.test_images, s.test_labels, f32, ours8, peer8])
        int8_accuracy[name] = {"float32": acc[f32], "ours": acc[ours8], "quantize_static": acc[peer8]}
        for batch in (1, 64, 256):
            def speed(model, batch=batch):
                return run_json(bench(s, "ort-infer", "--model", model, "--images", s.test_images, "--batch", str(batch)))["images_per_second"]

            log(f"int8 {name} batch {batch} …")
            med, samples = interleave({"float32": lambda: speed(f32), "ours": lambda: speed(ours8),
                                       "quantize_static": lambda: speed(peer8)}, s.rounds)
            int8_rows.append({"model": name, "batch": batch, "threads": THREADS, "float32": med["float32"],
                              "int8": med["ours"], "peer": med["quantize_static"], "ratio": med["ours"] / med["float32"],
                              "peer_ratio": med["quantize_static"] / med["float32"], "vs_peer": med["ours"] / med["quantize_static"],
                              "samples": samples})
    return {"rows": int8_rows, "accuracy": int8_accuracy, "peer": peer_settings}


def measure_whole_process(s):
    """3. The whole `infer classify` process against the Python script."""
    # At the shipped default batch (256) and at 64; the Python side's start-up
    # (interpreter + numpy, onnxruntime, scikit-learn imports) measured on its own.
    log("whole-process classify …")
    clf = os.path.join(s.models, "classifier.onnx")
    proc = {}
    for _ in range(5 if not s.quick else 3):
        for batch in (256, 64):
            proc.setdefault(f"infer {batch}", []).append(timed([
                os.path.join(s.bin, "infer"), "classify", "--model", clf, "--images", s.test_images, "--labels", s.test_labels,
                "--threads", str(THREADS), "--device", "cpu", "--batch-size", str(batch)]))
            proc.setdefault(f"python {batch}", []).append(timed([
                PY, os.path.join(PEERS, "classify.py"), clf, s.test_images, s.test_labels, str(THREADS), str(batch)]))
        proc.setdefault("infer int8 256", []).append(timed([
            os.path.join(s.bin, "infer"), "classify", "--model", os.path.join(s.models, "classifier.int8.onnx"), "--images",
            s.test_images, "--labels", s.test_labels, "--threads", str(THREADS), "--device", "cpu", "--batch-size", "256"]))
        proc.setdefault("python imports", []).append(timed([
            PY, "-c", "import numpy, onnxruntime, sklearn.metrics"]))
    whole = {k: {"seconds": statistics.median(w for w, _ in v), "rss_mib": max(r for _, r in v)} for k, v in proc.items()}
    return whole


def metadata(s, model):
    return json.loads(subprocess.run([os.path.join(s.bin, "infer"), "info", "--model", model, "--format", "json"],
                                     check=True, capture_output=True, text=True).stdout)["metadata"]


def time_to_accuracy(s):
    """From the models' metadata (not measured in this run)."""
    meta_clf, meta_ae = metadata(s, os.path.join(s.models, "classifier.onnx")), metadata(s, os.path.join(s.models, "autoencoder.onnx"))
    tta = {
        "source": f"{s.models}/*.onnx metadata",
        "autoencoder_seconds": float(meta_ae.get("train_seconds", "nan")),
        "autoencoder_val_loss": float(meta_ae.get("val_loss", "nan")),
        "classifier_seconds": float(meta_clf.get("train_seconds", "nan")),
        "test_accuracy": float(meta_clf.get("test_accuracy", "nan")),
        "val_accuracy": float(meta_clf.get("val_accuracy", "nan")),
    }
    return tta


def measure_epoch_memory(s):
    """4. The memory of one training epoch (whole process)."""
    log("training-epoch memory …")
    with tempfile.TemporaryDirectory() as tmp:
        epoch_wall, epoch_rss = timed([os.path.join(s.bin, "train"), "autoencoder", "--epochs", "1", "--threads", str(THREADS),
                                       "--images", s.train_images, "--out", os.path.join(tmp, "ae"), "--quiet", "--device", "cpu"])
    return {"seconds": epoch_wall, "rss_mib": epoch_rss}


def versions():
    torch_v = subprocess.run([PY, "-c", "import torch, onnxruntime; print(torch.__version__, onnxruntime.__version__)"],
                             capture_output=True, text=True).stdout.split()
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    return torch_v, rustc


def machine_facts():
    """The CPU and its flags, the versions of both stacks, the date."""
    cpu, relevant, _ = machine.cpu()
    (tv, ov), rustc = versions()
    return {"cpu": cpu, "flags": relevant, "cores": os.cpu_count(), "threads": THREADS, "torch": tv,
            "onnxruntime": ov, "rustc": rustc, "date": datetime.date.today().isoformat(),
            "python": platform.python_version()}


def draw_curves(s):
    """Redraws the val-MSE-against-time chart from the kept runs' histories."""
    curve_dir = os.path.join(RESULTS, "curves")
    curve_files = sorted(f for f in os.listdir(curve_dir) if f.endswith(".csv"))
    curves = run_json(bench(s, "curve", *[a for f in curve_files for a in ("--history", f"{f[:-4]}={os.path.join(curve_dir, f)}")],
                            "--target", "0.00044", "--out", os.path.join(RESULTS, "val_mse_vs_time.png")))
    return curves


def render(s, results):
    """BENCHMARKS.md, from this run's results only."""
    m = results["machine"]
    cpu, relevant, tv, ov, rustc = m["cpu"], m["flags"], m["torch"], m["onnxruntime"], m["rustc"]
    flags = set(relevant)
    ceiling = results["matmul_gflops"]
    train_rows, infer_rows, whole = results["training"], results["inference"], results["whole_process"]
    int8_rows, int8_accuracy, peer_settings = (results["int8"][k] for k in ("rows", "accuracy", "peer"))
    tta, curves = results["time_to_accuracy"], results["curves"]
    epoch_wall, epoch_rss = results["training_epoch"]["seconds"], results["training_epoch"]["rss_mib"]
    curve_dir = os.path.join(RESULTS, "curves")
    T = []
    T.append("# Benchmarks\n")
    T.append(f"Generated by `make bench` on {results['machine']['date']}: {cpu} ({', '.join(relevant) or 'no AVX2'}), "
             f"{os.cpu_count()} cores, {THREADS} threads for every contender; PyTorch {tv} (libtorch of `train` and the PyTorch "
             f"contender), ONNX Runtime {ov} (`infer` and Python), {rustc}. Every figure below was measured in this run, "
             f"contenders interleaved (A B A B …), medians; ratios are ours ÷ theirs. float32 matrix-multiply ceiling, same run "
             f"(2048³, the faster of libtorch's and ONNX Runtime's GEMM, median of 3): **{ceiling:.1f} GFLOP/s**.\n")
    T.append("## 1. Training: the real `train` commands against the same epochs in PyTorch\n")
    T.append(f"`train autoencoder` / `train classifier` (their training loop, progress bar and validation; the epoch's time "
             f"from their own `history.csv`, taken before the epoch's checkpoint is written) against `bench/peers/torch_fit.py`, which does the same epochs in PyTorch "
             f"eager mode, as users write it (NCHW) and with `torch.channels_last` (PyTorch's advice): the same architecture, optimiser and learning-rate schedule, a seeded split (20 % validation), a new "
             f"shuffle every epoch, one gather per batch, the classifier's random ±2-pixel shifts at batch 64 (the quick preset's network, trained as before it took the recipe: both sides get the same settings), the loss read "
             f"every batch, and a validation pass per epoch. Images/s = training images ÷ epoch 2's seconds (training + "
             f"validation; for the classifier epoch 2 is fine-tuning, after one epoch with the encoder frozen). Medians of "
             f"{s.rounds} interleaved rounds; one process per sample.\n")
    T.append("| model | configuration | images (train) | batch | optimizer | parameters | `train` | PyTorch (NCHW) | ratio | "
             "PyTorch channels-last | ratio | GFLOP/s | of ceiling |")
    T.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in train_rows:
        T.append(f"| {r['model']} | {r['config']} | {r['train_images']:,} | {r['batch']} | {r['optimizer']} | {r['parameters']:,} | "
                 f"{r['rust']:.0f} | {r['torch']:.0f} | {r['ratio']:.2f}× | {r['torch_cl']:.0f} | {r['ratio_cl']:.2f}× | "
                 f"{r['gflops']:.1f} | {100 * r['of_ceiling']:.0f} % |")
    T.append("\nGFLOP/s = images/s × 3 × the forward FLOPs counted from the architecture (2 per multiply-accumulate, every "
             "input and output channel counted); the epoch time includes validation, so this understates the training step's "
             "rate. Parameter counts are checked equal between the PyTorch model that was timed and the checkpoint `train` "
             "wrote in the timed run.\n")
    T.append("## 2. Inference throughput (images/s over the 10 000 MNIST test images)\n")
    T.append("| model | batch | `infer` (ONNX Runtime, Rust) | Python onnxruntime | ratio | GFLOP/s | of ceiling |")
    T.append("|---|---|---|---|---|---|---|")
    for r in infer_rows:
        T.append(f"| {r['model']} | {r['batch']} | {r['infer']:.0f} | {r['python_ort']:.0f} | {r['ratio_python']:.2f}× | "
                 f"{r['gflops']:.1f} | {100 * r['of_ceiling']:.0f} % |")
    T.append("\nThe same ONNX file in the same ONNX Runtime build, same intra-op threads, graph optimisation level all, CPU "
             "provider; input already normalised in memory; session time only.\n")
    over = [r for r in infer_rows if r["of_ceiling"] > 1.0]
    if over:
        T.append(f"{len(over)} of these rows {'exceeds' if len(over) == 1 else 'exceed'} 100 % of the ceiling: on these shapes ONNX Runtime's direct convolution "
                 "kernels run faster than its (and libtorch's) 2048³ GEMM, so the ceiling is a reference point, not a bound; "
                 "the FLOPs are counted from the architecture, not measured.\n")
    T.append("### Whole process: load the model, read the IDX files, predict, print the report\n")
    T.append("| command | batch | wall time (median) | peak RSS |")
    T.append("|---|---|---|---|")
    for batch in (256, 64):
        i, py = whole[f"infer {batch}"], whole[f"python {batch}"]
        T.append(f"| `infer classify --labels …`{' (default batch)' if batch == 256 else ''} | {batch} | {i['seconds']:.3f} s | {i['rss_mib']:.0f} MiB |")
        T.append(f"| `python bench/peers/classify.py` (NumPy + onnxruntime + scikit-learn) | {batch} | {py['seconds']:.3f} s | {py['rss_mib']:.0f} MiB |")
    imp = whole["python imports"]["seconds"]
    w256i, w256p = whole["infer 256"]["seconds"], whole["python 256"]["seconds"]
    T.append(f"\nAt the default batch the Python process takes {w256p / w256i:.2f}× as long. Of its {w256p:.2f} s, "
             f"{imp:.2f} s are the interpreter starting and importing numpy, onnxruntime and scikit-learn (`python -c "
             f"'import …'` alone, same run), so the work after start-up is {w256p - imp:.2f} s against `infer`'s {w256i:.2f} s "
             f"for everything: most of the lead is start-up, which a long-lived Python service would pay once.\n")
    dot = [f for f in ("avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    T.append("## 3. INT8 models: ours against float32 and against ONNX Runtime's `quantize_static`\n")
    T.append(f"Integer dot-product instructions on this CPU: **{', '.join(dot) if dot else 'none'}**"
             + ("" if dot else " (AVX2 only: ONNX Runtime multiplies u8 × s8 with `vpmaddubsw`, whose int16 pair sums would "
                                "saturate with full-range int8 weights; both int8 models use 7-bit weights)") + ". "
             f"`models/*.int8.onnx` (from `train export --int8`) and `quantize_static` on the same float model "
             f"(QDQ, per-channel int8 weights, int8 activations, min-max on 1024 training images, reduce_range "
             f"{'on' if peer_settings['classifier']['reduce_range'] else 'off'}: `bench/peers/ort_quantize.py`), run through `infer`'s "
             f"ONNX Runtime session (`bench ort-infer`), images/s over the 10 000 test images, interleaved, medians of {s.rounds}.\n")
    T.append("| model | batch | float32 | int8 (ours) | ratio | int8 (`quantize_static`) | ratio | ours ÷ `quantize_static` |")
    T.append("|---|---|---|---|---|---|---|---|")
    for r in int8_rows:
        T.append(f"| {r['model']} | {r['batch']} | {r['float32']:.0f} | {r['int8']:.0f} | {r['ratio']:.2f}× | {r['peer']:.0f} | "
                 f"{r['peer_ratio']:.2f}× | {r['vs_peer']:.2f}× |")
    a_c, a_a = int8_accuracy["classifier"], int8_accuracy["autoencoder"]
    T.append("\n| on the 10 000 test images | float32 | int8 (ours) | int8 (`quantize_static`) |")
    T.append("|---|---|---|---|")
    T.append(f"| classifier accuracy | {a_c['float32']:.4f} | {a_c['ours']:.4f} | {a_c['quantize_static']:.4f} |")
    T.append(f"| autoencoder MSE | {a_a['float32']:.6f} | {a_a['ours']:.6f} ({100 * (a_a['ours'] / a_a['float32'] - 1):+.1f} %) | "
             f"{a_a['quantize_static']:.6f} ({100 * (a_a['quantize_static'] / a_a['float32'] - 1):+.1f} %) |")
    w8 = whole["infer int8 256"]["seconds"]
    T.append(f"\nWhole process (`infer classify --labels …`, batch 256, as in section 2): float32 {w256i:.3f} s, int8 {w8:.3f} s "
             f"({w256i / w8:.2f}×).\n")

    T.append("## 4. Time to accuracy (not measured in this run)\n")
    trained = subprocess.run(["git", "log", "-1", "--format=%cs", "--", os.path.join(s.models, "classifier.onnx")],
                             capture_output=True, text=True).stdout.strip() or "an unknown date"
    T.append(f"From the metadata of `{s.models}/*.onnx`, written when `make train` produced them (committed {trained}, on the "
             f"machine `{s.models}/README.md` names, which need not be this one); `make bench` does not retrain them.\n")
    T.append("| | autoencoder training | autoencoder val MSE | classifier training | accuracy |")
    T.append("|---|---|---|---|---|")
    T.append(f"| this toolchain, quick preset, 2 CPU cores | {tta['autoencoder_seconds']:.0f} s | {tta['autoencoder_val_loss']:.5f} | "
             f"{tta['classifier_seconds']:.0f} s | test {tta['test_accuracy']:.4f}, val {tta['val_accuracy']:.4f} |")
    T.append("| reference (Keras, Tesla K80; its README) | 1046 s (100 epochs) | 0.00044 | 727 s (100 epochs) | val 0.989 |\n")
    T.append("### Autoencoder validation MSE against training time (not measured in this run)\n")

    T.append("![val MSE against minutes](bench/results/val_mse_vs_time.png)\n")
    T.append(f"From the `history.csv` of runs kept in `bench/results/curves/` ({open(os.path.join(curve_dir, 'README')).read().strip()}); "
             f"the chart is redrawn from them by every `make bench`.\n")
    T.append("| run | epochs | minutes | final val MSE | first epoch ≤ 0.00044 |")
    T.append("|---|---|---|---|---|")
    for label, c in curves.items():
        if label == "wall":
            continue
        cr = c["crossed"]
        T.append(f"| {label} | {c['epochs']} | {c['minutes']:.1f} | {c['val_loss']:.5f} | "
                 + (f"epoch {cr['epoch']} ({cr['minutes']:.1f} min, {cr['val_loss']:.5f})" if cr else "not reached") + " |")
    T.append("")
    # The accurate preset's seeds take an hour: bench/drivers/accurate.py runs them on
    # its own; its last run's figures are shown here, named as such.
    T.append("### `--preset accurate` over 3 seeds, beside Deotte's recipe in PyTorch (not measured in this run)\n")
    acc_json = os.path.join(RESULTS, "accurate.json")
    if os.path.exists(acc_json):
        import accurate  # noqa: E402
        T.append("From `bench/results/accurate.json`, written by its own run:\n")
        T.extend(accurate.report(json.load(open(acc_json))))
        T.append("")
    else:
        T.append("No `bench/results/accurate.json`: run `python bench/drivers/accurate.py s.bin DATA`.\n")
    T.append("## 5. Data loading and memory\n")
    T.append(f"- Reading the {results['idx_load']['bytes'] / 1e6:.0f} MB MNIST training images (IDX) and normalising them to float32: "
             f"{1000 * results['idx_load']['seconds']:.0f} ms (median of 5 processes).")
    dl = results["dataset_load"]["images_per_second"]
    T.append(f"- Loading a training set the way `train` does (`bench dataset-load`, 5 interleaved rounds, medians): the 60 000 "
             f"MNIST training images as an image folder of grayscale PNGs ({results['dataset_load']['folder_png_bytes'] / 1e6:.0f} MB, "
             f"one folder per class; scanned, hashed and decoded in parallel) {dl['folder']:,.0f} images/s; the same images as "
             f"the IDX file {dl['idx']:,.0f} images/s ({dl['idx'] / dl['folder']:.1f}× faster).")
    T.append(f"- `infer classify` on the 10 000 test images (batch 256): peak RSS {whole['infer 256']['rss_mib']:.0f} MiB (the Python "
             f"script: {whole['python 256']['rss_mib']:.0f} MiB).")
    T.append(f"- One autoencoder training epoch on the 48 000 training images (`train autoencoder --epochs 1`, whole process): "
             f"peak RSS {epoch_rss:.0f} MiB, {epoch_wall:.0f} s.\n")
    T.append("## 6. Serving\n")
    T.append("`infer serve` under load (wrk on loopback, 1/8/64 clients, JSON and binary tensors) against `--max-batch 1` "
             "and FastAPI + uvicorn + onnxruntime: `bench/results/serving.md`, written by `bench/drivers/serving.py`, which `make bench` "
             "runs after this report (its own run, its own figures). What hostile clients cost it (unauthenticated 60 MB "
             "gRPC calls, big pictures, an idle socket at SIGTERM): `bench/results/serve_limits.md`, written by "
             "`bench/drivers/serve_limits.py`, also run by `make bench` (its own run).\n")
    T.append("## 7. Mixed precision\n")
    T.append("`train --precision bf16-mixed` against PyTorch under `torch.autocast` on the four models' epochs, and over "
             "seeds against float32: `bench/results/precision.md`, written by `bench/drivers/precision.py`, which `make bench` runs after "
             "this report (its own run, its own figures; on a CPU without native bfloat16 it records the refusal).\n")
    T.append("## Targets\n")
    tr_ratios = ", ".join("%.2f" % r["ratio"] for r in train_rows)
    inf_ratios = ", ".join("%.2f" % r["ratio_python"] for r in infer_rows)
    ae_ceiling = max(r["of_ceiling"] for r in train_rows if r["model"] == "autoencoder")
    cl_ratios = ", ".join("%.2f" % r["ratio_cl"] for r in train_rows)
    T.append(f"- Training ≥ 1.5× PyTorch NCHW (same epochs): {'met' if all(r['ratio'] >= 1.5 for r in train_rows) else 'missed'} "
             f"(ratios {tr_ratios}).")
    T.append(f"- Training ≥ 1.0× PyTorch channels-last: {'met' if all(r['ratio_cl'] >= 1.0 for r in train_rows) else 'missed'} "
             f"(ratios {cl_ratios}).")
    T.append(f"- Autoencoder epochs ≥ 80 % of the matmul ceiling: {'met' if ae_ceiling >= 0.8 else 'missed'} (best {100 * ae_ceiling:.0f} %).")
    T.append(f"- Inference ≥ 1.0× Python onnxruntime at every batch size: "
             f"{'met' if all(r['ratio_python'] >= 1.0 for r in infer_rows) else 'missed'} (ratios {inf_ratios}).")
    T.append(f"- Whole-process `infer classify` faster than the Python script at the default batch: "
             f"{'met' if w256i < w256p else 'missed'}.")
    big = [r for r in int8_rows if r["batch"] in (64, 256)]
    int8_fast = all(r["ratio"] >= 1.5 for r in big)
    T.append(f"- INT8 ≥ 1.5× float32 at batch 64 and 256 (both models; the target is for CPUs with VNNI): "
             f"{'met' if int8_fast else 'missed'} (ratios {', '.join('%.2f' % r['ratio'] for r in big)})"
             + ("" if dot else "; this CPU has no VNNI, so this run states the result without judging the target") + ".")
    acc_ok = a_c["ours"] >= a_c["float32"] - 0.001 and a_a["ours"] <= a_a["float32"] * 1.03
    T.append(f"- INT8 accuracy within 0.1 point (classifier) and 3 % MSE (autoencoder) on the test set: {'met' if acc_ok else 'missed'}.")
    peer_fast = all(r["vs_peer"] >= 1.0 for r in int8_rows)
    peer_acc = a_c["ours"] >= a_c["quantize_static"] and a_a["ours"] <= a_a["quantize_static"] * 1.005
    T.append(f"- INT8 at least as fast as `quantize_static` at every batch: {'met' if peer_fast else 'missed'} "
             f"(ours ÷ theirs {', '.join('%.2f' % r['vs_peer'] for r in int8_rows)}); at least as accurate (MSE within 0.5 %): "
             f"{'met' if peer_acc else 'missed'}.\n")
    T.append("How earlier measurements shaped the code is in [`bench/LOG.md`](bench/LOG.md) (dated entries, each naming its "
             "machine; not figures of this run).\n")
    T.append("Reproduce: `make bench`. Raw samples: `bench/results/results.json`.\n")
    return "\n".join(T)


def main():
    s = Setup(sys.argv)
    results = {"rows": {}}
    ceiling = measure_ceiling_and_loading(s, results)
    results["training"] = measure_training(s, ceiling)
    results["inference"] = measure_inference(s, ceiling)
    results["int8"] = measure_int8(s)
    results["whole_process"] = measure_whole_process(s)
    results["time_to_accuracy"] = time_to_accuracy(s)
    results["training_epoch"] = measure_epoch_memory(s)
    results["machine"] = machine_facts()
    results["curves"] = draw_curves(s)
    text = render(s, results)
    with open("BENCHMARKS.md.tmp", "w") as f:
        f.write(text)
    os.replace("BENCHMARKS.md.tmp", "BENCHMARKS.md")
    with open(os.path.join(RESULTS, "results.json.tmp"), "w") as f:
        json.dump(results, f, indent=1)
    os.replace(os.path.join(RESULTS, "results.json.tmp"), os.path.join(RESULTS, "results.json"))
    log("wrote BENCHMARKS.md and bench/results/results.json")


if __name__ == "__main__":
    main()
