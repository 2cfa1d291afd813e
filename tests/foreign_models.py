"""`infer classify` on image classifiers this toolchain did not make.

Trains a small LeNet on MNIST in PyTorch (one epoch on 12 000 images) and
exports it with `torch.onnx.export` in the forms users bring:
- logits with other names, a dynamic batch;
- the batch fixed at 1, with the ONNX Model Zoo's mnist-12 names (Input3,
  Plus214_Output_0);
- channels last with a final softmax and Keras-style class labels in the
  metadata;
- uint8 pixels in (the graph scales them);
- float16 pixels in (the graph widens them);
- a 3×32×32 colour model trained on normalised inputs (per-channel mean
  and std), classified with --preprocess resize and --normalize;
- two outputs (logits and features), which --output chooses between.
For each, `infer classify --labels` must report the accuracy and the very
predictions that onnxruntime's argmax gives in Python on the same inputs
(what infer fed the model, read back from its --inputs .npy, put in the
form the model takes here).

Then serves all seven from one folder, each in its own layout and
datatype (the batch-1 one as Triton serves it, max_batch_size 0), and
classifies the same test images through tritonclient, HTTP and gRPC in
turn: every answer bit for bit onnxruntime's on the same batch, so the
served accuracy is the CLI's.

The refusals are one-line errors held in a snapshot,
tests/snapshots/foreign_models_refusals.txt (`UPDATE_SNAPSHOTS=1` writes
it anew; the difference is printed when it does not match).

usage: foreign_models.py BIN_DIR DATA_DIR [OUT_DIR]
OUT_DIR: where the seven models are left (for the browser page's test).
"""

import difflib

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from idx import read_idx, write_images  # noqa: E402

warnings.filterwarnings("ignore")
TEST_IMAGES = 10000
COLOUR_MEAN, COLOUR_STD = (0.10, 0.20, 0.30), (0.30, 0.35, 0.40)


