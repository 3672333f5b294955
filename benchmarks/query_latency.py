"""Searching the dev catalogue: end-to-end query latency, and what a query of a catalogue photo returns.

    python benchmarks/query_latency.py --index outputs/dev-index

Needs an index of the dev photos (``fashion-search index ../shared/data/fashion-products-dev
--index outputs/dev-index``). Measures, on this machine:

- end-to-end latency with the model already loaded: photo file in (decode, embed, colour
  descriptor, search, results table), one photo at a time, p50 / p99 over ``--queries`` photos;
- the same through the command line, a fresh ``fashion-search query`` process per photo
  (Python, TensorFlow and the model loaded each time), median of ``--cli-runs``;
- "more like this" (a product's stored vector, its own photos left out) against a plain search
  with the same vector, alternated per product: p50 of each, their ratio, and the Python-side
  peak memory of one such query (tracemalloc);
- over every indexed photo as a query (its stored vector): the share ranked first itself, and
  the share of the next 10 with the query's ``articleType``; with ``--queries-from
  outputs/<run>/data/items.csv --split test``, only over the photos of that split (photos a
  fine-tuned model never trained on), the whole catalogue still searched.

Writes benchmarks/results/query_latency.{json,md}.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from fashion_search.io import write_results
from fashion_search.params import IndexParams
from fashion_search.search.engine import SearchEngine

ROOT = Path(__file__).resolve().parent


def own_photo_ranks(engine: SearchEngine, column: str, queries: np.ndarray) -> dict:
    """Indexed photos' stored vectors as queries (rows ``queries``): is each first, and are the
    next 10 of its kind?"""
    products = engine.index.products
    labels = products[column].astype(str).to_numpy()
    first, same = [], []
    for row in queries:
        rows, _ = engine.index.vectors.search(np.asarray(engine.index.vectors.vectors[row]), 11)
        first.append(rows[0] == row)
        others = [r for r in rows if r != row][:10]
        same.append(np.mean(labels[others] == labels[row]))
    return {"queries": len(queries), "itself_first": round(float(np.mean(first)), 4),
            f"next_10_same_{column}": round(float(np.mean(same)), 4)}


def like_versus_plain(engine: SearchEngine, products: np.ndarray) -> dict:
    """p50 latency and peak Python memory of "more like this" and of a plain search with the same
    vector, alternated product by product."""
    times: dict[str, list[float]] = {"like": [], "plain": []}
    peaks: dict[str, int] = {"like": 0, "plain": 0}
    for product in products:
        like = engine.product_query(str(product))
        for name, query in (("like", like), ("plain", replace(like, exclude=None))):
            started = time.perf_counter()
            engine.search(query, 10)
            times[name].append(time.perf_counter() - started)
            tracemalloc.start()
            engine.search(query, 10)
            peaks[name] = max(peaks[name], tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
    p50 = {name: float(np.percentile(values, 50)) * 1e3 for name, values in times.items()}
    return {"queries": len(products), "like_p50_ms": round(p50["like"], 2), "plain_p50_ms": round(p50["plain"], 2),
            "ratio": round(p50["like"] / p50["plain"], 2), "like_peak_kib": round(peaks["like"] / 1024, 1),
            "plain_peak_kib": round(peaks["plain"] / 1024, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--cli-runs", type=int, default=5)
    parser.add_argument("--queries-from", help="a catalogue's items.csv (id, split): query only its --split photos")
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", default=str(ROOT / "results" / "query_latency"))
    args = parser.parse_args()

    engine = SearchEngine.open(args.index, IndexParams())
    rows = np.arange(len(engine.index.products))
    if args.queries_from:
        items = pd.read_csv(args.queries_from, dtype={"id": str})
        wanted = set(items["id"][items["split"] == args.split])
        rows = np.flatnonzero(engine.index.products["id"].isin(wanted).to_numpy())
    paths = engine.index.products["path"].to_numpy()[
        np.random.default_rng(0).choice(len(engine.index.products), args.queries, replace=False)]
    engine.search(engine.photo_query(paths[0]), 10)  # loads the model
    times, firsts = [], []
    for path in paths:
        started = time.perf_counter()
        results = engine.search(engine.photo_query(path), 10)
        results.to_string(index=False)
        times.append(time.perf_counter() - started)
        firsts.append(results["path"].iloc[0] == path)
    like = like_versus_plain(engine, engine.index.products["id"].to_numpy()[
        np.random.default_rng(1).choice(len(engine.index.products), min(300, len(engine.index.products)), replace=False)])
    cli = []
    for path in paths[: args.cli_runs]:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "fashion_search.cli", "query", str(path), "--index", args.index],
                       check=True, capture_output=True)
        cli.append(time.perf_counter() - started)
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "index": engine.index.info() | {"model": engine.index.identity["backbone"]},
        "loaded_model": {"queries": len(times), "p50_ms": round(float(np.percentile(times, 50)) * 1e3, 1),
                         "p99_ms": round(float(np.percentile(times, 99)) * 1e3, 1),
                         "photo_itself_first": round(float(np.mean(firsts)), 4)},
        "cli_process": {"runs": len(cli), "median_s": round(float(np.median(cli)), 2)},
        "more_like_this": like,
        "own_photos": own_photo_ranks(engine, "articleType", rows) | {
            "queries_from": f"{args.queries_from} ({args.split})" if args.queries_from else "every indexed photo"},
    }
    info = report["index"]
    md = "\n".join([
        "# Query latency and results on the dev catalogue", "",
        f"`python benchmarks/query_latency.py --index {args.index}` on {report['machine']}: {info['products']:,} "
        f"products, {info['kind']} index, {info['dimension']}-d {info['model']} vectors.", "",
        "| measure | value |", "|---|---|",
        f"| end to end, model loaded: p50 / p99 over {len(times)} photos | {report['loaded_model']['p50_ms']} ms / "
        f"{report['loaded_model']['p99_ms']} ms |",
        f"| … of which the photo itself came first | {report['loaded_model']['photo_itself_first']:.2%} |",
        f"| a fresh `fashion-search query` process, median of {len(cli)} | {report['cli_process']['median_s']} s |",
        f"| \"more like this\" / plain search with the same vector, p50 over {like['queries']} products | "
        f"{like['like_p50_ms']} ms / {like['plain_p50_ms']} ms (ratio {like['ratio']}) |",
        f"| … peak Python memory of one query (tracemalloc) | {like['like_peak_kib']} KiB / {like['plain_peak_kib']} KiB |",
        f"| {report['own_photos']['queries']:,} indexed photos as queries ({report['own_photos']['queries_from']}): "
        f"itself first | {report['own_photos']['itself_first']:.2%} |",
        f"| … the next 10 with the same articleType | {report['own_photos']['next_10_same_articleType']:.2%} |", ""])
    write_results(args.out, report, md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
