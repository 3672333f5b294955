"""Index kinds at 10k, 100k and 1M products: build time, memory, single-query latency, recall@10.

    python benchmarks/index_scaling.py [--sizes 10000,100000,1000000] [--dim 256] [--queries 300]

Vectors: a clustered mixture in a low-dimensional subspace, the structure of real embeddings
(products of one kind cluster; embeddings vary along few directions), not i.i.d. noise:
2,000 cluster centres in a 32-dimensional subspace of R^dim, each point its centre plus
anisotropic spread inside the subspace plus small isotropic noise in all dimensions, then
L2-normalised like the engine's vectors (dim 256 = ``finetune.embedding_dim``). Queries are
fresh draws from the same mixture (new photos, not catalogue items).

Each kind is searched through the engine's own :class:`VectorIndex`, first with the default
``params.yaml`` settings, then with other search widths (HNSW ``efSearch``, IVF ``nprobe``) on
the same built index; recall@10 is the share of the exact top 10 it returns, and the speed-up
is exact p50 latency over its p50 latency, both measured in this run. Memory: the faiss
index's own size, and the growth of the process's resident memory while it was built (for
IVF-PQ the exact vectors used to re-rank are memory-mapped from a file, as the engine does,
so they are not counted). Writes benchmarks/results/index_scaling.{json,md}.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from fashion_search.params import IndexParams
from fashion_search.io import write_results
from fashion_search.search.faiss_index import VectorIndex, build_faiss_index, choose_index

RESULTS = Path(__file__).resolve().parent / "results"
CLUSTERS, SUBSPACE = 2_000, 32


def mixture(n: int, dim: int, seed: int, rng_model: int = 0) -> np.ndarray:
    """``n`` unit vectors from the clustered mixture (the mixture fixed by ``rng_model``)."""
    model = np.random.default_rng(rng_model)
    basis = np.linalg.qr(model.normal(size=(dim, SUBSPACE)))[0].T          # (SUBSPACE, dim), orthonormal
    centres = model.normal(size=(CLUSTERS, SUBSPACE))
    spread = model.uniform(0.15, 0.45, size=(CLUSTERS, SUBSPACE))          # each cluster its own shape
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        stop = min(start + 100_000, n)
        which = rng.integers(0, CLUSTERS, stop - start)
        inside = centres[which] + spread[which] * rng.normal(size=(stop - start, SUBSPACE))
        points = inside @ basis + 0.03 * rng.normal(size=(stop - start, dim))
        out[start:stop] = points / np.linalg.norm(points, axis=1, keepdims=True)
    return out


def latencies(index: VectorIndex, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, list[np.ndarray]]:
    """Seconds per single query (one at a time, as a user's query arrives) and the rows found."""
    times, found = [], []
    for query in queries:
        started = time.perf_counter()
        rows, _ = index.search(query, k)
        times.append(time.perf_counter() - started)
        found.append(rows)
    return np.array(times), found


SWEEPS = {"flat": {}, "hnsw": {"hnsw_ef_search": (32, 128)}, "ivfpq": {"ivf_nprobe": (16, 64, 128), "rerank": (10,)}}


def resident_mb() -> float:
    """The process's resident memory now (Linux)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def searched(index: VectorIndex, queries: np.ndarray, truth: list[np.ndarray]) -> dict:
    latencies(index, queries[:20])  # warm-up
    times, found = latencies(index, queries)
    recall = float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))
    return {"p50_ms": round(float(np.percentile(times, 50)) * 1e3, 3),
            "p99_ms": round(float(np.percentile(times, 99)) * 1e3, 3), "recall_at_10": round(recall, 4)}


def measure(vectors: np.ndarray, queries: np.ndarray, kind: str, settings: IndexParams,
            truth: list[np.ndarray], scratch: Path) -> list[dict]:
    """Build one kind, search it with the default settings and each sweep value."""
    choice = choose_index(len(vectors), vectors.shape[1], dataclasses.replace(settings, type=kind))
    before = resident_mb()
    started = time.perf_counter()
    faiss_index = build_faiss_index(vectors, choice, settings.metric, settings)
    build = time.perf_counter() - started
    grown = resident_mb() - before
    exact_rows = vectors
    if kind == "ivfpq":  # as the engine keeps them: on disk, memory-mapped
        vectors.tofile(scratch)
        exact_rows = np.memmap(scratch, np.float32, "r", shape=vectors.shape)
    common = {"kind": kind, "factory": choice.factory, "build_s": round(build, 2),
              "index_mb": round(faiss.serialize_index(faiss_index).nbytes / 2**20, 1), "rss_growth_mb": round(grown)}
    rows = [{**common, "setting": "default",
             **searched(VectorIndex(faiss_index, exact_rows, kind, settings.metric, settings), queries, truth)}]
    for key, values in SWEEPS[kind].items():
        for value in values:
            tuned = dataclasses.replace(settings, **{key: value})
            rows.append({**common, "setting": f"{key}={value}",
                         **searched(VectorIndex(faiss_index, exact_rows, kind, settings.metric, tuned), queries, truth)})
    return rows


def markdown(report: dict) -> str:
    lines = ["# Index kinds by catalogue size", "",
             f"`python benchmarks/index_scaling.py` on {report['machine']}; {report['vectors']}; "
             f"{report['queries']} single queries each, k = 10; default settings {report['settings']}.", "",
             "| products | index | factory | search setting | build (s) | index size (MiB) | RSS growth (MiB) | "
             "p50 (ms) | p99 (ms) | recall@10 | speed-up vs exact (p50) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for size in report["sizes"]:
        exact = next(r for r in size["results"] if r["kind"] == "flat")
        for r in size["results"]:
            marker = " (auto)" if r["kind"] == size["auto_kind"] and r["setting"] == "default" else ""
            lines.append(f"| {size['n']:,} | {r['kind']}{marker} | {r['factory']} | {r['setting']} | {r['build_s']} | "
                         f"{r['index_mb']} | {r['rss_growth_mb']} | {r['p50_ms']} | {r['p99_ms']} | {r['recall_at_10']} | "
                         f"{exact['p50_ms'] / r['p50_ms']:.1f}× |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--kinds", default="flat,hnsw,ivfpq", help="flat (the exact baseline) must be one")
    parser.add_argument("--out", default=str(RESULTS / "index_scaling"))
    args = parser.parse_args()
    settings = IndexParams()
    queries = mixture(args.queries, args.dim, seed=999)
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, faiss {faiss.__version__} "
                         f"({faiss.omp_get_max_threads()} threads)",
              "vectors": f"{args.dim}-d unit vectors, {CLUSTERS:,}-cluster mixture in a {SUBSPACE}-d subspace",
              "queries": args.queries, "settings": {k: getattr(settings, k) for k in (
                  "metric", "hnsw_m", "hnsw_ef_construction", "hnsw_ef_search", "ivf_nprobe", "pq_bytes", "rerank")},
              "sizes": []}
    for n in map(int, args.sizes.split(",")):
        vectors = mixture(n, args.dim, seed=n)
        exact = faiss.IndexFlatIP(args.dim)
        exact.add(vectors)
        truth = list(exact.search(queries, 10)[1])
        auto = choose_index(n, args.dim, settings)
        results = []
        with tempfile.TemporaryDirectory() as scratch:
            for kind in args.kinds.split(","):
                results += measure(vectors, queries, kind, settings, truth, Path(scratch) / "vectors.f32")
                print(n, results[-1], flush=True)
        report["sizes"].append({"n": n, "auto_kind": auto.kind, "auto_reason": auto.reason, "results": results})
        write_results(args.out, report, markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
