"""`infer serve` driven by Triton's own Python client (tritonclient 2.73).

Serves a Triton model repository written by `train export --layout triton`
and checks, with the client Triton users already have:
- every config.pbtxt parses with the client's model_config_pb2 (protobuf
  text_format) and equals what the server reports over HTTP and gRPC;
- server and model metadata, liveness and readiness, over HTTP and gRPC;
- infer over HTTP with JSON, over HTTP with binary tensors and over gRPC
  give the same probabilities as `infer classify --probabilities`, bit for
  bit, for float and int8 models;
- async requests (HTTP's gevent pool, asyncio HTTP, gRPC callbacks) each get
  their own rows;
- the API key travels as a header (HTTP) and as metadata (gRPC), and a call
  without it is refused;
- SIGTERM: the server exits 0.

usage: triton_client.py INFER_BIN REPOSITORY DATA_DIR
"""

import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

import numpy as np
from google.protobuf import json_format, text_format
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.http.aio as aioclient
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

from idx import read_idx, write_images  # noqa: E402

KEY = "triton-client-test-key"



def read_npy(path):
    return np.load(path)


def main():
    infer_bin, repo, data = sys.argv[1:4]
    tmp = tempfile.mkdtemp()
    pixels = read_idx(os.path.join(data, "t10k-images-idx3-ubyte"))[:40].reshape(40, 1, 28, 28)
    x = (pixels.astype(np.float32) / np.float32(255)).astype(np.float32)
    idx_path = os.path.join(tmp, "images")
    write_images(idx_path, pixels)
    models = sorted(d for d in os.listdir(repo) if os.path.isfile(os.path.join(repo, d, "config.pbtxt")))
    assert "classifier" in models and "classifier.int8" in models, models

    # What infer classify gives for the same images, per classifier.
    expected = {}
    for m in ("classifier", "classifier.int8"):
        npy = os.path.join(tmp, m + ".npy")
        subprocess.run(
            [infer_bin, "classify", "--model", os.path.join(repo, m, "1", "model.onnx"), "--images", idx_path,
             "--probabilities", npy, "--threads", "1"],
            check=True, stdout=subprocess.DEVNULL)
        expected[m] = read_npy(npy)

    key_file = os.path.join(tmp, "key")
    open(key_file, "w").write(KEY + "\n")
    server = subprocess.Popen(
        [infer_bin, "serve", "--models", repo, "--http-port", "0", "--grpc-port", "0", "--api-key-file", key_file,
         "--log", "warn", "--threads", "1", "--model-control-mode", "explicit", "--load-model", "*"],
        stdout=subprocess.PIPE, text=True)
    try:
        first = server.stdout.readline().split()
        http_url = next(w for w in first if w.startswith("http://"))[len("http://"):]
        grpc_url = next(w for w in first if w.startswith("grpc://"))[len("grpc://"):]
        checks = run_checks(http_url, grpc_url, repo, models, x, expected)
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=30)
    assert code == 0, f"infer serve exited {code} after SIGTERM"
    print(f"triton_client: {checks} checks passed with tritonclient against infer serve ({len(models)} models)")