class LeNet(nn.Module):
    def __init__(self, channels=1, side=28):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        flat = 16 * ((side // 2 - 4) // 2) ** 2
        self.fc1, self.fc2, self.fc3 = nn.Linear(flat, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def features(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc2(F.relu(self.fc1(x.flatten(1)))))

    def forward(self, x):
        return self.fc3(self.features(x))


def train(net, x, y):
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    for i in range(0, len(x), 64):
        opt.zero_grad()
        F.cross_entropy(net(x[i:i + 64]), y[i:i + 64]).backward()
        opt.step()
    return net.eval()


class ChannelsLastSoftmax(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):  # [N, 28, 28, 1]
        return torch.softmax(self.net(x.permute(0, 3, 1, 2)), dim=1)


class Uint8In(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):  # uint8 [N, 1, 28, 28]
        return self.net(x.float() / 255.0)


class Float16In(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):  # float16 [N, 1, 28, 28]
        return self.net(x.float())


class TwoOutputs(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        f = self.net.features(x)
        return self.net.fc3(f), f


def export(module, example, path, inputs, outputs, dynamic=True, labels=None):
    axes = {n: {0: "N"} for n in inputs + outputs} if dynamic else None
    torch.onnx.export(module, (example,), path, input_names=inputs, output_names=outputs, dynamic_axes=axes,
                      opset_version=17, dynamo=False)
    if labels is not None:
        m = onnx.load(path)
        m.metadata_props.add(key="classes", value=json.dumps(labels))
        onnx.save(m, path)


def main():
    bin_dir, data = sys.argv[1:3]
    out = sys.argv[3] if len(sys.argv) > 3 else None
    infer = os.path.join(bin_dir, "infer")
    torch.manual_seed(0)
    torch.set_num_threads(1)  # the same weights on every run
    tmp = tempfile.mkdtemp()
    train_x = torch.from_numpy(read_idx(os.path.join(data, "train-images-idx3-ubyte"))[:12000].copy())
    train_y = torch.from_numpy(read_idx(os.path.join(data, "train-labels-idx1-ubyte"))[:12000].astype(np.int64))
    gray = train_x.float().unsqueeze(1) / 255.0
    net = train(LeNet(), gray, train_y)
    colour_in = F.interpolate(gray, size=(32, 32), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
    mean, std = torch.tensor(COLOUR_MEAN).view(1, 3, 1, 1), torch.tensor(COLOUR_STD).view(1, 3, 1, 1)
    colour = train(LeNet(3, 32), (colour_in - mean) / std, train_y)

    images, labels = os.path.join(tmp, "images"), os.path.join(tmp, "labels")
    write_images(images, read_idx(os.path.join(data, "t10k-images-idx3-ubyte"))[:TEST_IMAGES])
    truth = read_idx(os.path.join(data, "t10k-labels-idx1-ubyte"))[:TEST_IMAGES]
    with open(labels, "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + TEST_IMAGES.to_bytes(4, "big") + truth.tobytes())

    x1 = torch.zeros(2, 1, 28, 28)
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    p = lambda name: os.path.join(tmp, name + ".onnx")  # noqa: E731
    with torch.no_grad():
        export(net, x1, p("logits"), ["input"], ["logits"])
        export(net, x1[:1], p("mnist-12"), ["Input3"], ["Plus214_Output_0"], dynamic=False)
        export(ChannelsLastSoftmax(net), torch.zeros(2, 28, 28, 1), p("nhwc"), ["input_1"], ["dense_2"], labels=names)
        export(Uint8In(net), torch.zeros(2, 1, 28, 28, dtype=torch.uint8), p("uint8"), ["pixels"], ["logits"])
        export(Float16In(net), torch.zeros(2, 1, 28, 28, dtype=torch.float16), p("float16"), ["x"], ["logits"])
        export(colour, torch.zeros(2, 3, 32, 32), p("colour"), ["image"], ["logits"])
        export(TwoOutputs(net), x1, p("two"), ["input"], ["logits", "features"])

    norm = ",".join(str(v) for v in COLOUR_MEAN + COLOUR_STD)
    # (model, extra flags, how ORT is fed the [N, C, H, W] [0, 1] inputs, the output read, the class names expected)
    forms = [
        ("logits", [], lambda x: x, "logits", None),
        ("mnist-12", [], lambda x: x, "Plus214_Output_0", None),
        ("nhwc", [], lambda x: x.transpose(0, 2, 3, 1), "dense_2", names),
        ("uint8", [], lambda x: np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8), "logits", None),
        ("float16", [], lambda x: x.astype(np.float16), "logits", None),
        ("colour", ["--preprocess", "resize", "--normalize", norm],
         lambda x: ((x - np.array(COLOUR_MEAN, np.float32).reshape(1, 3, 1, 1))
                    / np.array(COLOUR_STD, np.float32).reshape(1, 3, 1, 1)).astype(np.float32), "logits", None),
        ("two", ["--output", "logits"], lambda x: x, "logits", None),
    ]
    passed = 0
    served_forms = []
    for name, flags, feed, output, expected_names in forms:
        inputs, preds = os.path.join(tmp, name + ".inputs.npy"), os.path.join(tmp, name + ".csv")
        run = subprocess.run([infer, "classify", "--model", p(name), "--images", images, "--labels", labels,
                              "--format", "json", "--inputs", inputs, "--predictions", preds, "--threads", "2",
                              *flags], capture_output=True, text=True)
        assert run.returncode == 0, f"{name}: exit {run.returncode}: {run.stderr}"
        report = json.loads(run.stdout)
        rows = list(csv.DictReader(open(preds)))
        got = np.array([expected_names.index(r["predicted"]) if expected_names else int(r["predicted"]) for r in rows])
        x = np.load(inputs)
        session = ort.InferenceSession(p(name), providers=["CPUExecutionProvider"])
        fed = feed(x)
        batch = session.get_inputs()[0].shape[0]
        step = batch if isinstance(batch, int) else len(fed)
        scores = np.concatenate([session.run([output], {session.get_inputs()[0].name: fed[i:i + step]})[0]
                                 for i in range(0, len(fed), step)])
        want = scores.reshape(len(fed), -1).argmax(1)
        accuracy = float((want == truth).mean())
        assert np.array_equal(got, want), f"{name}: {int((got != want).sum())} predictions differ from onnxruntime's"
        reported = report["report"]["accuracy"]
        assert abs(reported - accuracy) < 1e-12, f"{name}: accuracy {reported} vs {accuracy}"
        assert f"output `{output}`" in run.stderr, f"{name}: what was assumed is not said: {run.stderr}"
        print(f"ok   {name}: accuracy {accuracy:.4f} on {TEST_IMAGES} images, every prediction onnxruntime's "
              f"({run.stderr.splitlines()[0].split(': ', 1)[1]})")
        served_forms.append((name, fed, output, accuracy))
        passed += 1

    if out:
        os.makedirs(out, exist_ok=True)
        for name, *_ in forms:
            shutil.copy(p(name), os.path.join(out, name + ".onnx"))
    passed += refusals(infer, images, p, tmp)
    passed += served(infer, tmp, p, served_forms, truth)
    print(f"foreign_models: {passed} passed, 0 failed")
    shutil.rmtree(tmp)  # kept when a check fails, to look into


SNAPSHOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "snapshots", "foreign_models_refusals.txt")


def refusals(infer, images, p, tmp):
    """Each refusal exits 2 with one line; all of them held in SNAPSHOT."""
    cases = [
        ["--model", p("two")],
        ["--model", p("two"), "--output", "logit"],
        ["--model", p("nhwc"), "--layout", "nchw"],
        ["--model", p("uint8"), "--normalize", "imagenet"],
        ["--model", p("logits"), "--class-names", "a,b,c"],
        ["--model", p("colour"), "--normalize", "0.1,0.2,0.3,0.4"],
        ["--model", p("logits"), "--input", "image"],
        ["--model", p("logits"), "--scores", "probabilities", "--output", "nothing"],
    ]
    lines = []
    for args in cases:
        run = subprocess.run([infer, "classify", "--images", images, "--quiet", *args], capture_output=True, text=True)
        shown = " ".join(a.replace(tmp, "[TMP]") for a in args)
        assert run.returncode == 2, f"{shown}: exit {run.returncode}: {run.stderr}"
        assert len(run.stderr.strip().splitlines()) == 1, f"{shown}: not one line: {run.stderr}"
        lines.append(f"$ infer classify {shown}\n{run.stderr.strip().replace(tmp, '[TMP]')}\n")
    got = "\n".join(lines)
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        with open(SNAPSHOT + ".tmp", "w") as f:
            f.write(got)
        os.replace(SNAPSHOT + ".tmp", SNAPSHOT)
    want = open(SNAPSHOT).read()
    if got != want:
        diff = "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True), SNAPSHOT, "this run"))
        raise AssertionError(f"the refusals differ from their snapshot (UPDATE_SNAPSHOTS=1 accepts them):\n{diff}")
    print(f"ok   {len(cases)} refusals: one line each, exit 2, as {os.path.relpath(SNAPSHOT)} holds them")
    return len(cases)


def served(infer, tmp, p, forms, truth):
    """Every form from one served folder, in its own layout and datatype:
    the same test images through tritonclient, HTTP and gRPC in turn,
    bit for bit onnxruntime's on the same batches; returns the checks
    passed."""
    folder = os.path.join(tmp, "served")
    os.makedirs(folder)
    for name, *_ in forms:
        shutil.copy(p(name), os.path.join(folder, name + ".onnx"))
    server = subprocess.Popen([infer, "serve", "--models", folder, "--http-port", "0", "--grpc-port", "0",
                               "--log", "error", "--threads", "1"], stdout=subprocess.PIPE, text=True)
    checks = 0
    try:
        words = server.stdout.readline().split()
        http_url = next(w for w in words if w.startswith("http://"))[len("http://"):]
        grpc_url = next(w for w in words if w.startswith("grpc://"))[len("grpc://"):]
        h, g = httpclient.InferenceServerClient(http_url), grpcclient.InferenceServerClient(grpc_url)
        index = {m["name"]: m["state"] for m in h.get_model_repository_index()}
        assert all(index[name] == "READY" for name, *_ in forms), index
        config = h.get_model_config("mnist-12")
        assert config["max_batch_size"] == 0 and config["input"][0]["dims"] == [1, 1, 28, 28], config
        checks += 1
        datatypes = {np.float32: "FP32", np.float16: "FP16", np.uint8: "UINT8"}
        for name, fed, output, accuracy in forms:
            session = ort.InferenceSession(p(name), providers=["CPUExecutionProvider"])
            meta = h.get_model_metadata(name)["inputs"][0]
            datatype = datatypes[fed.dtype.type]
            assert meta["datatype"] == datatype and meta["shape"][1:] == list(fed.shape[1:]), f"{name}: {meta}"
            step = 1 if name == "mnist-12" else 64
            predicted = []
            for k, i in enumerate(range(0, len(fed), step)):
                part = fed[i:i + step]
                client, module = (h, httpclient) if k % 2 == 0 else (g, grpcclient)
                inp = module.InferInput(meta["name"], list(part.shape), datatype)
                inp.set_data_from_numpy(part)
                got = client.infer(name, [inp]).as_numpy(output)
                want = session.run([output], {meta["name"]: part})[0].reshape(got.shape)
                assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), f"{name}: images {i}+: not onnxruntime's bits"
                predicted.append(got.argmax(1))
            served_accuracy = float((np.concatenate(predicted) == truth).mean())
            assert served_accuracy == accuracy, f"{name}: served {served_accuracy}, infer classify {accuracy}"
            print(f"ok   served {name} ({datatype} {meta['shape']}): accuracy {served_accuracy:.4f}, every answer "
                  "onnxruntime's bits")
            checks += 1
        h.close()
        g.close()
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
    return checks


if __name__ == "__main__":
    main()
