"""The service's memory under concurrent large uploads: peak and resident size, round after round.

    python benchmarks/serve_memory.py [--photos ../shared/data/fashion-products-dev]

For each kind of decompression bomb (a one-bit, a 16-bit grey and an RGBA PNG: tiny files that
decode to large images), starts a fresh ``fashion-search serve`` over a small index (40 dev
photos, random weights), then sends rounds of concurrent ``POST /search`` uploads of the largest
photo of that kind the service's decode budget admits (16 million pixels, and as many bytes
decoded as 16 million RGB pixels: 3,990 × 3,990 in one bit or 16-bit grey, 3,460 × 3,460 in RGBA),
and one round of photos over it (which must be refused). After each round: the statuses, the
server's peak (VmHWM) and resident (VmRSS) memory. Writes ``benchmarks/results/serve_memory.{json,md}``.
"""
from __future__ import annotations

import argparse
import io
import os
import platform
import sys
import tempfile
import threading
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from cli_startup import DEFAULT_PHOTOS, ROOT, serving, small_index
from fashion_search.io import write_results

# kind: (PIL mode, fill, side under the budget, side over it)
BOMBS = {"one-bit": ("1", 1, 3990, 7700), "16-bit grey": ("I;16", 0, 3990, 7700),
         "RGBA": ("RGBA", (10, 20, 30, 128), 3460, 3990)}


def memory_mib(pid: int) -> dict[str, float]:
    """Peak and resident memory of a process, in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmHWM", "VmRSS")}


def bomb_png(mode: str, fill, side: int) -> bytes:
    """A PNG of one colour: a few kB that decode to ``side``² pixels of ``mode``."""
    buffer = io.BytesIO()
    image = Image.fromarray(np.full((side, side), fill, np.uint16)) if mode == "I;16" else Image.new(mode, (side, side),
                                                                                                    fill)
    image.save(buffer, format="PNG")
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


def bomb_rounds(index: Path, kind: str, mode: str, fill, under: int, over: int) -> list[dict]:
    """A fresh server, then rounds of one kind of bomb: under the budget (16, 16, 32 at once), over it (16)."""
    with serving(index) as (server, url):
        rows = [{"kind": kind, "round": "after start", "clients": 0, "side": 0, "bytes": 0, "statuses": [],
                 **memory_mib(server.pid)}]
        for side, clients in ((under, 16), (under, 16), (under, 32), (over, 16)):
            photo = bomb_png(mode, fill, side)
            statuses = concurrent_searches(url, photo, clients)
            rows.append({"kind": kind, "round": f"{side}×{side}", "clients": clients, "side": side,
                         "bytes": len(photo), "statuses": sorted(set(statuses)), **memory_mib(server.pid)})
        return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "serve_memory")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        index = small_index(args.photos, Path(work))
        for kind, (mode, fill, under, over) in BOMBS.items():
            rows += bomb_rounds(index, kind, mode, fill, under, over)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    table = [f"| {r['kind']} | {r['round']} | {r['bytes'] / 1024:,.0f} | {r['clients']} | "
             f"{', '.join(map(str, r['statuses'])) or '-'} | {r['VmHWM']:.0f} | {r['VmRSS']:.0f} |" for r in rows]
    markdown = "\n".join(["# The service's memory under concurrent large uploads", "",
                          f"{machine}; a fresh `fashion-search serve` process per kind, default limits.", "",
                          "| bomb | round | file (kB) | concurrent uploads | statuses | peak (MiB) | resident after (MiB) |",
                          "|---|---|---|---|---|---|---|", *table, ""])
    write_results(args.out, {"machine": machine, "rounds": rows}, markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
