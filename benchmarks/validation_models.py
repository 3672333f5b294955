"""Models side by side on the tuned trainer's validation queries: quality and photos/s in one run.

Each of the 494 photos of the dev validation part searches the dev validation half (1,480
photos), as ``python -m fashion_search.pipeline.tuned_training`` scores its epochs; never the test
half. For each model named (a backbone, ``fashion_lite0`` or a model folder): mAP@10 of type and
type+colour under both definitions, the same with its colour part off where it has one, and the
photos per second of embedding the 1,480 photos end to end (decoding included) in this run.

    python benchmarks/validation_models.py efficientnet_lite0 efficientnet_lite1 efficientnet_lite2 fashion_lite0

Writes benchmarks/results/validation_models.{json,md}.
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fashion_search.data.catalog import relevance_codes
from fashion_search.io import write_results
from fashion_search.models.callbacks import gallery_map
from fashion_search.models.tuned_photos import COLOUR_COLUMN, LABEL_COLUMN, choosing_photos
from fashion_search.params import IndexParams
from fashion_search.pipeline.tables import markdown_table
from fashion_search.search.embedding.embedder import embed_photos, load_embedder

ROOT = Path(__file__).resolve().parent
K = 10


def scores(vectors: np.ndarray, items: pd.DataFrame, queries: np.ndarray) -> dict[str, float]:
    """mAP@10 of the queries under type and type+colour, the report's definition and min(k, R)."""
    row = {}
    for name, relevance in (("type", LABEL_COLUMN), ("type+colour", f"{LABEL_COLUMN}+{COLOUR_COLUMN}")):
        report, standard = gallery_map(vectors, relevance_codes(items, relevance), queries, K)
        row[f"{name} report"], row[f"{name} min(k,R)"] = round(report, 4), round(standard, 4)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--dev", type=Path, default=ROOT.parent.parent / "shared/data/fashion-products-dev")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "validation_models")
    args = parser.parse_args(argv)
    photos, queries = choosing_photos(args.dev, args.seed)
    paths = [str(path) for path in photos.paths]
    rows = []
    for model in args.models:
        embedder = load_embedder(IndexParams(model=model, runtime="tensorflow"))
        embed_photos(embedder, paths[:64], 32)   # warm-up
        started = time.perf_counter()
        vectors = embed_photos(embedder, paths, 32).vectors
        rate = len(paths) / (time.perf_counter() - started)
        rows.append({"model": model, "colour": "as shipped", **scores(vectors, photos.items, queries),
                     "photos/s": round(rate, 1)})
        colour_dims = int(embedder.identity.get("colour_dims") or 0)
        if colour_dims:
            off = vectors.copy()
            off[:, -colour_dims:] = 0
            rows.append({"model": model, "colour": "off", **scores(off, photos.items, queries),
                         "photos/s": round(rate, 1)})
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    command = f"python benchmarks/validation_models.py {' '.join(args.models)}"
    markdown = (f"# Models on the validation queries\n\n`{command}` "
                f"on {machine}: {len(queries)} validation photos each searching {len(paths):,} (the dev validation "
                f"half), mAP@{K}; photos/s embedding those {len(paths):,} photos end to end on TensorFlow, in this "
                "run, one model after another.\n\n" + markdown_table(table) + "\n")
    write_results(args.out, {"machine": machine, "queries": len(queries), "gallery": len(paths),
                             "rows": table.to_dict(orient="records")}, markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
