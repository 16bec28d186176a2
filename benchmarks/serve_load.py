"""Requests per second and latency of `python -m mnist_lab.serve` under concurrent clients.

    python benchmarks/serve_load.py outputs/cnn_run outputs/mlp_run      # one server per checkpoint
    python benchmarks/serve_load.py outputs/cnn_run --naive                # also a naive FastAPI app
    python benchmarks/serve_load.py --url http://127.0.0.1:8000            # a server already running
    python benchmarks/serve_load.py outputs/cnn_run --slow-clients 300     # ... while 300 clients stall

Each client thread keeps one HTTP/1.1 connection open and posts the same 140x140 PNG of a digit,
until `--requests` have been answered in all (after `--warmup` unmeasured ones). An error is any
answer that is not 200 with the same digit as the first answer, or a failed connection.
Requests/s counts the measured requests over the time they took; p50/p99 are their latencies.
`--naive` also measures the obvious app: FastAPI, decode + preprocessing + a single-image forward
in each request, torch's default threads. `--slow-clients N` holds N more connections open that
each send half a request (a slowloris) from before the warm-up to the end: it reports how many the
server had closed by then (request_timeout_s) and how many of its answers were 503
(max_connections). Results go to benchmarks/results/serve_load.json.
"""

import argparse
import http.client
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit


def digit_png() -> bytes:
    """A 140x140 PNG of a handwritten-looking 7: dark ink on white, as a phone photo would be."""
    from PIL import Image, ImageDraw

    image = Image.new("L", (140, 140), 255)
    ImageDraw.Draw(image).line([(38, 32), (104, 30), (66, 116)], fill=20, width=11, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(
    url: str, process: subprocess.Popen | None = None, log: Path | None = None, timeout: float = 120
) -> dict:
    """GET /health until it answers; the server's own error when it dies first."""
    parts = urlsplit(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            said = log.read_text()[-3000:] if log is not None else ""
            raise SystemExit(f"the server exited with code {process.returncode}:\n{said}")
        try:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=2)
            conn.request("GET", "/health")
            response = conn.getresponse()
            if response.status == 200:
                return json.loads(response.read())
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"no answer from {url}/health within {timeout:.0f} s")


def start_server(ckpt: str, naive: bool, server_args: list[str], run_dir: Path) -> tuple[subprocess.Popen, str]:
    """Start mnist_lab.serve (or the naive app) on a free port of 127.0.0.1."""
    port = free_port()
    if naive:
        cmd = [sys.executable, __file__, "--serve-naive", ckpt, "--port", str(port)]
    else:
        cmd = [
            sys.executable,
            "-m",
            "mnist_lab.serve",
            f"ckpt_path={ckpt}",
            "host=127.0.0.1",
            f"port={port}",
            f"hydra.run.dir={run_dir / 'run'}",
            *server_args,
        ]
    with (run_dir / "server.log").open("w") as log:  # a file: a pipe nobody reads would block the server
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}"


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def post_many(
    url: str, body: bytes, requests: int, clients: int, expected: list
) -> tuple[list[float], list[str], float]:
    """Post `body` `requests` times from `clients` threads, each on one kept-alive connection:
    the latencies of the good answers, the errors, and the seconds it all took."""
    parts = urlsplit(url)
    headers = {"Content-Type": "image/png"}
    lock = threading.Lock()
    left = [requests]
    latencies: list[float] = []
    errors: list[str] = []

    def take() -> bool:
        with lock:
            left[0] -= 1
            return left[0] >= 0

    def client() -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        while take():
            start = time.perf_counter()
            try:
                conn.request("POST", "/predict", body, headers)
                response = conn.getresponse()
                answer = response.read()
                elapsed = time.perf_counter() - start
                digit = json.loads(answer).get("digit") if response.status == 200 else None
                with lock:
                    if not expected and digit is not None:
                        expected.append(digit)
                    if response.status != 200 or digit != expected[0]:
                        errors.append(f"{response.status}: {answer[:200]!r}")
                    else:
                        latencies.append(elapsed)
            except (OSError, http.client.HTTPException, ValueError) as err:
                with lock:
                    errors.append(f"{type(err).__name__}: {err}")
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors, time.perf_counter() - started


