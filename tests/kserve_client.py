"""`infer serve` driven by KServe's own Python SDK (kserve 0.21).

Serves a Triton model repository written by `train export --layout triton`
and checks, with the clients KServe users already have, that infer over
REST with JSON, REST with binary tensors, gRPC with typed contents and
gRPC with raw contents (which the SDK names with a `binary_data_size`
input parameter) gives the probabilities `infer classify --probabilities`
gives, bit for bit; that liveness, readiness and model readiness answer
on both faces; and that the API key travels as a header and as metadata.

usage: kserve_client.py INFER_BIN REPOSITORY DATA_DIR
"""

import asyncio
import logging
import os
import signal
import subprocess
import sys
import tempfile

import grpc
import httpx
import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig

from idx import read_idx, write_images  # noqa: E402

KEY = "kserve-client-test-key"
MODEL = "classifier"



def main():
    infer_bin, repo, data = sys.argv[1:4]
    tmp = tempfile.mkdtemp()
    pixels = read_idx(os.path.join(data, "t10k-images-idx3-ubyte"))[:24].reshape(24, 1, 28, 28)
    x = (pixels.astype(np.float32) / np.float32(255)).astype(np.float32)
    write_images(os.path.join(tmp, "images"), pixels)
    npy = os.path.join(tmp, "expected.npy")
    subprocess.run(
        [infer_bin, "classify", "--model", os.path.join(repo, MODEL, "1", "model.onnx"), "--images",
         os.path.join(tmp, "images"), "--probabilities", npy, "--threads", "1"],
        check=True, stdout=subprocess.DEVNULL)
    expected = np.load(npy)
    key_file = os.path.join(tmp, "key")
    open(key_file, "w").write(KEY + "\n")
    server = subprocess.Popen(
        [infer_bin, "serve", "--models", repo, "--http-port", "0", "--grpc-port", "0", "--api-key-file", key_file,
         "--log", "warn", "--threads", "1"],
        stdout=subprocess.PIPE, text=True)
    try:
        first = server.stdout.readline().split()
        http_url = next(w for w in first if w.startswith("http://"))
        grpc_url = next(w for w in first if w.startswith("grpc://"))[len("grpc://"):]
        checks = asyncio.run(run_checks(http_url, grpc_url, x, expected))
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=30)
    assert code == 0, f"infer serve exited {code} after SIGTERM"
    print(f"kserve_client: {checks} checks passed with KServe's SDK against infer serve")


async def run_checks(http_url, grpc_url, x, expected):
    checks = 0

    def check(cond, what):
        nonlocal checks
        assert cond, what
        checks += 1

    def request(binary):
        i = InferInput("image", list(x.shape), "FP32")
        i.set_data_from_numpy(x, binary_data=binary)
        return InferRequest(model_name=MODEL, infer_inputs=[i], request_id="kserve-1")

    def same(response, what):
        outputs = {o.name: o for o in response.outputs}
        got = outputs["probabilities"].as_numpy()
        check(got.dtype == np.float32 and got.shape == expected.shape, f"{what}: {got.dtype} {got.shape}")
        check(np.array_equal(got.view(np.uint32), expected.view(np.uint32)),
              f"{what}: not bit for bit infer classify's (max diff {np.abs(got - expected).max()})")

    headers = {"authorization": f"Bearer {KEY}"}
    rest = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=30))
    try:
        check(await rest.is_server_live(http_url), "REST liveness without the key")
        check(await rest.is_server_ready(http_url, headers=headers), "REST readiness")
        check(await rest.is_model_ready(http_url, MODEL, headers=headers), "REST model readiness")
        same(await rest.infer(http_url, request(False), model_name=MODEL, headers=headers), "REST JSON")
        same(await rest.infer(http_url, request(True), model_name=MODEL, headers=dict(headers)), "REST binary")
        try:
            await rest.infer(http_url, request(False), model_name=MODEL)
            raise AssertionError("REST infer without the key was answered")
        except httpx.HTTPStatusError as e:
            check(e.response.status_code == 401, f"REST without the key: {e.response.status_code}")
    finally:
        await rest._client.aclose()

    metadata = (("authorization", f"Bearer {KEY}"),)
    async with InferenceGRPCClient(grpc_url, retries=0, timeout=30) as g:
        check(await g.is_server_live(), "gRPC liveness without the key")
        check(await g.is_server_ready(headers=metadata), "gRPC readiness")
        check(await g.is_model_ready(MODEL, headers=metadata), "gRPC model readiness")
        typed = request(False)
        check(typed.to_grpc().raw_input_contents == [], "typed contents are sent as such")
        same(await g.infer(typed, headers=metadata), "gRPC typed contents")
        raw = request(True)
        sent = raw.to_grpc()
        check(len(sent.raw_input_contents) == 1 and "binary_data_size" in sent.inputs[0].parameters,
              "raw contents carry binary_data_size")
        same(await g.infer(raw, headers=metadata), "gRPC raw contents")
        # The SDK logs the refusal it raises; it is expected here.
        logging.getLogger("kserve").setLevel(logging.CRITICAL)
        try:
            await g.infer(request(True))
            raise AssertionError("gRPC infer without the key was answered")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.UNAUTHENTICATED, f"gRPC without the key: {e.code()}")
    return checks


if __name__ == "__main__":
    main()
