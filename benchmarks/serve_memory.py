"""The service's memory under concurrent large uploads: peak and resident size, round after round.

    python benchmarks/serve_memory.py [--photos ../shared/data/fashion-products-dev]

Starts ``fashion-search serve`` over a small index (40 dev photos, random weights), then sends
rounds of concurrent ``POST /search`` uploads of a photo just under the service's pixel budget
(3,990 × 3,990, a few kB as a one-bit PNG), and one round of photos over it (7,700 × 7,700, which
must be refused). After each round: the statuses, the server's peak (VmHWM) and resident
(VmRSS) memory. Writes ``benchmarks/results/serve_memory.{json,md}``.
"""
from __future__ import annotations

import argparse
import io
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from PIL import Image

from cli_startup import CLI, DEFAULT_PHOTOS, ROOT, small_index
from fashion_search.io import write_results

ROUNDS = ((3990, 16), (3990, 16), (3990, 32), (7700, 16))


def memory_mib(pid: int) -> dict[str, float]:
    """Peak and resident memory of a process, in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmHWM", "VmRSS")}


def one_bit_png(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (side, side), 1).save(buffer, format="PNG")
    return buffer.getvalue()


def concurrent_searches(url: str, photo: bytes, clients: int) -> list[int]:
    statuses: list[int] = []

    def search() -> None:
        statuses.append(httpx.post(f"{url}/search", files={"photo": ("big.png", photo)}, timeout=300).status_code)

    threads = [threading.Thread(target=search) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "serve_memory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        index = small_index(args.photos, Path(work))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = subprocess.Popen([*CLI, "serve", "--index", str(index), "--port", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    httpx.get(f"{url}/health")
                    break
                except httpx.TransportError:
                    time.sleep(0.2)
            rows = [{"round": "after start", "clients": 0, "side": 0, "statuses": [], **memory_mib(server.pid)}]
            for side, clients in ROUNDS:
                statuses = concurrent_searches(url, one_bit_png(side), clients)
                rows.append({"round": f"{side}×{side}", "clients": clients, "side": side,
                             "statuses": sorted(set(statuses)), **memory_mib(server.pid)})
        finally:
            server.terminate()
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    table = [f"| {r['round']} | {r['clients']} | {', '.join(map(str, r['statuses'])) or '-'} | "
             f"{r['VmHWM']:.0f} | {r['VmRSS']:.0f} |" for r in rows]
    markdown = "\n".join(["# The service's memory under concurrent large uploads", "",
                          f"{machine}; one `fashion-search serve` process, default limits.", "",
                          "| round | concurrent uploads | statuses | peak (MiB) | resident after (MiB) |",
                          "|---|---|---|---|---|", *table, ""])
    write_results(args.out, {"machine": machine, "rounds": rows}, markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
