"""What hostile clients cost `infer serve`, measured as an operator would
before exposing it (issue 30's probes), on loopback with the clients on the
same machine. Writes bench/serve_limits.md; every figure is from this run.

1. Unauthenticated gRPC: with --api-key, 48 ModelInfer calls of 62.7 MB
   each (20 000 images) over 8 connections, without the key (Triton's own
   client). Measured: their status, their time, and the server's peak RSS.
2. Big pictures: 8 PNGs sent at once to /classify/classifier, first
   8192×8192 (over the 28×28 model's pixel cap), then 3584×3584 (at it),
   while liveness is probed every 10 ms. Measured: statuses, the last
   answer's time, the slowest liveness answer, the server's peak RSS.
3. An idle gRPC socket (no HTTP/2 preface) and SIGTERM: time to exit, exit code.

usage: bench/serve_limits.py BIN_DIR MODELS_DIR"""
import io
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import tritonclient.grpc as grpcclient
from PIL import Image

from machine import cpu

KEY = "bench-key"


class Server:
    def __init__(self, infer, models, *extra):
        self.p = subprocess.Popen([infer, "serve", "--models", models, "--http-port", "0", "--grpc-port", "0",
                                   "--log", "warn", *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True)
        words = self.p.stdout.readline().split()
        self.http = next(w for w in words if w.startswith("http://"))
        self.grpc = next(w for w in words if w.startswith("grpc://"))[len("grpc://"):]

    def rss_mib(self, field):
        for line in open(f"/proc/{self.p.pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) // 1024
        return 0

    def stop(self):
        self.p.terminate()
        return self.p.wait(timeout=60)


def unauthenticated_grpc(infer, models):
    s = Server(infer, models, "--api-key", KEY)
    before = s.rss_mib("VmRSS")
    x = np.zeros((20000, 1, 28, 28), np.float32)
    results, lock = [], threading.Lock()

    def client():
        c = grpcclient.InferenceServerClient(s.grpc)
        for _ in range(6):
            i = grpcclient.InferInput("image", list(x.shape), "FP32")
            i.set_data_from_numpy(x)
            t = time.perf_counter()
            try:
                c.infer("classifier", [i])
                status = "OK"
            except Exception as e:  # the refusal is what is measured
                status = str(e).split("]")[0].lstrip("[").replace("StatusCode.", "")
            with lock:
                results.append((status, time.perf_counter() - t))
        c.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    wall = time.perf_counter() - t0
    peak = s.rss_mib("VmHWM")
    s.stop()
    return {"calls": len(results), "statuses": sorted({r for r, _ in results}), "wall_s": wall,
            "slowest_s": max(t for _, t in results), "rss_before_mib": before, "rss_peak_mib": peak,
            "bytes_per_call": x.nbytes}


def pictures(infer, models):
    out = []
    for side in (8192, 3584):
        s = Server(infer, models)
        img = Image.new("L", (side, side), 255)
        img.paste(0, (side // 3, side // 3, 2 * side // 3, 2 * side // 3))
        buf = io.BytesIO()
        img.save(buf, "PNG")
        png = buf.getvalue()
        answers, lock = [], threading.Lock()

        def post():
            req = urllib.request.Request(f"{s.http}/classify/classifier?preprocess=mnist", data=png,
                                         headers={"content-type": "image/png"})
            t = time.perf_counter()
            try:
                code = urllib.request.urlopen(req, timeout=120).status
            except urllib.error.HTTPError as e:
                code = e.code
            with lock:
                answers.append((code, time.perf_counter() - t))

        threads = [threading.Thread(target=post) for _ in range(8)]
        [t.start() for t in threads]
        live = []
        while any(t.is_alive() for t in threads):
            t = time.perf_counter()
            urllib.request.urlopen(f"{s.http}/v2/health/live", timeout=60).read()
            live.append(time.perf_counter() - t)
            time.sleep(0.01)
        [t.join() for t in threads]
        out.append({"side": side, "png_kib": len(png) // 1024, "statuses": sorted({c for c, _ in answers}),
                    "last_s": max(t for _, t in answers), "live_max_ms": max(live) * 1e3 if live else None,
                    "probes": len(live), "rss_peak_mib": s.rss_mib("VmHWM")})
        s.stop()
    return out


def idle_drain(infer, models):
    s = Server(infer, models, "--drain-timeout", "30")
    host, port = s.grpc.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    time.sleep(0.3)
    t = time.perf_counter()
    code = s.stop()
    took = time.perf_counter() - t
    sock.close()
    return {"exit": code, "seconds": took}


def main():
    bin_dir, models = sys.argv[1], sys.argv[2]
    infer = os.path.join(bin_dir, "infer")
    name, flags, cores = cpu()
    grpc = unauthenticated_grpc(infer, models)
    pics = pictures(infer, models)
    drain = idle_drain(infer, models)
    lines = [
        "# What hostile clients cost `infer serve`",
        "",
        f"Generated by `python bench/serve_limits.py {bin_dir} {models}` on {time.strftime('%Y-%m-%d')}: "
        f"{name} ({', '.join(flags)}), {cores} logical CPUs, clients on the same machine, loopback. "
        "Every figure is from this run; the probes are the ones issue 30 ran before these limits existed.",
        "",
        "| probe | answers | time | server |",
        "|---|---|---|---|",
        f"| {grpc['calls']} unauthenticated gRPC ModelInfer of {grpc['bytes_per_call'] / 1e6:.1f} MB, 8 connections "
        f"| {', '.join(grpc['statuses'])} | all in {grpc['wall_s']:.1f} s, slowest {grpc['slowest_s']:.2f} s "
        f"| RSS {grpc['rss_before_mib']} → peak {grpc['rss_peak_mib']} MiB |",
    ]
    for p in pics:
        probes = f"{p['probes']} probe" + ("s" if p["probes"] != 1 else "")
        live = f"liveness ≤ {p['live_max_ms']:.1f} ms ({probes})" if p["live_max_ms"] is not None \
            else "answered before a liveness probe"
        lines.append(f"| 8 PNGs of {p['side']}×{p['side']} ({p['png_kib']} KiB) at once to /classify | "
                     f"{', '.join(map(str, p['statuses']))} | last in {p['last_s']:.2f} s; {live} "
                     f"| peak RSS {p['rss_peak_mib']} MiB |")
    lines.append(f"| SIGTERM with one idle gRPC socket (no HTTP/2 preface) | exit {drain['exit']} | "
                 f"{drain['seconds']:.2f} s | --drain-timeout 30 |")
    lines.append("")
    path = os.path.join(os.path.dirname(__file__), "serve_limits.md")
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(lines))
    os.replace(path + ".tmp", path)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