def run_checks(http_url, grpc_url, repo, models, x, expected):
    def key():
        # A fresh dict per call: the HTTP client adds its own headers to the
        # one it is given. Lower case: gRPC metadata keys must be.
        return {"authorization": "Bearer " + KEY}

    h = httpclient.InferenceServerClient(http_url, concurrency=8)
    g = grpcclient.InferenceServerClient(grpc_url)
    checks = 0

    def check(cond, what):
        nonlocal checks
        assert cond, what
        checks += 1

    check(h.is_server_live(), "HTTP live without a key")
    check(g.is_server_live(), "gRPC live without a key")
    # Refused for the key, not for anything else: 401 / UNAUTHENTICATED.
    try:
        urllib.request.urlopen(f"http://{http_url}/v2/health/ready", timeout=10)
        raise AssertionError("HTTP readiness without the key was answered")
    except urllib.error.HTTPError as e:
        check(e.code == 401, f"HTTP readiness without the key: {e.code}, not 401")
    check(not h.is_server_ready(), "HTTP readiness without the key is not ready")
    for call, status in ((lambda: h.get_server_metadata(), "401"),
                         (lambda: g.get_server_metadata(), "StatusCode.UNAUTHENTICATED")):
        try:
            call()
            raise AssertionError("a call without the key was answered")
        except InferenceServerException as e:
            check(e.status() == status, f"refused with {e.status()}, not {status}")
            check("API key" in str(e), f"refusal names the key: {e}")
    check(h.is_server_ready(headers=key()) and g.is_server_ready(headers=key()), "ready")
    meta = h.get_server_metadata(headers=key())
    check(meta["name"] == "infer" and "binary_tensor_data" in meta["extensions"], meta)
    gmeta = g.get_server_metadata(headers=key(), as_json=True)
    check(gmeta["extensions"] == meta["extensions"], gmeta)

    for m in models:
        # The config.pbtxt as Triton would read it, and as the server reports it.
        text = open(os.path.join(repo, m, "config.pbtxt")).read()
        parsed = text_format.Parse(text, model_config_pb2.ModelConfig())
        check(parsed.name == m and parsed.backend == "onnxruntime" and parsed.max_batch_size == 64, parsed)
        check(parsed.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU, parsed)
        check(parsed.HasField("dynamic_batching"), "dynamic_batching")
        served = json_format.ParseDict(h.get_model_config(m, headers=key()), model_config_pb2.ModelConfig())
        check(served == parsed, f"{m}: HTTP config differs from config.pbtxt:\n{served}\nvs\n{parsed}")
        gserved = g.get_model_config(m, headers=key()).config
        check(gserved == parsed, f"{m}: gRPC config differs from config.pbtxt")
        md = h.get_model_metadata(m, headers=key())
        check(md["inputs"][0]["shape"][0] == -1 and all(o["shape"][0] == -1 for o in md["outputs"]), md)
        check([list(d.dims) for d in parsed.input] == [i["shape"][1:] for i in md["inputs"]], md)
        gmd = g.get_model_metadata(m, headers=key(), as_json=True)
        check([int(s) for s in gmd["inputs"][0]["shape"]] == md["inputs"][0]["shape"], gmd)
        check(h.is_model_ready(m, headers=key()) and g.is_model_ready(m, headers=key()), m)

    for m, want in expected.items():
        def http_infer(binary, xs=x):
            i = httpclient.InferInput("image", list(xs.shape), "FP32")
            i.set_data_from_numpy(xs, binary_data=binary)
            o = httpclient.InferRequestedOutput("probabilities", binary_data=binary)
            return h.infer(m, [i], outputs=[o], headers=key()).as_numpy("probabilities")

        i = grpcclient.InferInput("image", list(x.shape), "FP32")
        i.set_data_from_numpy(x)
        got_grpc = g.infer(m, [i], outputs=[grpcclient.InferRequestedOutput("probabilities")], headers=key())
        for name, got in (("HTTP JSON", http_infer(False)), ("HTTP binary", http_infer(True)),
                          ("gRPC", got_grpc.as_numpy("probabilities"))):
            check(got.dtype == np.float32 and got.shape == want.shape, f"{m} {name}: {got.dtype} {got.shape}")
            check(np.array_equal(got.view(np.uint32), want.view(np.uint32)),
                  f"{m} {name}: not bit for bit infer classify's (max diff {np.abs(got - want).max()})")

    # The classification extension (class_count=): the top 3 of each row as
    # "value:index:label", highest first, on both faces.
    check("classification" in meta["extensions"], meta)
    for m, want in expected.items():
        top = np.argsort(-want, axis=1, kind="stable")[:, :3]
        i = httpclient.InferInput("image", list(x.shape), "FP32")
        i.set_data_from_numpy(x, binary_data=True)
        gi = grpcclient.InferInput("image", list(x.shape), "FP32")
        gi.set_data_from_numpy(x)
        answers = [
            (f"HTTP binary={b}", h.infer(m, [i], outputs=[httpclient.InferRequestedOutput(
                "probabilities", binary_data=b, class_count=3)], headers=key())) for b in (False, True)
        ] + [("gRPC", g.infer(m, [gi], outputs=[grpcclient.InferRequestedOutput(
            "probabilities", class_count=3)], headers=key()))]
        for name, r in answers:
            got = r.as_numpy("probabilities")
            check(got.shape == (len(x), 3), f"{m} {name} classification shape {got.shape}")
            parts = [[e.decode() if isinstance(e, bytes) else str(e) for e in row] for row in got]
            idx = np.array([[int(e.split(":")[1]) for e in row] for row in parts])
            val = np.array([[float(e.split(":")[0]) for e in row] for row in parts])
            check(np.array_equal(idx[:, 0], top[:, 0]), f"{m} {name}: top class differs from argmax")
            check(np.allclose(val, np.take_along_axis(want, idx, 1), atol=1e-6), f"{m} {name}: values")
            check(all(len(e.split(":")) == 3 and e.split(":")[2] for row in parts for e in row),
                  f"{m} {name}: no class label: {parts[0]}")
    # Compressed requests, as tritonclient sends them: the same bits.
    want = expected["classifier"]
    for algorithm in ("gzip", "deflate"):
        r = h.infer("classifier", [i], headers=key(), request_compression_algorithm=algorithm)
        check(np.array_equal(r.as_numpy("probabilities").view(np.uint32), want.view(np.uint32)),
              f"HTTP {algorithm} request")
        r = g.infer("classifier", [gi], headers=key(), compression_algorithm=algorithm)
        check(np.array_equal(r.as_numpy("probabilities").view(np.uint32), want.view(np.uint32)),
              f"gRPC {algorithm} request")
    # Triton's scheduling options pass, as Triton takes them: a priority,
    # and a timeout (µs) a request may wait in the queue.
    r = h.infer("classifier", [i], headers=key(), priority=1, timeout=10_000_000)
    check(np.array_equal(r.as_numpy("probabilities").view(np.uint32), want.view(np.uint32)), "HTTP priority, timeout")
    r = g.infer("classifier", [gi], headers=key(), priority=1, timeout=10_000_000)
    check(np.array_equal(r.as_numpy("probabilities").view(np.uint32), want.view(np.uint32)), "gRPC priority, timeout")
    # A parameter the server does not read is refused by name, never ignored.
    for call in (lambda: h.infer("classifier", [i], parameters={"fancy": 1}, headers=key()),
                 lambda: g.infer("classifier", [gi], parameters={"fancy": 1}, headers=key())):
        try:
            call()
            raise AssertionError("an unknown parameter was ignored")
        except InferenceServerException as e:
            check('"fancy"' in str(e) and "not supported" in str(e), e)

    # Async: each request gets its own rows.
    want = expected["classifier"]
    pending = []
    for k in range(10):
        rows = slice(k * 4, k * 4 + 1 + k % 4)
        i = httpclient.InferInput("image", list(x[rows].shape), "FP32")
        i.set_data_from_numpy(x[rows], binary_data=True)
        pending.append((rows, h.async_infer("classifier", [i], headers=key())))
    for rows, p in pending:
        got = p.get_result().as_numpy("probabilities")
        check(np.array_equal(got, want[rows]), f"HTTP async rows {rows}")

    done = queue.Queue()
    for k in range(10):
        rows = slice(k * 4, k * 4 + 1 + k % 4)
        i = grpcclient.InferInput("image", list(x[rows].shape), "FP32")
        i.set_data_from_numpy(x[rows])
        g.async_infer("classifier", [i], callback=lambda result, error, rows=rows: done.put((rows, result, error)),
                      headers=key())
    for _ in range(10):
        rows, result, error = done.get(timeout=30)
        check(error is None, error)
        check(np.array_equal(result.as_numpy("probabilities"), want[rows]), f"gRPC async rows {rows}")

    async def aio():
        async with aioclient.InferenceServerClient(http_url) as c:
            async def one(k):
                rows = slice(k, k + 3)
                i = aioclient.InferInput("image", list(x[rows].shape), "FP32")
                i.set_data_from_numpy(x[rows])
                r = await c.infer("classifier", [i], headers=key())
                return rows, r.as_numpy("probabilities")
            return await asyncio.gather(*(one(k) for k in range(0, 30, 3)))
    for rows, got in asyncio.run(aio()):
        check(np.array_equal(got, want[rows]), f"asyncio rows {rows}")

    for call in (lambda: h.get_model_metadata("resnet", headers=key()),
                 lambda: g.get_model_metadata("resnet", headers=key())):
        try:
            call()
            raise AssertionError("an unknown model was answered")
        except InferenceServerException as e:
            check("unknown model" in str(e), e)
    # Every gRPC call is counted, not only ModelInfer: the refused
    # ServerMetadata above, and the metadata, config and readiness calls.
    req = urllib.request.Request(f"http://{http_url}/metrics", headers=key())
    text = urllib.request.urlopen(req, timeout=10).read().decode()
    grpc = {l.split("{")[1].split("}")[0]: float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
            if l.startswith("infer_requests_total{") and 'protocol="grpc"' in l}
    check(grpc.get('model="",protocol="grpc",status="Unauthenticated",version=""', 0) >= 1, f"refused gRPC call uncounted: {grpc}")
    check(any('model="classifier"' in k and 'status="Ok"' in k for k in grpc), grpc)

    # The model repository extension, through tritonclient's own calls.
    def states(index):
        return {(m["name"], m.get("version", ""), m["state"]) for m in index}
    every = {(m, "1", "READY") for m in models}
    check(states(h.get_model_repository_index(headers=key())) == every, "HTTP index")
    gindex = g.get_model_repository_index(headers=key(), as_json=True)["models"]
    check(states(gindex) == every, f"gRPC index {gindex}")
    h.unload_model("classifier.int8", headers=key())
    check(not h.is_model_ready("classifier.int8", headers=key()), "unloaded over HTTP")
    after = {(m["name"], m["state"], m.get("reason", "")) for m in h.get_model_repository_index(headers=key())}
    check(("classifier.int8", "UNAVAILABLE", "unloaded") in after, after)
    try:
        h.infer("classifier.int8", [httpclient.InferInput("image", [1, 1, 28, 28], "FP32")], headers=key())
        raise AssertionError("an unloaded model was answered")
    except InferenceServerException as e:
        check("not loaded" in str(e), e)
    g.load_model("classifier.int8", headers=key())
    check(g.is_model_ready("classifier.int8", headers=key()), "loaded over gRPC")
    g.unload_model("classifier.int8", headers=key())
    check(not g.is_model_ready("classifier.int8", headers=key()), "unloaded over gRPC")
    # A load with its own configuration: a smaller max_batch_size.
    config = json.dumps({"name": "classifier.int8", "max_batch_size": 4})
    h.load_model("classifier.int8", headers=key(), config=config)
    check(h.get_model_config("classifier.int8", headers=key())["max_batch_size"] == 4, "config given on load")
    g.load_model("classifier.int8", headers=key(), config=json.dumps({"name": "classifier.int8", "max_batch_size": 8}))
    check(g.get_model_config("classifier.int8", headers=key()).config.max_batch_size == 8, "config given on gRPC load")
    for call in (lambda: h.load_model("resnet", headers=key()), lambda: g.load_model("resnet", headers=key())):
        try:
            call()
            raise AssertionError("a model the repository lacks was loaded")
        except InferenceServerException as e:
            check("holds no model" in str(e), e)
    i = grpcclient.InferInput("image", list(x[:3].shape), "FP32")
    i.set_data_from_numpy(x[:3])
    got = g.infer("classifier.int8", [i], headers=key()).as_numpy("probabilities")
    check(np.array_equal(got, expected["classifier.int8"][:3]), "the reloaded model answers as before")
    h.close()
    g.close()
    return checks


if __name__ == "__main__":
    main()
