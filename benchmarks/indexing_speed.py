"""Indexing speed against the bare model: how much of the model's batch throughput indexing keeps.

    python benchmarks/indexing_speed.py [--models efficientnet_lite0,outputs/<run>/models/efficientnet_lite0/fused]
                                        [--runtimes onnx,tensorflow] [--photos ../shared/data/fashion-products-dev]
                                        [--count 256] [--repeats 3] [--side 1600]

For each model and each runtime running it (``index.runtime``), over the same ``--count`` dev photos in batches of 32, timed in turn after a
warm-up (median of ``--repeats``):

- ``bare model``: the model alone on inputs prepared beforehand (preprocessed photos, and for a
  fused model their colour grids);
- ``indexing``: what ``fashion-search index`` does per photo (read and decode the JPEG, frame
  it, describe its colours, the model's inputs, the model), photos prepared by worker threads
  while the model runs;
- ``indexing, no overlap``: the same work one step after the other (``workers=0``), as before;
- ``indexing, colour skipped``: indexing with every colour descriptor replaced by zeros, a bound
  that shows what the colour description (a fused model's grids stay) costs indexing;
- CPU milliseconds per photo (all threads) of the bare model, and of preparing photos alone
  (``prepare_batch``: decode, frame, colour-describe, the model's inputs) in one thread: their
  sum over the cores bounds what indexing can reach; and of preparing with every JPEG decoded in
  full, as before large ones were decoded reduced (``images.DECODE_SIDE``).

``--side N`` enlarges the photos to N pixels on their longer side first (bicubic, saved as JPEG
of quality 90 in a temporary folder), as a shop's photos usually are larger than the dev set's
300 px.

Writes benchmarks/results/indexing_speed.{json,md} (``indexing_speed_<N>px`` with ``--side N``).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from fashion_search import images
from fashion_search.images import MAX_PIXELS, fit_to_square, read_photo
from fashion_search.io import write_results
from fashion_search.params import IndexParams
from fashion_search.search.embedding import embedder as embedder_module
from fashion_search.colour import DESCRIPTOR_DIM
from fashion_search.search.embedding.embedder import PREPARE_WORKERS, embed_photos, load_embedder, prepare_batch
from throughput import DEFAULT_PHOTOS, ROOT, interleaved_rates

BATCH = 32


def measure(model: str, runtime: str, paths: list[str], repeats: int) -> dict:
    embedder = load_embedder(replace(IndexParams(), model=model, weights="none", runtime=runtime))
    squares = np.stack([fit_to_square(read_photo(p), embedder.image_size) for p in paths])
    ready = [embedder.model_inputs(squares[start:start + BATCH]) for start in range(0, len(paths), BATCH)]

    def bare() -> None:
        for inputs in ready:
            embedder.predict(inputs)

    runs = {"bare model": bare,
            "indexing": lambda: embed_photos(embedder, paths, BATCH),
            "indexing, no overlap": lambda: embed_photos(embedder, paths, BATCH, workers=0),
            "indexing, colour skipped": lambda: without_colour(embed_photos, embedder, paths, BATCH)}
    rates = interleaved_rates(runs, len(paths), repeats)

    def prepare() -> None:
        for start in range(0, len(paths), BATCH):
            prepare_batch(embedder, paths[start:start + BATCH], MAX_PIXELS)

    model_cpu, prepare_cpu = (cpu_ms_per_photo(run, len(paths), repeats) for run in (bare, prepare))
    reduced_side, images.DECODE_SIDE = images.DECODE_SIDE, sys.maxsize
    try:
        full_decode_cpu = cpu_ms_per_photo(prepare, len(paths), repeats)
    finally:
        images.DECODE_SIDE = reduced_side
    return {"model": model, "runtime": embedder.ready(), "recipe": embedder.identity["recipe"],
            "image_size": embedder.image_size, "photos": len(paths), **{name: round(rate, 1) for name, rate in rates.items()},
            "indexing_over_bare": round(rates["indexing"] / rates["bare model"], 3),
            "no_overlap_over_bare": round(rates["indexing, no overlap"] / rates["bare model"], 3),
            "colour_skipped_over_bare": round(rates["indexing, colour skipped"] / rates["bare model"], 3),
            "model_cpu_ms_per_photo": round(model_cpu, 1), "prepare_cpu_ms_per_photo": round(prepare_cpu, 1),
            "prepare_full_decode_cpu_ms_per_photo": round(full_decode_cpu, 1),
            "cpu_bound_over_bare": round(cpu_bound(model_cpu, prepare_cpu) / rates["bare model"], 3)}


def without_colour(run, *args):
    """``run(*args)`` with the colour descriptors of photos replaced by zeros."""
    describe = embedder_module.colour_descriptors
    embedder_module.colour_descriptors = lambda photos: np.zeros((len(photos), DESCRIPTOR_DIM), np.float32)
    try:
        return run(*args)
    finally:
        embedder_module.colour_descriptors = describe


def cpu_ms_per_photo(run, photos: int, repeats: int) -> float:
    """Median CPU time (all threads of this process) per photo of ``run``."""
    times = []
    for _ in range(repeats):
        started = time.process_time()
        run()
        times.append((time.process_time() - started) / photos * 1e3)
    return statistics.median(times)


def cpu_bound(model_ms: float, prepare_ms: float) -> float:
    """Photos/s if every core were busy with the model's and the preparation's CPU time, and nothing else."""
    return (os.cpu_count() or 1) * 1e3 / (model_ms + prepare_ms)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="efficientnet_lite0")
    parser.add_argument("--runtimes", default="onnx,tensorflow")
    parser.add_argument("--photos", default=str(DEFAULT_PHOTOS))
    parser.add_argument("--count", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--side", type=int, default=0, help="enlarge photos to this longer side first (0: as they are)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    paths = [str(p) for p in sorted(Path(args.photos).glob("images/*.jpg"))[:args.count]]
    with tempfile.TemporaryDirectory() as folder:
        paths = enlarged(paths, args.side, Path(folder)) if args.side else paths
        return report(args, paths)


def enlarged(paths: list[str], side: int, folder: Path) -> list[str]:
    """Copies of the photos enlarged to ``side`` pixels on their longer side, as JPEG files in ``folder``."""
    copies = []
    for path in paths:
        with Image.open(path) as image:
            scale = side / max(image.size)
            copy = image.convert("RGB").resize((round(image.width * scale), round(image.height * scale)),
                                               Image.Resampling.BICUBIC)
        copies.append(str(folder / Path(path).name))
        copy.save(copies[-1], quality=90)
    return copies


def report(args: argparse.Namespace, paths: list[str]) -> int:
    """Measure every model on every runtime over ``paths``; write and print the tables."""
    suffix = f"_{args.side}px" if args.side else ""
    results = [measure(model, runtime, paths, args.repeats) for model in args.models.split(",")
               for runtime in args.runtimes.split(",")]
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    lines = ["# Indexing speed against the bare model", "",
             f"`python benchmarks/indexing_speed.py --models {args.models} --runtimes {args.runtimes}"
             f"{f' --side {args.side}' if args.side else ''}` on {machine}: {len(paths)} dev photos "
             f"({f'enlarged to {args.side} px on the longer side, ' if args.side else ''}{Path(paths[0]).suffix} files), batches of {BATCH}, median photos/s of {args.repeats} timed runs, "
             f"the four alternated; indexing prepares photos in {PREPARE_WORKERS} threads beside the model.", "",
             "| model | recipe | size | runtime | bare model (photos/s) | indexing | indexing / bare | no overlap | "
             "no overlap / bare | colour skipped / bare | CPU ms/photo: model | CPU ms/photo: preparing | CPU ms/photo: preparing, "
             "JPEGs decoded in full | CPU-bound ceiling / bare |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {Path(r['model']).name if '/' in r['model'] else r['model']} | {r['recipe']} | "
                     f"{r['image_size']} | {r['runtime']} | {r['bare model']} | {r['indexing']} | {r['indexing_over_bare']:.0%} | "
                     f"{r['indexing, no overlap']} | {r['no_overlap_over_bare']:.0%} | {r['colour_skipped_over_bare']:.0%} | "
                     f"{r['model_cpu_ms_per_photo']} | "
                     f"{r['prepare_cpu_ms_per_photo']} | {r['prepare_full_decode_cpu_ms_per_photo']} | "
                     f"{r['cpu_bound_over_bare']:.0%} |")
    write_results(args.out or str(ROOT / "results" / f"indexing_speed{suffix}"),
                  {"machine": machine, "batch": BATCH, "side": args.side or None, "results": results},
                  "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
