"""What hostile clients cost `infer serve`, measured as an operator would
before exposing it (issues 30 and 39's probes), on loopback with the
clients on the same machine. Writes bench/results/serve_limits.md; every figure is
from this run.

1. Unauthenticated gRPC: with --api-key, 48 ModelInfer calls of 62.7 MB
   each (20 000 images) over 8 connections, without the key (Triton's own
   client). Measured: their status, their time, and the server's peak RSS.
2. Big pictures: 8 PNGs sent at once to /classify/classifier, first
   8192×8192 (over the 28×28 model's pixel cap), then 3584×3584 (at it),
   while liveness is probed every 10 ms. Measured: statuses, the last
   answer's time, the slowest liveness answer, the server's peak RSS.
3. An idle gRPC socket (no HTTP/2 preface) and SIGTERM: time to exit, exit code.
4. Issue 39's attackers, each alone against a server with --api-key (raw
   HTTP/2 by PyPI's h2), while an authenticated 64-image infer is sent on
   each face every 100 ms: the slowest of those answers and any that were
   not 200 / OK, the server's RSS before and at its peak, when the server
   cut the attacker, and SIGTERM's exit with it connected:
   - a window-0 connection sending 48 ServerLive calls with 200 KB
     messages and 16 empty ones (answers it never takes), unauthenticated;
   - 2 connections × 16 gzip ServerLive messages of 65 KB that inflate to
     64 MiB each, unauthenticated;
   - 4 connections declaring 64 MiB REST bodies and sending none, reopened
     when closed;
   - 16 idle HTTP/2 connections that answer every PING, on a
     --max-connections 16 server (--idle-timeout 2 here);
   - a load call whose config asks max_batch_size 2^31-1 (explicit mode).

usage: bench/drivers/serve_limits.py BIN_DIR MODELS_DIR"""
import gzip
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import h2.config
import h2.connection
import h2.events
import h2.settings
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
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


