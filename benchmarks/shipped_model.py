"""The shipped model (``fashion_lite0``) against frozen ImageNet Lite0 and the ``fused`` model trained
on the dev photos, on the dev photos' test half, and what the 60x80 training resolution costs.

    make run PARAMS=configs/fashion-products-dev.yaml      # the fused model trained on dev photos
    python benchmarks/shipped_model.py

The dev photos are split once into a validation and a test half (``evaluation_split``, seed 42:
the split ``configs/fashion-products-small.yaml`` trains the shipped model against). Every
model embeds every dev photo as ``fashion-search index`` does; each test-half photo searches the
whole dev catalogue (2,946 photos, itself excluded). Gains are paired per query, with 95%
bootstrap intervals. The fused dev model was trained on its own config's train split, which
holds test-half photos: its line is scored on the queries it never trained on, the test-half
photos in its own test split, and the shipped model and frozen features on those same queries
(then the shipped model's gain over it, paired, on them).

The shipped model before the tuned recipe (``--previous``, a model folder of it) is scored beside
it, and each fused model also with its colour part off (the type embedding alone).

Resolution: the dev validation part (never the test half; the third of the validation half the
shipped model is chosen on), with every photo first reduced to 60x80, the size of most training
photos, then framed as usual.

Writes benchmarks/results/shipped_model.{json,md}.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from fashion_search import metrics
from fashion_search.data import evaluation_split, list_catalogue
from fashion_search.data.catalog import relevance_codes
from fashion_search.images import read_photo
from fashion_search.io import write_results
from fashion_search.models.callbacks import gallery_ap
from fashion_search.models.shipped import SHIPPED_NAME
from fashion_search.models.tuned_photos import dev_parts
from fashion_search.params import IndexParams
from fashion_search.pipeline.tables import markdown_table
from fashion_search.progress import progress_bar
from fashion_search.search.embedding.embedder import embed_photos, load_embedder

ROOT = Path(__file__).resolve().parent
PROJECT = ROOT.parent
K = 10
SMALL_SIZE = (60, 80)   # width, height of fashion-products-small
RELEVANCE = ("articleType", "articleType+baseColour")
DEFINITIONS = (("report", "the report's"), ("standard", "min(k, R)"))


def reduced(path: str) -> np.ndarray:
    """A photo shrunk to fit 60x80, as the training photos are."""
    photo = Image.fromarray(read_photo(path))
    photo.thumbnail(SMALL_SIZE, Image.Resampling.LANCZOS)
    return np.asarray(photo)


def embed(model: str, images: list, title: str) -> tuple[np.ndarray, int]:
    """Every image's vector from ``model`` (a name or folder), as ``fashion-search index`` embeds,
    and how many of its last dimensions are the colour part (0: none)."""
    embedder = load_embedder(IndexParams(model=model))
    with progress_bar(len(images), title, unit="photo") as bar:
        return embed_photos(embedder, images, 32, bar).vectors, int(embedder.identity.get("colour_dims") or 0)


def colour_off(vectors: np.ndarray, colour_dims: int) -> np.ndarray:
    """The vectors with their colour part set to zero: the type embedding alone."""
    vectors = vectors.copy()
    vectors[:, vectors.shape[1] - colour_dims:] = 0
    return vectors


def per_query(vectors: np.ndarray, items: pd.DataFrame, queries: np.ndarray) -> dict[str, np.ndarray]:
    """AP@10 per query under each relevance and definition (every query has another relevant photo
    under articleType; under articleType+baseColour the ones without are left out, as 04 does)."""
    scores = {}
    for relevance in RELEVANCE:
        codes = relevance_codes(items, relevance)
        scored = queries[(np.bincount(codes)[codes[queries]] - 1) > 0]
        report, standard = gallery_ap(vectors, codes, scored, K)
        scores[f"{relevance} report"] = pd.Series(report, index=scored)
        scores[f"{relevance} standard"] = pd.Series(standard, index=scored)
    return scores


def compare(scores: dict[str, dict], base: str, queries: np.ndarray, where: str) -> list[dict]:
    """Each model's mAP@10 on ``queries`` and its paired gain over ``base``."""
    rows = []
    for relevance in RELEVANCE:
        for definition, label in DEFINITIONS:
            key = f"{relevance} {definition}"
            shared = scores[base][key].index.intersection(queries)
            for model, values in scores.items():
                own = values[key].loc[shared].to_numpy()
                gain, low, high = metrics.paired_difference(own, scores[base][key].loc[shared].to_numpy())
                rows.append({"queries": where, "relevance": relevance, "definition": label, "model": model,
                             "n": len(shared), f"map@{K}": round(float(own.mean()), 4),
                             "gain": round(gain, 4), "low": round(low, 4),
                             "high": round(high, 4)})
    return rows


