"""One catalogue of about 35,000 real product photos: fashion-products-small indexed, then
fashion-products-dev added, with the shipped model, as a shop would do it.

    python benchmarks/catalogue_scale.py

Measures, on this machine:

- ``fashion-search index`` of the small photos and ``fashion-search add`` of the dev photos, each
  in its own process: wall time, photos/s and peak resident memory (the process's own rusage);
- the index folder's size on disk;
- the same vectors as an HNSW index (``compact`` with ``--type hnsw``: no re-embedding), and its
  build time;
- query latency, p50 and p99, flat and HNSW alternated query by query: a dev photo's file in
  (decode, embed, search, results), and the search alone (a stored vector, top 10);
- HNSW's recall@10 against the exact (flat) results on the same stored vectors.

Writes benchmarks/results/catalogue_scale.{json,md}.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from fashion_search.io import write_results
from fashion_search.models.shipped import cpu_name
from fashion_search.params import IndexParams
from fashion_search.search.engine import SearchEngine
from fashion_search.search.index.store import compact, open_index

ROOT = Path(__file__).resolve().parent
PROJECT = ROOT.parent
SHARED = PROJECT.parent / "shared" / "data"


def timed_process(command: list[str]) -> dict:
    """Run ``command``; its wall time and its own peak resident memory."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{output[-2000:]}")
    return {"seconds": round(time.perf_counter() - started, 1), "peak_mib": round(usage.ru_maxrss / 1024),
            "last_line": output.strip().splitlines()[-1] if output.strip() else ""}


def folder_mib(folder: Path) -> float:
    return round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20, 1)


def percentiles(times: list[float]) -> dict:
    return {"p50_ms": round(float(np.percentile(times, 50)) * 1e3, 2),
            "p99_ms": round(float(np.percentile(times, 99)) * 1e3, 2)}


def latencies(engines: dict[str, SearchEngine], photos: list[str], rows: np.ndarray) -> dict:
    """p50 / p99 per engine of a photo query end to end, and of the search alone; alternated."""
    photo_times: dict[str, list[float]] = {name: [] for name in engines}
    search_times: dict[str, list[float]] = {name: [] for name in engines}
    for engine in engines.values():
        engine.search(engine.photo_query(photos[0]), 10)   # the model loaded before timing
    for photo in photos:
        for name, engine in engines.items():
            started = time.perf_counter()
            engine.search(engine.photo_query(photo), 10).to_string(index=False)
            photo_times[name].append(time.perf_counter() - started)
    vectors = np.asarray(next(iter(engines.values())).index.vectors.vectors)
    for row in rows:
        for name, engine in engines.items():
            started = time.perf_counter()
            engine.index.vectors.search(vectors[row], 10)
            search_times[name].append(time.perf_counter() - started)
    return {name: {"photo_query": percentiles(photo_times[name]), "search_only": percentiles(search_times[name])}
            for name in engines}


def recall_at_10(flat: SearchEngine, hnsw: SearchEngine, rows: np.ndarray) -> float:
    """The share of the exact top 10 that HNSW finds, over stored vectors as queries."""
    vectors = np.asarray(flat.index.vectors.vectors)
    found = []
    for row in rows:
        exact, _ = flat.index.vectors.search(vectors[row], 10)
        approximate, _ = hnsw.index.vectors.search(vectors[row], 10)
        found.append(len(set(exact.tolist()) & set(approximate.tolist())) / 10)
    return round(float(np.mean(found)), 4)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=Path, default=SHARED / "fashion-products-small")
    parser.add_argument("--dev", type=Path, default=SHARED / "fashion-products-dev")
    parser.add_argument("--work", type=Path, default=PROJECT / "outputs" / "catalogue-scale")
    parser.add_argument("--photo-queries", type=int, default=200)
    parser.add_argument("--vector-queries", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "catalogue_scale")
    args = parser.parse_args(argv)
    flat_folder, hnsw_folder = args.work / "flat", args.work / "hnsw"
    cli = [sys.executable, "-m", "fashion_search.cli"]
    steps = {
        "index small": timed_process([*cli, "index", str(args.small), "--index", str(flat_folder), "--type", "flat",
                                      "--overwrite"]),
        "add dev": timed_process([*cli, "add", str(args.dev), "--index", str(flat_folder)]),
    }
    settings = IndexParams()
    shutil.rmtree(hnsw_folder, ignore_errors=True)
    shutil.copytree(flat_folder, hnsw_folder)
    started = time.perf_counter()
    compact(open_index(hnsw_folder, dataclasses.replace(settings, type="hnsw")))
    hnsw_seconds = round(time.perf_counter() - started, 1)

    engines = {"flat": SearchEngine.open(flat_folder, settings), "hnsw": SearchEngine.open(hnsw_folder, settings)}
    products = engines["flat"].index.products
    rng = np.random.default_rng(0)
    dev_rows = np.flatnonzero(products["path"].str.startswith(str(args.dev.resolve())).to_numpy())
    photos = products["path"].to_numpy()[rng.choice(dev_rows, args.photo_queries, replace=False)].tolist()
    rows = rng.choice(len(products), args.vector_queries, replace=False)
    report = {
        "machine": f"{cpu_name()}, {os.cpu_count()} cores, {platform.machine()}",
        "products": int(engines["flat"].index.live.sum()),
        "model": engines["flat"].index.identity["model"], "dimension": int(engines["flat"].index.info()["dimension"]),
        "steps": steps, "index_mib": {"flat": folder_mib(flat_folder), "hnsw": folder_mib(hnsw_folder)},
        "hnsw_build_seconds": hnsw_seconds, "hnsw": engines["hnsw"].index.info()["factory"],
        "latency": latencies(engines, photos, rows),
        "photo_queries": len(photos), "vector_queries": len(rows),
        "hnsw_recall_at_10": recall_at_10(engines["flat"], engines["hnsw"], rows),
    }
    photos_per_s = {name: round(count / step["seconds"], 1) for (name, step), count in
                    zip(steps.items(), (report["products"] - len(dev_rows), len(dev_rows)))}
    lines = [
        "# One catalogue of 35,000 product photos", "",
        f"`python benchmarks/catalogue_scale.py` on {report['machine']}: {report['products']:,} products "
        f"(fashion-products-small indexed, then fashion-products-dev added), {report['dimension']}-d vectors of "
        f"{report['model']}.", "",
        "| step | wall time | photos/s | peak memory |", "|---|---|---|---|",
        *[f"| `fashion-search {name.split()[0]}` ({name.split()[1]}) | {step['seconds']:.0f} s | {photos_per_s[name]} "
          f"| {step['peak_mib']:,} MiB |" for name, step in steps.items()],
        f"| HNSW of the same vectors (`compact`, {report['hnsw']}) | {hnsw_seconds:.1f} s | | |", "",
        "| index | size on disk | photo query p50 / p99 | search alone p50 / p99 |", "|---|---|---|---|",
        *[f"| {name} | {report['index_mib'][name]} MiB | {lat['photo_query']['p50_ms']:.1f} / "
          f"{lat['photo_query']['p99_ms']:.1f} ms | {lat['search_only']['p50_ms']:.2f} / "
          f"{lat['search_only']['p99_ms']:.2f} ms |" for name, lat in report["latency"].items()], "",
        f"HNSW recall@10 against flat on {len(rows):,} stored vectors as queries: {report['hnsw_recall_at_10']:.4f}. "
        f"Photo queries: {len(photos)} dev photos, flat and HNSW alternated; the search alone: {len(rows):,} "
        "stored vectors, top 10.", "",
    ]
    write_results(args.out, report, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