class H2:
    """One raw HTTP/2 client connection: SETTINGS and PINGs answered as any
    stack does, with the receive window given; `closed` is when the server
    closed it."""

    def __init__(self, addr, window=65535):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)))
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.local_settings = h2.settings.Settings(client=True, initial_values={
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window, h2.settings.SettingCodes.ENABLE_PUSH: 0})
        self.conn.initiate_connection()
        self.lock = threading.Lock()
        self.opened, self.closed = time.perf_counter(), None
        self.statuses = []
        self.flush()
        threading.Thread(target=self.read, daemon=True).start()

    def flush(self):
        try:
            self.sock.sendall(self.conn.data_to_send())
        except OSError:
            pass

    def read(self):
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                self.closed = time.perf_counter()
                return
            with self.lock:
                try:
                    events = self.conn.receive_data(data)
                except Exception:
                    events = []
                for e in events:
                    if isinstance(e, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                        status = dict(e.headers).get(b"grpc-status")
                        if status is not None:
                            self.statuses.append(status.decode())
                self.flush()

    def call(self, rpc, message, compressed=False, key=None):
        with self.lock:
            sid = self.conn.get_next_available_stream_id()
            headers = [(":method", "POST"), (":scheme", "http"), (":path", f"/inference.GRPCInferenceService/{rpc}"),
                       (":authority", "bench"), ("content-type", "application/grpc"), ("te", "trailers")]
            if compressed:
                headers.append(("grpc-encoding", "gzip"))
            if key:
                headers.append(("authorization", f"Bearer {key}"))
            self.conn.send_headers(sid, headers)
            body = bytes([1 if compressed else 0]) + len(message).to_bytes(4, "big") + message
            sent = 0
            while sent < len(body):
                room = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
                if room <= 0:
                    break
                self.conn.send_data(sid, body[sent:sent + room])
                sent += room
            if sent == len(body):
                self.conn.end_stream(sid)
            self.flush()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def padding(n):
    """A protobuf message of n bytes any request decodes (one unknown field)."""
    head, length = bytearray([0x7A]), n
    while length >= 0x80:
        head.append((length & 0x7F) | 0x80)
        length >>= 7
    head.append(length)
    return bytes(head) + b"x" * n


def watched(s, attack, seconds, key=KEY):
    """Runs `attack(server)` while an authenticated 64-image infer goes to
    each face every 100 ms for `seconds`; returns the attack's result and
    what the other clients and the server saw."""
    x = np.zeros((64, 1, 28, 28), np.float32)
    h = httpclient.InferenceServerClient(s.http[len("http://"):], network_timeout=30)
    g = grpcclient.InferenceServerClient(s.grpc)
    before = s.rss_mib("VmRSS")
    result = attack(s)
    slowest, failed, n = 0.0, 0, 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for face in (h, g):
            i = (httpclient if face is h else grpcclient).InferInput("image", list(x.shape), "FP32")
            i.set_data_from_numpy(x)
            t = time.perf_counter()
            try:
                # A fresh dict each call: the HTTP client adds its own headers to it.
                face.infer("classifier", [i], headers={"authorization": f"Bearer {key}"})
            except Exception:
                failed += 1
            slowest = max(slowest, time.perf_counter() - t)
            n += 1
        time.sleep(0.1)
    peak = s.rss_mib("VmHWM")
    h.close()
    g.close()
    return result, {"infers": n, "failed": failed, "slowest_ms": slowest * 1e3, "rss_before_mib": before,
                    "rss_peak_mib": peak}


def window_zero_flood(s):
    c = H2(s.grpc, window=0)
    time.sleep(0.2)
    for _ in range(48):
        c.call("ServerLive", padding(200_000))
    for _ in range(16):
        c.call("ServerLive", b"")
    return c


def gzip_bombs(s):
    bomb = gzip.compress(bytes(64 << 20), 9)
    conns = [H2(s.grpc) for _ in range(2)]
    time.sleep(0.2)
    for c in conns:
        for _ in range(16):
            c.call("ServerLive", bomb, compressed=True)
    return conns


def declared_bodies(s):
    host, port = s.http[len("http://"):].rsplit(":", 1)
    head = (f"POST /classify/classifier HTTP/1.1\r\nhost: b\r\nauthorization: Bearer {KEY}\r\n"
            f"content-type: image/png\r\ncontent-length: {64 << 20}\r\n\r\n").encode()
    stop = threading.Event()

    def hold():
        while not stop.is_set():
            sock = socket.create_connection((host, int(port)))
            sock.sendall(head)
            sock.settimeout(1)
            while not stop.is_set():
                try:
                    if not sock.recv(4096):
                        break
                except socket.timeout:
                    continue
                except OSError:
                    break
            sock.close()

    threads = [threading.Thread(target=hold, daemon=True) for _ in range(4)]
    [t.start() for t in threads]
    time.sleep(0.3)
    return stop


def idle_connections(s):
    conns = [H2(s.grpc) for _ in range(16)]
    time.sleep(0.3)
    try:
        urllib.request.urlopen(f"{s.http}/v2/health/live", timeout=10)
        locked = False
    except urllib.error.HTTPError as e:
        locked = e.code == 503
    return conns, locked


def hostile(infer, models, repo):
    out = []
    # 1. A window of 0, unauthenticated liveness calls.
    s = Server(infer, models, "--api-key", KEY)
    c, seen = watched(s, window_zero_flood, 12)
    refused = sum(1 for st in c.statuses if st == "8")
    cut = f"cut after {c.closed - c.opened:.1f} s" if c.closed else "never cut"
    t = time.perf_counter()
    code = s.stop()
    out.append(("one unauthenticated connection, window 0: 48 ServerLive of 200 KB + 16 empty", 
                f"{refused} of 48 RESOURCE_EXHAUSTED; {cut} (--read-timeout 10)", seen,
                f"exit {code} in {time.perf_counter() - t:.2f} s"))
    c.close()
    # 2. gzip bombs.
    s = Server(infer, models, "--api-key", KEY)
    conns, seen = watched(s, gzip_bombs, 4)
    statuses = sorted({st for c in conns for st in c.statuses})
    t = time.perf_counter()
    code = s.stop()
    out.append(("2 connections × 16 gzip ServerLive of 65 KB → 64 MiB each, unauthenticated",
                "grpc-status " + ", ".join(statuses), seen, f"exit {code} in {time.perf_counter() - t:.2f} s"))
    [c.close() for c in conns]
    # 3. Bodies declared and never sent.
    s = Server(infer, models, "--api-key", KEY)
    stop, seen = watched(s, declared_bodies, 12)
    t = time.perf_counter()
    code = s.stop()
    stop.set()
    out.append(("4 connections declaring 64 MiB REST bodies, sending none, reopened (12 s)", "—", seen,
                f"exit {code} in {time.perf_counter() - t:.2f} s"))
    # 4. Idle HTTP/2 connections on a 16-connection server.
    s = Server(infer, models, "--api-key", KEY, "--max-connections", "16", "--idle-timeout", "2")
    (conns, locked), seen = watched(s, idle_connections, 0)
    t0 = time.perf_counter()
    while any(c.closed is None for c in conns) and time.perf_counter() - t0 < 10:
        time.sleep(0.05)
    away = max((c.closed or time.perf_counter()) - c.opened for c in conns)
    (_, after) = watched(s, lambda s: None, 3)
    code = s.stop()
    out.append(("16 idle HTTP/2 connections answering PINGs, --max-connections 16 --idle-timeout 2",
                f"REST {'locked out' if locked else 'served'} at first; all sent away within {away:.1f} s", after,
                f"exit {code}"))
    [c.close() for c in conns]
    # 5. A load config asking for 2^31-1 images a batch.
    s = Server(infer, repo, "--api-key", KEY, "--model-control-mode", "explicit", "--load-model", "*")

    def load(s):
        body = json.dumps({"parameters": {"config": json.dumps({"max_batch_size": 2147483647})}}).encode()
        req = urllib.request.Request(f"{s.http}/v2/repository/models/classifier/load", data=body,
                                     headers={"authorization": f"Bearer {KEY}"})
        try:
            return urllib.request.urlopen(req, timeout=60).status, ""
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())["error"]

    (status, why), seen = watched(s, load, 2)
    code = s.stop()
    out.append(("a load with max_batch_size 2^31-1 (explicit mode, with the key)", f"{status}: {why}", seen,
                f"exit {code}"))
    return out


