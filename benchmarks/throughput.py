"""Feature-extraction throughput per backbone: bare model on ready tensors vs the full pipeline.

    python benchmarks/throughput.py [--photos ../shared/data/fashion-products-dev] [--backbones a,b]

For each backbone at its native input size and batch 32: (1) the bare model on ready tensors
(the same photos, decoded and preprocessed beforehand), (2) the project's whole input pipeline from JPEG files (decode, pad to a white square,
resize, preprocess) feeding the same model. Each is the median images/s of several timed runs
over the same images, the two timed in turn after a warm-up; the ratio (2)/(1) says what the
input pipeline costs.
Writes benchmarks/results/throughput.json and .md. Weights do not change speed, so models
are built with random weights (no weights files needed).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from fashion_search.data import list_catalogue
from fashion_search.data.catalog import drop_unusable
from fashion_search.io import write_json, write_text_atomic
from fashion_search.models.backbones import build_feature_extractor
from fashion_search.backbone_specs import BACKBONES, get_spec
from fashion_search.pipeline.input_pipeline import make_dataset

ROOT = Path(__file__).resolve().parent
DEFAULT_PHOTOS = ROOT.parent.parent / "shared" / "data" / "fashion-products-dev"


def interleaved_rates(runs: dict, images: int, repeats: int) -> dict[str, float]:
    """Median images/s of each callable in ``runs``, timed in turn ``repeats`` times after a warm-up.

    Alternating the runs spreads the machine's noise over all of them, so their ratio holds.
    """
    for run in runs.values():
        run()
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            rates[name].append(images / (time.perf_counter() - started))
    return {name: statistics.median(values) for name, values in rates.items()}


def measure(name: str, paths: np.ndarray, batch: int, repeats: int) -> dict:
    spec = get_spec(name)
    size = spec.default_size
    model, _ = build_feature_extractor(name, "none", size)
    dataset = make_dataset(paths[: len(paths) // batch * batch], size, spec.preprocess, batch)
    ready = [np.asarray(images) for images in dataset]  # the same photos, decoded and preprocessed
    images = len(ready) * batch

    def bare():
        for tensors in ready:
            model.predict_on_batch(tensors)

    def pipeline():
        for tensors in dataset:
            model.predict_on_batch(tensors)

    rates = interleaved_rates({"bare": bare, "pipeline": pipeline}, images, repeats)
    bare_rate, pipeline_rate = rates["bare"], rates["pipeline"]
    return {"backbone": name, "image_size": size, "batch": batch, "images": images,
            "bare_images_per_s": round(bare_rate, 1), "pipeline_images_per_s": round(pipeline_rate, 1),
            "pipeline_over_bare": round(pipeline_rate / bare_rate, 3)}


def markdown(results: list[dict], machine: str) -> str:
    lines = ["# Feature-extraction throughput", "", f"Machine: {machine}. Batch 32, native input size, "
             "median of the timed runs (bare and pipeline alternated); pipeline = JPEG files through the "
             "project's tf.data input pipeline.", "",
             "| backbone | size | bare model (img/s) | full pipeline (img/s) | pipeline / bare |",
             "|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['backbone']} | {r['image_size']} | {r['bare_images_per_s']} | "
                     f"{r['pipeline_images_per_s']} | {r['pipeline_over_bare']:.0%} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", default=str(DEFAULT_PHOTOS), help="folder with labels.csv and images/")
    parser.add_argument("--backbones", default=",".join(BACKBONES), help="comma-separated names")
    parser.add_argument("--images", type=int, default=64, help="photos per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement")
    parser.add_argument("--out", default=str(ROOT / "results"), help="folder for throughput.json and .md")
    args = parser.parse_args()
    if not (Path(args.photos) / "labels.csv").is_file():
        print(f"error: no labels.csv in {args.photos}; pass --photos", file=sys.stderr)
        return 2
    paths = drop_unusable(list_catalogue("photo_folder", args.photos)).images[: args.images]
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    results = []
    for name in args.backbones.split(","):
        results.append(measure(name, paths, 32, args.repeats))
        print(json.dumps(results[-1]), flush=True)
    out = Path(args.out)
    write_json(out / "throughput.json", {"machine": machine, "results": results})
    write_text_atomic(out / "throughput.md", markdown(results, machine))
    print(markdown(results, machine))
    return 0


if __name__ == "__main__":
    sys.exit(main())
