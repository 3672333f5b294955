"""Load on the HTTP service: requests per second and latency of ``POST /search`` by concurrency.

    python benchmarks/serve_load.py --index outputs/dev-index [--clients 1,4,16] [--requests 200]

Starts ``fashion-search serve`` on a loopback port as a separate process (the model loaded
once), then for each number of concurrent clients sends ``--requests`` searches, each a photo
of the catalogue uploaded as multipart with k = 10, from that many threads with their own
connections. Reports requests/s, p50 / p99 latency and errors per level. Writes
benchmarks/results/serve_load.{json,md}.
"""
from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from fashion_search.io import write_results

ROOT = Path(__file__).resolve().parent
DEFAULT_PHOTOS = ROOT.parent.parent / "shared" / "data" / "fashion-products-dev"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(index: str, port: int) -> subprocess.Popen:
    server = subprocess.Popen([sys.executable, "-m", "fashion_search.cli", "serve", "--index", index, "--port",
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.5)
    server.kill()
    raise RuntimeError("the server did not start within 120 s")


def load(url: str, photos: list[bytes], clients: int, requests: int) -> dict:
    """``requests`` searches from ``clients`` threads, each with its own connection."""
    local = threading.local()

    def one(i: int) -> tuple[float, bool]:
        if not hasattr(local, "session"):
            local.session = httpx.Client(base_url=url, timeout=120)
        started = time.perf_counter()
        response = local.session.post("/search", files={"photo": ("q.jpg", photos[i % len(photos)])}, data={"k": "10"})
        return time.perf_counter() - started, response.status_code == 200 and len(response.json()["results"]) == 10

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        outcomes = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - started
    times = np.array([t for t, _ in outcomes])
    return {"clients": clients, "requests": requests, "errors": int(sum(not ok for _, ok in outcomes)),
            "requests_per_s": round(requests / wall, 2), "p50_ms": round(float(np.percentile(times, 50)) * 1e3, 1),
            "p99_ms": round(float(np.percentile(times, 99)) * 1e3, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--photos", default=str(DEFAULT_PHOTOS), help="a folder whose images/*.jpg are the queries")
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--out", default=str(ROOT / "results" / "serve_load"))
    args = parser.parse_args()
    photos = [p.read_bytes() for p in sorted(Path(args.photos).glob("images/*.jpg"))[:50]]
    port = free_port()
    server = start_server(args.index, port)
    url = f"http://127.0.0.1:{port}"
    try:
        products = httpx.get(f"{url}/health").json()["products"]
        load(url, photos, 1, 10)  # warm-up
        levels = []
        for clients in map(int, args.clients.split(",")):
            levels.append(load(url, photos, clients, args.requests))
            print(levels[-1], flush=True)
    finally:
        server.terminate()
        server.wait(30)
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "index": args.index, "products": products,
              "levels": levels}
    md = "\n".join([
        "# POST /search under load", "",
        f"`python benchmarks/serve_load.py --index {args.index}` on {report['machine']}: {products:,} products; "
        f"each request uploads one of {len(photos)} dev photos, k = 10; server and clients on one machine.", "",
        "| concurrent clients | requests | errors | requests/s | p50 (ms) | p99 (ms) |", "|---|---|---|---|---|---|",
        *[f"| {r['clients']} | {r['requests']} | {r['errors']} | {r['requests_per_s']} | {r['p50_ms']} | {r['p99_ms']} |"
          for r in levels], ""])
    write_results(args.out, report, md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
