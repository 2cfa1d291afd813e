"""The Python server the serving benchmark compares against, written the way
users write one: FastAPI on uvicorn (uvloop and httptools, one worker, no
access log), one onnxruntime session, the Open Inference Protocol's infer
request as JSON or with binary tensors, no batching across requests.

usage: fastapi_server.py MODEL.onnx PORT [INTRA_OP_THREADS]
"""

import json
import sys

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, Request, Response

model_path, port = sys.argv[1], int(sys.argv[2])
options = ort.SessionOptions()
# ONNX Runtime's default (every core) unless told: bench/drivers/serving.py measures both.
options.intra_op_num_threads = int(sys.argv[3]) if len(sys.argv) > 3 else 0
session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
input_name = session.get_inputs()[0].name
output_names = [o.name for o in session.get_outputs()]
app = FastAPI()


@app.get("/v2/health/live")
def live():
    return {"live": True}


@app.post("/v2/models/{model}/infer")
async def infer(model: str, request: Request):
    body = await request.body()
    header_length = request.headers.get("inference-header-content-length")
    if header_length is None:
        doc = json.loads(body)
        inp = doc["inputs"][0]
        x = np.asarray(inp["data"], dtype=np.float32).reshape(inp["shape"])
    else:
        n = int(header_length)
        doc = json.loads(body[:n])
        inp = doc["inputs"][0]
        x = np.frombuffer(body[n:], dtype="<f4").reshape(inp["shape"])
    requested = doc.get("outputs")
    names = [o["name"] for o in requested] if requested else output_names
    binary = bool(requested) and all(o.get("parameters", {}).get("binary_data") for o in requested)
    results = session.run(names, {input_name: x})
    outputs, blobs = [], []
    for name, r in zip(names, results):
        o = {"name": name, "datatype": "FP32", "shape": list(r.shape)}
        if binary:
            blob = r.astype("<f4").tobytes()
            o["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            o["data"] = r.ravel().tolist()
        outputs.append(o)
    head = json.dumps({"model_name": model, "model_version": "1", "outputs": outputs}).encode()
    if not binary:
        return Response(head, media_type="application/json")
    return Response(head + b"".join(blobs), media_type="application/octet-stream",
                    headers={"inference-header-content-length": str(len(head))})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=port, workers=1, access_log=False, log_level="warning",
                loop="uvloop", http="httptools")