def stall(url: str, count: int) -> list[socket.socket]:
    """`count` connections that each send the first half of a request's headers, then nothing."""
    parts = urlsplit(url)
    socks = []
    for _ in range(count):
        sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: bench\r\nContent-Ty")
        socks.append(sock)
    return socks


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed this stalled connection (it may have said 408 first)."""
    sock.setblocking(False)
    try:
        while sock.recv(65536):
            pass
        return True  # end of file: closed
    except BlockingIOError:
        return False  # open, nothing sent
    except OSError:
        return True  # reset
    finally:
        sock.close()


def load(url: str, body: bytes, requests: int, clients: int, warmup: int, slow_clients: int = 0) -> dict:
    """Warm the server up, then measure `requests` posts from `clients` concurrent clients (while
    `slow_clients` stalled connections stay open, if any)."""
    expected: list[int] = []  # the first answer's digit: every later answer must agree
    stalled = stall(url, slow_clients)
    _, warmup_errors, _ = post_many(url, body, warmup, clients, expected)
    latencies, errors, seconds = post_many(url, body, requests, clients, expected)
    closed = sum(closed_by_server(sock) for sock in stalled)
    ms = sorted(1000 * t for t in latencies)

    def percentile(q: float) -> float | None:
        return round(ms[min(len(ms) - 1, int(q * len(ms)))], 2) if ms else None

    return {
        "requests": requests,
        "clients": clients,
        "warmup": warmup,
        "errors": len(warmup_errors) + len(errors),
        "first_errors": (warmup_errors + errors)[:5],
        "seconds": round(seconds, 3),
        "requests_per_s": round(requests / seconds, 1),
        "p50_ms": percentile(0.50),
        "p90_ms": percentile(0.90),
        "p99_ms": percentile(0.99),
        "max_ms": round(ms[-1], 2) if ms else None,
        "mean_ms": round(statistics.fmean(ms), 2) if ms else None,
        "slow_clients": slow_clients,
        "slow_clients_closed_by_server": closed,
        "answered_503": sum(e.startswith("503") for e in warmup_errors + errors),
    }


def serve_naive(ckpt: str, port: int) -> None:
    """The baseline: decode, prepare and run one image per request, inside the request."""
    import torch
    import uvicorn
    from fastapi import FastAPI, Request

    from mnist_lab.checkpoints.inference import logits
    from mnist_lab.checkpoints.load import load_checkpoint
    from mnist_lab.data.images import decode_image
    from mnist_lab.data.segment import to_mnist

    loaded = load_checkpoint(ckpt)
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": type(loaded.model.net).__name__, "dataset": loaded.dataset}

    @app.post("/predict")  # FastAPI needs the real Request class here: no `from __future__ import annotations`
    async def predict(request: Request) -> dict:
        pixels = to_mnist(decode_image(await request.body()))
        probs = logits(loaded, torch.from_numpy(pixels)[None, None]).softmax(dim=-1)[0]
        return {"digit": int(probs.argmax()), "probabilities": probs.tolist()}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def machine() -> dict:
    import torch

    return {
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="*", help="a .ckpt file or training run folder for each server")
    parser.add_argument("--url", help="measure a server already running here instead of starting one")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured requests first")
    parser.add_argument("--naive", action="store_true", help="also measure the naive FastAPI app per checkpoint")
    parser.add_argument(
        "--slow-clients", type=int, default=0, help="connections that stall half-way through a request meanwhile"
    )
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an override for mnist_lab.serve, e.g. --server-arg batch_wait_ms=0 (repeatable)",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "serve_load.json")
    parser.add_argument("--serve-naive", metavar="CKPT", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_naive:
        return serve_naive(args.serve_naive, args.port)
    if not args.checkpoints and not args.url:
        parser.error("give one or more checkpoints, or --url of a running server")

    body = digit_png()
    runs = []
    if args.url:
        health = wait_until_up(args.url.rstrip("/"), timeout=10)
        runs.append(
            {
                "server": args.url,
                "model": health.get("model"),
                **load(args.url, body, args.requests, args.clients, args.warmup, args.slow_clients),
            }
        )
    for ckpt in args.checkpoints:
        for naive in (False, True) if args.naive else (False,):
            with tempfile.TemporaryDirectory() as run_dir:
                process, url = start_server(ckpt, naive, args.server_arg, Path(run_dir))
                try:
                    health = wait_until_up(url, process, Path(run_dir) / "server.log")
                    result = load(url, body, args.requests, args.clients, args.warmup, args.slow_clients)
                finally:
                    stop_server(process)
            runs.append(
                {
                    "server": "naive FastAPI" if naive else "mnist_lab.serve",
                    "checkpoint": ckpt,
                    "model": health.get("model"),
                    "server_args": [] if naive else args.server_arg,
                    **result,
                }
            )
    for run in runs:
        print(
            f"{run['model']:>16} {run['server']:>16}: {run['requests_per_s']:8.1f} requests/s, "
            f"p50 {run['p50_ms']} ms, p99 {run['p99_ms']} ms, {run['errors']} errors "
            f"({run['clients']} clients, {run['requests']} requests)"
        )
        if run["slow_clients"]:
            print(
                f"    {run['slow_clients']} stalled connections: {run['slow_clients_closed_by_server']} closed by "
                f"the server by the end, {run['answered_503']} answers were 503"
            )
        for error in run["first_errors"]:
            print(f"    {error}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine(), "runs": runs}, indent=2) + "\n")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