def triton_repository(models):
    """A Triton repository of the committed classifier, for the load probe."""
    import tempfile
    repo = tempfile.mkdtemp()
    os.makedirs(os.path.join(repo, "classifier", "1"))
    with open(os.path.join(models, "classifier.onnx"), "rb") as f, \
            open(os.path.join(repo, "classifier", "1", "model.onnx"), "wb") as out:
        out.write(f.read())
    with open(os.path.join(repo, "classifier", "config.pbtxt"), "w") as f:
        f.write('name: "classifier"\nmax_batch_size: 64\n')
    return repo


def main():
    bin_dir, models = sys.argv[1], sys.argv[2]
    infer = os.path.join(bin_dir, "infer")
    name, flags, cores = cpu()
    grpc = unauthenticated_grpc(infer, models)
    pics = pictures(infer, models)
    drain = idle_drain(infer, models)
    attacks = hostile(infer, models, triton_repository(models))
    lines = [
        "# What hostile clients cost `infer serve`",
        "",
        f"Generated by `python bench/drivers/serve_limits.py {bin_dir} {models}` on {time.strftime('%Y-%m-%d')}: "
        f"{name} ({', '.join(flags)}), {cores} logical CPUs, clients on the same machine, loopback. "
        "Every figure is from this run; the probes are the ones issues 30 and 39 ran before these limits existed.",
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
    lines += [
        "",
        "## Issue 39's attackers, each alone, with `--api-key`",
        "",
        "While each runs, an authenticated 64-image infer goes to each face (tritonclient, REST and gRPC) "
        "every 100 ms; the table gives the slowest of them and how many were not answered 200 / OK.",
        "",
        "| attacker | what it got | other clients: infers, failed, slowest | server RSS before → peak | SIGTERM |",
        "|---|---|---|---|---|",
    ]
    for what, got, seen, term in attacks:
        lines.append(f"| {what} | {got} | {seen['infers']}, {seen['failed']} failed, {seen['slowest_ms']:.0f} ms "
                     f"| {seen['rss_before_mib']} → {seen['rss_peak_mib']} MiB | {term} |")
    lines.append("")
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "results", "serve_limits.md")
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(lines))
    os.replace(path + ".tmp", path)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
