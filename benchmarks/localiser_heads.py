"""Garment localisers compared through the engine, on the localiser's choosing third (never the test half).

Each product of the dev validation half's last third is made into a shopper-like photo on a real
background and one with every condition at once (on the validation backgrounds, as
``shopper_photos.py --queries choosing`` makes them), and 200 two-garment photos. Each localiser
(a head file, its heads averaged; or several files, each file's answer weighing the same:
``name=a.npz+b.npz``) finds the garment, which is
searched with the shipped model against all 2,946 dev photos. The true mask is the ceiling.

    python benchmarks/localiser_heads.py shipped=fashion_search/models/shipped/garment_localiser.npz

The results file compares the one head shipped before, read from git (a file of one head still loads):

    git show d79791f:fashion_search/models/shipped/garment_localiser.npz > /tmp/exp/localiser_before.npz

Writes benchmarks/results/localiser_heads.{json,md} (``--out`` to change).
"""
from __future__ import annotations

import argparse
import shlex
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from fashion_search.data import list_catalogue
from fashion_search.data.backgrounds import load_backgrounds
from fashion_search.data.cutouts import read_cutouts
from fashion_search.io import file_sha256, write_results
from fashion_search.models.localiser_training import dev_thirds
from fashion_search.params import IndexParams
from fashion_search.pipeline import shopper_queries as sq
from fashion_search.pipeline.tables import markdown_table
from fashion_search.progress import progress
from fashion_search.search.embedding.garments import GarmentFinder
from fashion_search.search.engine import SearchEngine, build_index

ROOT = Path(__file__).resolve().parent
CONDITIONS = ("on a real-photo background", "all together")


class Averaged(GarmentFinder):
    """The engine's finder (its page rules) with the answers of several head files averaged, file by file."""

    def __init__(self, heads: list[Path]):
        super().__init__()
        self.parts = [GarmentFinder(head=head, head_sha256=file_sha256(head)) for head in heads]

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        return np.mean([part.probabilities(pixels) for part in self.parts], axis=0)


def pair_rows(engine: SearchEngine, name: str, pairs: list[sq.MadeQuery], items: pd.DataFrame) -> list[dict]:
    """Per garment of each two-garment photo: found (box IoU ≥ 0.5), and its product in the top 10 when picked."""
    return [{"localiser": name, **row} for row in sq.score_pairs(engine, pairs, items).to_dict(orient="records")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("localisers", nargs="+", help="name=head.npz, or name=a.npz+b.npz (averaged)")
    parser.add_argument("--photos", type=Path, default=ROOT.parent.parent / "shared/data/fashion-products-dev")
    parser.add_argument("--pairs", type=int, default=200, help="two-garment photos (at least 1)")
    parser.add_argument("--seed", type=int, default=42, help="draws the made photos (not the split)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "localiser_heads")
    args = parser.parse_args(argv)
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    for spec in args.localisers:
        name, _, heads = spec.partition("=")
        missing = [h for h in heads.split("+") if not Path(h).is_file()]
        if not name or not heads or missing:
            parser.error(f"{spec!r}: give name=heads.npz or name=a.npz+b.npz, of files that exist"
                         + (f" ({', '.join(missing)} is not one)" if heads and missing else ""))
    catalog = list_catalogue("photo_folder", args.photos)
    items = catalog.items.assign(id=catalog.items["id"].astype(str)).set_index("id", drop=False)
    chosen = items.loc[dev_thirds(args.photos)[1]["id"].astype(str)]
    cutouts = read_cutouts(chosen["id"].tolist(), chosen["path"].tolist(), chosen["subCategory"].tolist(), "cutting")
    backgrounds = load_backgrounds("validation")
    queries = [q for q in sq.made_queries(cutouts, backgrounds, args.seed) if q.condition in CONDITIONS]
    pairs = sq.two_garment_queries(cutouts, backgrounds, args.seed, args.pairs)
    rows, pair_table = [], []
    with tempfile.TemporaryDirectory() as folder:
        build_index(catalog, Path(folder) / "index", IndexParams())
        engine = SearchEngine.open(Path(folder) / "index", IndexParams())
        for made in progress(queries, "true mask", "photo"):
            results, _, _ = sq.search(engine, made.photo.pixels, "true mask", made.photo.masks[0])
            rows.append({"localiser": "true mask", "condition": made.condition,
                         **sq.scores(results, made.products[0], items)})
        for spec in args.localisers:
            name, heads = spec.split("=", 1)
            engine.garment_finder = Averaged([Path(h) for h in heads.split("+")])
            for made in progress(queries, name, "photo"):
                results, _, _ = sq.search(engine, made.photo.pixels, "localiser")
                rows.append({"localiser": name, "condition": made.condition,
                             **sq.scores(results, made.products[0], items)})
            pair_table += pair_rows(engine, name, pairs, items)
    table = (pd.DataFrame(rows).groupby(["condition", "localiser"], sort=False)
             .agg(queries=("type_ap", "size"), type_map10=("type_ap", "mean"),
                  type_colour_map10=("type_colour_ap", "mean"), product_top10=("product_top10", "mean"),
                  product_first=("product_first", "mean")).round(3).reset_index())
    two = (pd.DataFrame(pair_table).groupby("localiser", sort=False)
           .agg(garments=("found", "size"), found=("found", "mean"), picked_product_top10=("picked_product_top10",
                                                                                           "mean"))
           .round(3).reset_index())
    markdown = (f"# Garment localisers on the choosing third\n\n`python benchmarks/localiser_heads.py "
                f"{shlex.join(args.localisers)}`: {len(cutouts)} "
                f"products of the localiser's choosing third (never the test half) on the validation backgrounds, "
                f"searched against all {len(items):,} dev photos with the shipped model.\n\n"
                f"{markdown_table(table)}\n\nTwo-garment photos:\n\n{markdown_table(two)}\n")
    write_results(args.out, {"single": table.to_dict(orient="records"), "pairs": two.to_dict(orient="records")},
                  markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