def fused_dev_test_ids(run: Path) -> set[str]:
    """The ids of the fused dev model's own test split (it trained on the rest)."""
    items = pd.read_csv(run / "data" / "items.csv", dtype={"id": str})
    return set(items["id"][items["split"] == "test"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dev", type=Path, default=PROJECT.parent / "shared/data/fashion-products-dev")
    parser.add_argument("--fused-run", type=Path, default=PROJECT / "outputs/fashion-products-dev",
                        help="the run of configs/fashion-products-dev.yaml")
    parser.add_argument("--previous", type=Path, default=PROJECT / "outputs/fashion_lite0-fused",
                        help="a model folder of the shipped model before the tuned recipe (left out if missing)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--test-share", type=float, default=0.5)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "shipped_model")
    args = parser.parse_args(argv)
    fused_folder = args.fused_run / "models/efficientnet_lite0/fused"
    if not (fused_folder / "manifest.json").is_file():
        print(f"no fused dev model in {fused_folder}; run `make run PARAMS=configs/fashion-products-dev.yaml`",
              file=sys.stderr)
        return 2

    items = list_catalogue("photo_folder", args.dev).items
    halves = evaluation_split(items["articleType"].to_numpy(), args.test_share, args.seed)
    test = np.flatnonzero(halves == "test")
    validation = np.flatnonzero(items["id"].isin(dev_parts(args.dev, args.seed)["validation"]["id"]).to_numpy())
    paths = items["path"].tolist()
    small = [reduced(p) for p in paths]
    models = {"frozen Lite0": "efficientnet_lite0", "shipped (fashion_lite0)": SHIPPED_NAME,
              "fused, trained on dev": str(fused_folder)}
    if (args.previous / "manifest.json").is_file():
        models["fashion_lite0 before (fused heads)"] = str(args.previous)
    every = np.arange(len(items))
    scores = {}
    for name, model in models.items():
        vectors, colour_dims = embed(model, paths, name)
        scores[name] = per_query(vectors, items, every)
        if colour_dims:
            scores[f"{name}, colour off"] = per_query(colour_off(vectors, colour_dims), items, every)
    at_small = {f"{name}, photos at 60x80": per_query(embed(models[name], small, f"{name} at 60x80")[0], items, every)
                for name in ("frozen Lite0", "shipped (fashion_lite0)")}

    fused_test = np.flatnonzero(items["id"].isin(fused_dev_test_ids(args.fused_run)).to_numpy())
    rows = compare({k: v for k, v in scores.items() if "trained on dev" not in k}, "frozen Lite0", test, "test half")
    rows += compare(scores, "frozen Lite0", np.intersect1d(test, fused_test),
                    "test half within the fused model's test split")
    rows += compare({k: scores[k] for k in ("fused, trained on dev", "shipped (fashion_lite0)")},
                    "fused, trained on dev", np.intersect1d(test, fused_test), "shipped against fused (same queries)")
    rows += compare({**{k: scores[k] for k in ("frozen Lite0", "shipped (fashion_lite0)")}, **at_small},
                    "frozen Lite0", validation, "validation part (resolution)")
    table = pd.DataFrame(rows)
    table["gain [95%]"] = [f"{g:+.4f} [{lo:+.4f}, {hi:+.4f}]" for g, lo, hi in zip(table["gain"], table["low"],
                                                                                      table["high"])]
    sections = []
    for where, part in table.groupby("queries", sort=False):
        shown = part[["relevance", "definition", "model", "n", f"map@{K}", "gain [95%]"]]
        sections.append(f"## {where}\n\n{markdown_table(shown)}")
    markdown = ("# The shipped model on the dev photos\n\n`python benchmarks/shipped_model.py`: each query searches "
                "all "
                f"{len(items):,} dev photos (itself excluded); mAP@{K}; gain over frozen Lite0 at 224 px on the same "
                "queries (in \"shipped against fused\": over the fused dev model) with its 95% paired bootstrap "
                "interval.\n\n" + "\n\n".join(sections) + "\n")
    write_results(args.out, table.to_dict(orient="records"), markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
