"""Load on the HTTP service: requests per second, latency and memory of ``POST /search``.

    python benchmarks/serve_load.py --index outputs/dev-index [--baseline REV] [--clients 1,4,16]
                                    [--requests 200] [--rounds 2] [--rss-requests 2000]

Starts ``fashion-search serve`` on a loopback port as a separate process (the model loaded
once) in each configuration, one after the other, ``--rounds`` times:

- ``baseline``: the server of git revision ``--baseline`` (checked out in a temporary
  worktree), to measure a change against the code before it in the same run;
- ``max-batch 1``: this code with one model call per photo;
- ``batched, TensorFlow``: this code with the model run by TensorFlow (``--runtime tensorflow``);
- ``batched``: this code as it ships (concurrent photos share model calls, on ONNX Runtime).

For each number of concurrent clients it sends ``--requests`` searches, each a dev photo
uploaded as multipart with k = 10, from that many threads with their own connections, and
reports requests/s, p50 / p99 latency and errors (the median over rounds). Then the shipped
server answers ``--rss-requests`` more from 16 clients while its resident memory is read from
``/proc`` every tenth of them: RSS flat means no growth per request. Writes
benchmarks/results/serve_load.{json,md}.
"""
from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from fashion_search.io import write_results

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
DEFAULT_PHOTOS = REPO.parent / "shared" / "data" / "fashion-products-dev"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(index: str, port: int, code: Path, extra: list[str]) -> subprocess.Popen:
    """``fashion-search serve`` of the package in ``code``, once it answers /health."""
    env = {**os.environ, "PYTHONPATH": str(code), "TF_CPP_MIN_LOG_LEVEL": "2"}
    server = subprocess.Popen([sys.executable, "-m", "fashion_search.cli", "serve", "--index", index, "--port",
                               str(port), *extra], cwd=code, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.5)
    server.kill()
    raise RuntimeError("the server did not start within 180 s")


