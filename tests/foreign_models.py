"""`infer classify` on image classifiers this toolchain did not make.

Trains a small LeNet on MNIST in PyTorch (one epoch on 12 000 images) and
exports it with `torch.onnx.export` in the forms users bring:
- logits with other names, a dynamic batch;
- the batch fixed at 1, with the ONNX Model Zoo's mnist-12 names (Input3,
  Plus214_Output_0);
- channels last with a final softmax and Keras-style class labels in the
  metadata;
- uint8 pixels in (the graph scales them);
- a 3×32×32 colour model trained on normalised inputs (per-channel mean
  and std), classified with --preprocess resize and --normalize;
- two outputs (logits and features), which --output chooses between.
Then serves all six from one folder with `--exit-on-error false`: the
float32 channels-first ones (the batch-1 one as Triton serves it,
max_batch_size 0) answer tritonclient bit for bit as onnxruntime does; the
channels-last and uint8 ones are listed UNAVAILABLE with the reason.

For each, `infer classify --labels` must report the accuracy and the very
predictions that onnxruntime's argmax gives in Python on the same inputs
(what infer fed the model, read back from its --inputs .npy, put in the
form the model takes here). The refusals are exact one-line errors.

usage: foreign_models.py BIN_DIR DATA_DIR
"""

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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from idx import read_idx, write_images  # noqa: E402

warnings.filterwarnings("ignore")
TEST_IMAGES = 2000
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
        export(colour, torch.zeros(2, 3, 32, 32), p("colour"), ["image"], ["logits"])
        export(TwoOutputs(net), x1, p("two"), ["input"], ["logits", "features"])

    norm = ",".join(str(v) for v in COLOUR_MEAN + COLOUR_STD)
    # (model, extra flags, how ORT is fed the [N, C, H, W] [0, 1] inputs, the output read, the class names expected)
    forms = [
        ("logits", [], lambda x: x, "logits", None),
        ("mnist-12", [], lambda x: x, "Plus214_Output_0", None),
        ("nhwc", [], lambda x: x.transpose(0, 2, 3, 1), "dense_2", names),
        ("uint8", [], lambda x: np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8), "logits", None),
        ("colour", ["--preprocess", "resize", "--normalize", norm],
         lambda x: ((x - np.array(COLOUR_MEAN, np.float32).reshape(1, 3, 1, 1))
                    / np.array(COLOUR_STD, np.float32).reshape(1, 3, 1, 1)).astype(np.float32), "logits", None),
        ("two", ["--output", "logits"], lambda x: x, "logits", None),
    ]
    passed = 0
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
        passed += 1

    # Refusals: one line each, naming the file and what to do.
    refusals = [
        (["--model", p("two")], f"error: {p('two')}: model has outputs logits [N, 10], features [N, 84], several of "
         "which could be a classifier: choose one with --output"),
        (["--model", p("two"), "--output", "logit"], f"error: {p('two')}: --output \"logit\" is not an output of the "
         "model (it has logits [N, 10], features [N, 84])"),
        (["--model", p("nhwc"), "--layout", "nchw"], f"error: {p('nhwc')}: model input input_1 has shape [N, 28, 28, 1],"
         " expected [batch, C, H, W] or [batch, H, W, C] with C = 1 or 3 and a fixed height and width in the --layout "
         "given"),
        (["--model", p("uint8"), "--normalize", "imagenet"], f"error: {p('uint8')}: --normalize applies to float "
         "inputs; input pixels takes uint8 pixels (0–255) and normalises them itself"),
        (["--model", p("logits"), "--class-names", "a,b,c"], f"error: {p('logits')}: --class-names gives 3 class "
         "names, but output `logits` has 10 classes"),
        (["--model", p("colour"), "--normalize", "0.1,0.2,0.3,0.4"], f"error: {p('colour')}: --normalize has 2 values "
         "per statistic for a model of 3 channels (give 1 or 3)"),
    ]
    for args, want in refusals:
        run = subprocess.run([infer, "classify", "--images", images, "--quiet", *args], capture_output=True, text=True)
        assert run.returncode == 2, f"{args}: exit {run.returncode}: {run.stderr}"
        assert run.stderr.strip() == want, f"{args}:\n got: {run.stderr.strip()}\nwant: {want}"
        passed += 1
    passed += served(infer, tmp, p, np.load(os.path.join(tmp, "logits.inputs.npy"))[:16])
    print(f"foreign_models: {passed} passed, 0 failed")


def served(infer, tmp, p, x):
    """The six forms in one served folder; returns the checks passed."""
    folder = os.path.join(tmp, "served")
    os.makedirs(folder)
    forms = ("logits", "mnist-12", "two", "nhwc", "uint8", "colour")
    for name in forms:
        shutil.copy(p(name), os.path.join(folder, name + ".onnx"))
    server = subprocess.Popen([infer, "serve", "--models", folder, "--http-port", "0", "--grpc-port", "0",
                               "--exit-on-error", "false", "--log", "error", "--threads", "1"],
                              stdout=subprocess.PIPE, text=True)
    checks = 0
    try:
        words = server.stdout.readline().split()
        http_url = next(w for w in words if w.startswith("http://"))[len("http://"):]
        grpc_url = next(w for w in words if w.startswith("grpc://"))[len("grpc://"):]
        h, g = httpclient.InferenceServerClient(http_url), grpcclient.InferenceServerClient(grpc_url)
        index = {m["name"]: (m["state"], m.get("reason", "")) for m in h.get_model_repository_index()}
        for name in forms:
            state, reason = index[name]
            if name in ("logits", "mnist-12", "two", "colour"):
                assert state == "READY", f"{name}: {state} {reason}"
            else:
                assert state == "UNAVAILABLE" and "infer serve takes float32" in reason, f"{name}: {state} {reason}"
            checks += 1
        config = h.get_model_config("mnist-12")
        assert config["max_batch_size"] == 0 and config["input"][0]["dims"] == [1, 1, 28, 28], config
        checks += 1
        # The batch-1 model, one image a request over HTTP; the others, 16 at once over gRPC.
        zoo = ort.InferenceSession(p("mnist-12"), providers=["CPUExecutionProvider"])
        for i in range(len(x)):
            inp = httpclient.InferInput("Input3", [1, 1, 28, 28], "FP32")
            inp.set_data_from_numpy(x[i:i + 1])
            got = h.infer("mnist-12", [inp]).as_numpy("Plus214_Output_0")
            want = zoo.run(None, {"Input3": x[i:i + 1]})[0]
            assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), f"mnist-12 image {i}"
        checks += 1
        for name, output in (("logits", "logits"), ("two", "features")):
            session = ort.InferenceSession(p(name), providers=["CPUExecutionProvider"])
            inp = grpcclient.InferInput("input", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            got = g.infer(name, [inp]).as_numpy(output)
            want = session.run([output], {"input": x})[0]
            assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), f"{name}: not onnxruntime's bits"
            checks += 1
        h.close()
        g.close()
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
    print(f"ok   served: the float32 channels-first forms bit for bit through tritonclient (mnist-12 with "
          "max_batch_size 0); nhwc and uint8 UNAVAILABLE with the reason")
    return checks


if __name__ == "__main__":
    main()
