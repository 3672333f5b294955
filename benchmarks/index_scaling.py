"""Index kinds at 10k, 100k and 1M products: build time, memory, single-query latency, recall@10.

    python benchmarks/index_scaling.py [--index outputs/dev-fused-index] [--sizes 10000,100000,1000000]
                                       [--queries 300] [--milvus-up-to 100000]

Vectors: drawn from a model fitted to the real vectors of ``--index`` (the dev photos through
the recommended fused model): clusters spread along a few directions each, noise chosen so
that the 10th neighbour is as near to the 1st as in the real set; see
``benchmarks/realistic_vectors.py`` and its results for how close the statistics come.
Queries are fresh draws from the same model (new photos, not catalogue items).

Each faiss kind is searched through the engine's own :class:`VectorIndex`, first with the
default ``params.yaml`` settings, then with other search widths (HNSW ``efSearch``, IVF
``nprobe``) on the same built index; recall@10 is the share of the exact top 10 it returns,
and the speed-up is exact p50 latency over its p50 latency, both measured in this run. Up to
``--milvus-up-to`` products, the same vectors also go into Milvus Lite (embedded, in this
process) with an HNSW index of the same M, efConstruction and efSearch, searched one query at
a time through pymilvus; its build time counts the inserts. Memory: the index's own size
(faiss) and the growth of the process's resident memory while it was built (for IVF-PQ the
exact vectors used to re-rank are memory-mapped from a file, as the engine does, so they are
not counted). Writes benchmarks/results/index_scaling.{json,md}.
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
from fashion_search.search.index.faiss_index import VectorIndex, build_faiss_index, choose_index
from realistic_vectors import fit, index_vectors

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_INDEX = Path(__file__).resolve().parent.parent / "outputs" / "dev-fused-index"
MILVUS_INSERT_BATCH = 5_000


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


def measure_milvus(vectors: np.ndarray, queries: np.ndarray, settings: IndexParams, truth: list[np.ndarray],
                   scratch: Path) -> dict:
    """Milvus Lite with an HNSW index of the engine's settings: build (inserts included), memory, search."""
    from pymilvus import DataType, MilvusClient

    before = resident_mb()
    started = time.perf_counter()
    client = MilvusClient(str(scratch / "milvus.db"))
    schema = client.create_schema(auto_id=False)
    schema.add_field("row", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=vectors.shape[1])
    index = client.prepare_index_params()
    index.add_index(field_name="vector", index_type="HNSW", metric_type="IP",
                    params={"M": settings.hnsw_m, "efConstruction": settings.hnsw_ef_construction})
    client.create_collection("scaling", schema=schema, index_params=index)
    for start in range(0, len(vectors), MILVUS_INSERT_BATCH):
        chunk = vectors[start:start + MILVUS_INSERT_BATCH]
        client.insert("scaling", [{"row": start + i, "vector": v} for i, v in enumerate(chunk.tolist())])
    client.flush("scaling")
    client.load_collection("scaling")
    build = time.perf_counter() - started
    grown = resident_mb() - before

    def search(query: np.ndarray) -> np.ndarray:
        hits = client.search("scaling", data=[query.tolist()], limit=10,
                             search_params={"params": {"ef": settings.hnsw_ef_search}})[0]
        return np.array([hit["row"] if "row" in hit else hit["id"] for hit in hits])

    for query in queries[:20]:
        search(query)  # warm-up
    times, found = [], []
    for query in queries:
        started = time.perf_counter()
        found.append(search(query))
        times.append(time.perf_counter() - started)
    client.close()
    recall = float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))
    return {"kind": "milvus lite", "factory": f"HNSW (M {settings.hnsw_m})", "setting": "default",
            "build_s": round(build, 2), "index_mb": None, "rss_growth_mb": round(grown),
            "p50_ms": round(float(np.percentile(times, 50)) * 1e3, 3),
            "p99_ms": round(float(np.percentile(times, 99)) * 1e3, 3), "recall_at_10": round(recall, 4)}


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
                         f"{r['index_mb'] if r['index_mb'] is not None else '–'} | {r['rss_growth_mb']} | {r['p50_ms']} | {r['p99_ms']} | {r['recall_at_10']} | "
                         f"{exact['p50_ms'] / r['p50_ms']:.1f}× |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default=str(DEFAULT_INDEX), help="an index whose vectors the synthetic ones imitate")
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--kinds", default="flat,hnsw,ivfpq", help="flat (the exact baseline) must be one")
    parser.add_argument("--milvus-up-to", type=int, default=100_000, help="largest size also built in Milvus Lite")
    parser.add_argument("--out", default=str(RESULTS / "index_scaling"))
    args = parser.parse_args()
    settings = IndexParams()
    real = index_vectors(args.index)
    model = fit(real)
    dim = real.shape[1]
    queries = model.sample(args.queries, seed=999)
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, faiss {faiss.__version__} "
                         f"({faiss.omp_get_max_threads()} threads)",
              "vectors": f"{dim}-d unit vectors drawn from a model of the {len(real):,} vectors of {args.index} "
                         f"(benchmarks/realistic_vectors.py; noise factor {model.noise:.3f})",
              "queries": args.queries, "settings": {k: getattr(settings, k) for k in (
                  "metric", "hnsw_m", "hnsw_ef_construction", "hnsw_ef_search", "ivf_nprobe", "pq_bytes", "rerank")},
              "sizes": []}
    for n in map(int, args.sizes.split(",")):
        vectors = model.sample(n, seed=n)
        exact = faiss.IndexFlatIP(dim)
        exact.add(vectors)
        truth = list(exact.search(queries, 10)[1])
        del exact
        auto = choose_index(n, dim, settings)
        results = []
        with tempfile.TemporaryDirectory() as scratch:
            for kind in args.kinds.split(","):
                results += measure(vectors, queries, kind, settings, truth, Path(scratch) / "vectors.f32")
                print(n, results[-1], flush=True)
            if n <= args.milvus_up_to:
                results.append(measure_milvus(vectors, queries, settings, truth, Path(scratch)))
                print(n, results[-1], flush=True)
        report["sizes"].append({"n": n, "auto_kind": auto.kind, "auto_reason": auto.reason, "results": results})
        write_results(args.out, report, markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