def rss_mib(pid: int) -> float:
    """Resident memory of a process, MiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def load(url: str, photos: list[bytes], clients: int, requests: int, every: int = 0,
         on_every=None) -> dict:
    """``requests`` searches from ``clients`` threads, each with its own connection; ``on_every``
    is called after every ``every`` answers."""
    local = threading.local()
    done = {"n": 0}
    lock = threading.Lock()

    def one(i: int) -> tuple[float, bool]:
        if not hasattr(local, "session"):
            local.session = httpx.Client(base_url=url, timeout=120)
        started = time.perf_counter()
        response = local.session.post("/search", files={"photo": ("q.jpg", photos[i % len(photos)])}, data={"k": "10"})
        elapsed = time.perf_counter() - started
        with lock:
            done["n"] += 1
            if every and done["n"] % every == 0:
                on_every()
        return elapsed, response.status_code == 200 and len(response.json()["results"]) == 10

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        outcomes = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - started
    times = np.array([t for t, _ in outcomes])
    return {"clients": clients, "requests": requests, "errors": int(sum(not ok for _, ok in outcomes)),
            "requests_per_s": round(requests / wall, 2), "p50_ms": round(float(np.percentile(times, 50)) * 1e3, 1),
            "p99_ms": round(float(np.percentile(times, 99)) * 1e3, 1)}


def measure(index: str, code: Path, extra: list[str], photos: list[bytes], clients: list[int], requests: int,
            rss_requests: int = 0) -> tuple[list[dict], list[float]]:
    """One configuration: its levels, and (with ``rss_requests``) RSS samples over that many more."""
    port = free_port()
    server = start_server(index, port, code, extra)
    url = f"http://127.0.0.1:{port}"
    try:
        load(url, photos, 1, 10)  # warm-up
        levels = [load(url, photos, n, requests) for n in clients]
        samples = [rss_mib(server.pid)]
        if rss_requests:
            levels.append({**load(url, photos, 16, rss_requests, max(1, rss_requests // 10),
                                  lambda: samples.append(rss_mib(server.pid))), "note": "RSS run"})
        return levels, samples
    finally:
        server.terminate()
        server.wait(30)


def median_levels(rounds: list[list[dict]]) -> list[dict]:
    """Per concurrency level, the median of each measure over the rounds; errors summed."""
    merged = []
    for same in zip(*rounds):
        row = {k: same[0][k] for k in ("clients", "requests")}
        for key in ("requests_per_s", "p50_ms", "p99_ms"):
            row[key] = round(float(np.median([r[key] for r in same])), 2)
        row["errors"] = sum(r["errors"] for r in same)
        merged.append(row)
    return merged


def baseline_checkout(revision: str, folder: Path) -> Path:
    """The package as it was at ``revision``, in a detached worktree under ``folder``."""
    target = folder / "baseline"
    subprocess.run(["git", "worktree", "add", "--detach", str(target), revision], cwd=REPO, check=True,
                   capture_output=True)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--photos", default=str(DEFAULT_PHOTOS), help="a folder whose images/*.jpg are the queries")
    parser.add_argument("--baseline", help="a git revision whose server to measure alongside (e.g. main~3)")
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rss-requests", type=int, default=2000)
    parser.add_argument("--out", default=str(ROOT / "results" / "serve_load"))
    args = parser.parse_args()
    index = str(Path(args.index).resolve())
    photos = [p.read_bytes() for p in sorted(Path(args.photos).glob("images/*.jpg"))[:50]]
    clients = [int(n) for n in args.clients.split(",")]
    with tempfile.TemporaryDirectory() as scratch:
        configs = {"max-batch 1": (REPO, ["--max-batch", "1"]),
                   "batched, TensorFlow": (REPO, ["--runtime", "tensorflow"]), "batched": (REPO, [])}
        if args.baseline:
            configs = {f"baseline {args.baseline}": (baseline_checkout(args.baseline, Path(scratch)), []), **configs}
        try:
            rounds: dict[str, list] = {name: [] for name in configs}
            for _ in range(args.rounds):
                for name, (code, extra) in configs.items():
                    levels, _ = measure(index, code, extra, photos, clients, args.requests)
                    rounds[name].append(levels)
                    print(name, levels, flush=True)
            code, extra = configs["batched"]
            _, rss = measure(index, code, extra, photos, [], 0, args.rss_requests)
        finally:
            if args.baseline:
                subprocess.run(["git", "worktree", "remove", "--force", str(Path(scratch) / "baseline")], cwd=REPO,
                               capture_output=True)
    results = {name: median_levels(levels) for name, levels in rounds.items()}
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "index": args.index,
              "photos": len(photos), "rounds": args.rounds, "configurations": results,
              "rss_mib": [round(x, 1) for x in rss], "rss_requests": args.rss_requests}
    write_results(args.out, report, markdown(report, args))
    print(markdown(report, args))
    return 0


def markdown(report: dict, args: argparse.Namespace) -> str:
    """The tables people read: each configuration's levels, ratios to the first one, and RSS."""
    configs = report["configurations"]
    first = next(iter(configs))
    reference = {row["clients"]: row for row in configs[first]}
    lines = ["# POST /search under load", "",
             f"`python benchmarks/serve_load.py --index {args.index}"
             f"{f' --baseline {args.baseline}' if args.baseline else ''}` on {report['machine']}; each request uploads "
             f"one of {report['photos']} dev photos, k = 10; server and clients on one machine. Median of "
             f"{report['rounds']} rounds; the configurations ran one after the other in each round.", "",
             f"| server | concurrent clients | requests/s | × {first} | p50 (ms) | p99 (ms) | errors |",
             "|---|---|---|---|---|---|---|"]
    for name, levels in configs.items():
        for row in levels:
            ratio = row["requests_per_s"] / reference[row["clients"]]["requests_per_s"]
            lines.append(f"| {name} | {row['clients']} | {row['requests_per_s']} | {ratio:.2f} | {row['p50_ms']} | "
                         f"{row['p99_ms']} | {row['errors']} |")
    rss = report["rss_mib"]
    lines += ["", f"Resident memory of the shipped server over {report['rss_requests']:,} more requests from 16 "
              f"clients (MiB: after the warm-up, then after every tenth of them): {', '.join(f'{x:.0f}' for x in rss)}; "
              f"growth from the first tenth to the last {rss[-1] - rss[1]:+.1f} MiB.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
