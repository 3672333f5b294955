"""What the integrity checks cost: opening an index with and without the checks of every open,
``verify``, and adding one product (a change checks only generations it did not write), on flat
indexes of random 1280-d vectors.

    python benchmarks/index_checks.py [--rows 3000,35000] [--repeats 5]

For each size: a flat index is built from random unit vectors (no model), then opened with the
checks and with them switched off, alternated, ``--repeats`` times each (median seconds),
verified ``--repeats`` times, then given ``--repeats`` one-product adds (median). Writes ``benchmarks/results/index_checks.{json,md}``.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd

from fashion_search.io import write_results
from fashion_search.params import IndexParams
from fashion_search.search.index import store
from fashion_search.colour import DESCRIPTOR_DIM
from fashion_search.search.index.store import add_products, create_index, open_index, verify_index

ROOT = Path(__file__).resolve().parent
DIM = 1280


def random_index(folder: Path, rows: int) -> Path:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(rows, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    items = pd.DataFrame({"id": [f"p{i}" for i in range(rows)], "path": "", "articleType": "Tshirts"})
    identity = {"backbone": "random", "recipe": "frozen", "weights": "none", "weights_sha256": "-", "image_size": 224,
                "preprocessing": "-", "dim": DIM, "normalised": True, "model": "random"}
    create_index(folder, identity, IndexParams(type="flat"), items, vectors,
                 rng.random((rows, DESCRIPTOR_DIM)).astype(np.float32), pd.DataFrame(columns=["id", "path", "reason"]))
    return folder


def seconds(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def measure(folder: Path, repeats: int) -> dict:
    checked, unchecked, verified = [], [], []
    unchecked_open = [mock.patch.object(store, name, lambda *a, **k: None)
                      for name in ("check_finite", "check_checksums", "check_rows_read")]
    for _ in range(repeats):
        store.CHECKED.clear()  # each open checks as a new process's would
        checked.append(seconds(lambda: open_index(folder, IndexParams())))
        for patch in unchecked_open:
            patch.start()
        unchecked.append(seconds(lambda: open_index(folder, IndexParams())))
        for patch in unchecked_open:
            patch.stop()
        verified.append(seconds(lambda: verify_index(folder)))
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    return {"open_checked_s": statistics.median(checked), "open_unchecked_s": statistics.median(unchecked),
            "verify_s": statistics.median(verified), "index_mib": size / 2**20, "add_s": add_seconds(folder, repeats)}


def add_seconds(folder: Path, repeats: int) -> float:
    """Median seconds of adding one random product, as a service adds one upload."""
    rng = np.random.default_rng(1)
    index, times = open_index(folder, IndexParams()), []
    for i in range(repeats):
        vector = rng.normal(size=(1, DIM)).astype(np.float32)
        items = pd.DataFrame({"id": [f"new{i}"], "path": "", "articleType": "Tshirts"})
        started = time.perf_counter()
        index, _ = add_products(index, items, vector / np.linalg.norm(vector),
                                rng.random((1, DESCRIPTOR_DIM)).astype(np.float32),
                                pd.DataFrame(columns=["id", "path", "reason"]))
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="3000,35000")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "index_checks")
    args = parser.parse_args()
    results = []
    for rows in map(int, args.rows.split(",")):
        with tempfile.TemporaryDirectory() as work:
            results.append({"rows": rows, **measure(random_index(Path(work) / "index", rows), args.repeats)})
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    table = [f"| {r['rows']:,} | {r['index_mib']:,.0f} | {r['open_unchecked_s'] * 1e3:,.0f} | "
             f"{r['open_checked_s'] * 1e3:,.0f} | {r['open_checked_s'] / r['open_unchecked_s']:.2f} | "
             f"{r['verify_s'] * 1e3:,.0f} | {r['add_s'] * 1e3:,.0f} |" for r in results]
    markdown = "\n".join(["# What the integrity checks cost", "",
                          f"{machine}; flat indexes of random 1280-d vectors; median of {args.repeats} alternated "
                          "runs.", "",
                          "| rows | index (MiB) | open without checks (ms) | open with checks (ms) | ratio | "
                          "verify (ms) | add one product (ms) |", "|---|---|---|---|---|---|---|", *table, ""])
    write_results(args.out, {"machine": machine, "repeats": args.repeats, "results": results}, markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
