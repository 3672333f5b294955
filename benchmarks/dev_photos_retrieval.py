"""Frozen ImageNet features against random weights on real product photos.

    python benchmarks/dev_photos_retrieval.py [--photos ../shared/data/fashion-products-dev]
                                              [--backbone efficientnet_lite0] [--label articleType]

Every photo is a query against all other photos (itself excluded); relevant = same label.
Features are the backbone's global average pool, L2-normalised, ranked by Euclidean distance
(the same order as cosine distance). Queries whose label has no other photo are skipped and
counted. Writes benchmarks/results/dev_photos_retrieval.json and .md.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from fashion_search.data import list_catalogue  # first: the package quiets TensorFlow before it loads
from fashion_search.data.catalog import drop_unusable, with_labels
from fashion_search.io import write_json, write_text_atomic
from fashion_search.models.backbones import build_feature_extractor
from fashion_search.backbone_specs import get_spec
from fashion_search.pipeline.evaluate import evaluate_store
from fashion_search.pipeline.features import FeatureStore, extract_features

import keras
import pandas as pd

ROOT = Path(__file__).resolve().parent
DEFAULT_PHOTOS = ROOT.parent.parent / "shared" / "data" / "fashion-products-dev"


def run(backbone: str, weights: str, photos, batch: int) -> tuple[pd.DataFrame, int, float, str]:
    spec = get_spec(backbone)
    keras.utils.set_random_seed(0)
    model, source = build_feature_extractor(backbone, weights, spec.default_size)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        features = extract_features(model, photos.images, spec.default_size, spec.preprocess, batch, work,
                                    description=f"{backbone} ({weights})")
    seconds = time.perf_counter() - started
    store = FeatureStore(features, photos.items["id"].tolist(), {"backbone": backbone})
    result = evaluate_store(store, photos, (1, 5, 10), "cosine", photos.label_column)
    summary = result.summary.assign(weights=weights)
    return summary, result.skipped_queries, seconds, source.describe()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", default=str(DEFAULT_PHOTOS))
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--label", default="articleType")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--out", default=str(ROOT / "results"))
    args = parser.parse_args()
    if not (Path(args.photos) / "labels.csv").is_file():
        print(f"error: no labels.csv in {args.photos}; pass --photos", file=sys.stderr)
        return 2
    photos = with_labels(drop_unusable(list_catalogue("photo_folder", args.photos)), args.label)
    rows, notes = [], {}
    for weights in ("imagenet", "none"):
        summary, skipped, seconds, used = run(args.backbone, weights, photos, args.batch)
        rows.append(summary)
        notes[weights] = {"weights_used": used, "extraction_seconds": round(seconds, 1),
                          "images_per_s": round(len(photos) / seconds, 1)}
    table = pd.concat(rows, ignore_index=True)
    columns = ["weights", "k", "map_report", "map_standard", "precision", "recall", "queries"]
    write_json(Path(args.out) / "dev_photos_retrieval.json", {
        "backbone": args.backbone, "label": args.label, "photos": len(photos), "skipped_queries": skipped,
        "runs": notes, "results": table[columns].to_dict(orient="records")})
    lines = [f"# {args.backbone}, frozen features on {Path(args.photos).name}", "",
             f"{len(photos)} photos, every one a query against all others (itself excluded); relevant = same "
             f"{args.label}; {skipped} queries skipped (their {args.label} has a single photo). Global average "
             "pool features, L2-normalised, Euclidean ranking.", ""]
    lines += [f"- {w}: {n['weights_used']}; extraction {n['images_per_s']} img/s" for w, n in notes.items()]
    lines += ["", "| weights | k | mAP@k (report) | mAP@k (standard) | precision@k | recall@k |", "|---|---|---|---|---|---|"]
    lines += [f"| {r.weights} | {r.k} | {r.map_report:.3f} | {r.map_standard:.3f} | {r.precision:.3f} | {r.recall:.3f} |"
              for r in table.itertuples()]
    write_text_atomic(Path(args.out) / "dev_photos_retrieval.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
