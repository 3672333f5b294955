"""What runs the engine's model: ONNX Runtime against TensorFlow, photos/s and CPU per photo.

    python benchmarks/model_runtime.py [--models efficientnet_lite0,outputs/<run>/models/efficientnet_lite0/fused]
                                       [--batches 1,8,16] [--photos ../shared/data/fashion-products-dev]
                                       [--repeats 5]

For each model and batch size, the same dev photos (framed and preprocessed beforehand, with
their colour grids for a fused model) go through the model on each runtime (``index.runtime``:
``tensorflow``, the traced Keras call; ``onnx``, the converted model), timed in turn after a
warm-up, median of ``--repeats``. Reported: photos/s (wall clock), CPU milliseconds per photo
(all threads of the process), the ratio, and the largest difference between the two runtimes'
vectors. Writes benchmarks/results/model_runtime.{json,md}.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from fashion_search.images import fit_to_square, read_photo
from fashion_search.io import write_results
from fashion_search.params import IndexParams
from fashion_search.search.embedding.embedder import load_embedder
from throughput import DEFAULT_PHOTOS, ROOT

PHOTOS_PER_RUN = 64


def timed(runs: dict, photos: int, repeats: int) -> dict[str, tuple[float, float]]:
    """Per run: median photos/s and CPU ms per photo, the runs alternated after a warm-up."""
    for run in runs.values():
        run()
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            samples[name].append((photos / (time.perf_counter() - wall), (time.process_time() - cpu) / photos * 1e3))
    return {name: (statistics.median(r for r, _ in values), statistics.median(c for _, c in values))
            for name, values in samples.items()}


def measure(model: str, batch: int, paths: list[str], repeats: int) -> dict:
    embedders = {runtime: load_embedder(replace(IndexParams(), model=model, runtime=runtime,
                                                normalise=False)) for runtime in ("tensorflow", "onnx")}
    tensorflow = embedders["tensorflow"]
    squares = np.stack([fit_to_square(read_photo(p), tensorflow.image_size) for p in paths])
    batches = [tensorflow.model_inputs(squares[i:i + batch]) for i in range(0, len(paths), batch)]
    for runtime, embedder in embedders.items():
        if embedder.ready() != runtime:
            raise SystemExit(f"{model} could not run on {runtime}")
    vectors = {runtime: np.concatenate([e.predict(inputs) for inputs in batches]) for runtime, e in embedders.items()}
    runs = {runtime: (lambda e=e: [e.predict(inputs) for inputs in batches]) for runtime, e in embedders.items()}
    result = timed(runs, len(paths), repeats)
    return {"model": model, "batch": batch, "dim": int(vectors["onnx"].shape[1]),
            "max_abs_difference": float(np.max(np.abs(vectors["onnx"] - vectors["tensorflow"]))),
            "largest_value": float(np.max(np.abs(vectors["tensorflow"]))),
            **{f"{runtime}_photos_per_s": round(rate, 1) for runtime, (rate, _) in result.items()},
            **{f"{runtime}_cpu_ms_per_photo": round(cpu, 1) for runtime, (_, cpu) in result.items()},
            "onnx_over_tensorflow": round(result["onnx"][0] / result["tensorflow"][0], 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="efficientnet_lite0")
    parser.add_argument("--batches", default="1,8,16")
    parser.add_argument("--photos", default=str(DEFAULT_PHOTOS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "results" / "model_runtime"))
    args = parser.parse_args()
    paths = [str(p) for p in sorted(Path(args.photos).glob("images/*.jpg"))[:PHOTOS_PER_RUN]]
    results = [measure(model, int(batch), paths, args.repeats) for model in args.models.split(",")
               for batch in args.batches.split(",")]
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    lines = ["# The model on ONNX Runtime against TensorFlow", "",
             f"`python benchmarks/model_runtime.py --models {args.models} --batches {args.batches}` on {machine}: "
             f"{len(paths)} dev photos prepared beforehand, median of {args.repeats} runs, the runtimes alternated.", "",
             "| model | batch | TensorFlow (photos/s) | ONNX Runtime (photos/s) | × | CPU ms/photo, TensorFlow | "
             "CPU ms/photo, ONNX Runtime | largest difference (largest value) |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {Path(r['model']).name if '/' in r['model'] else r['model']} | {r['batch']} | "
                     f"{r['tensorflow_photos_per_s']} | {r['onnx_photos_per_s']} | {r['onnx_over_tensorflow']:.2f} | "
                     f"{r['tensorflow_cpu_ms_per_photo']} | {r['onnx_cpu_ms_per_photo']} | "
                     f"{r['max_abs_difference']:.1e} ({r['largest_value']:.2f}) |")
    write_results(args.out, {"machine": machine, "photos": len(paths), "results": results}, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
