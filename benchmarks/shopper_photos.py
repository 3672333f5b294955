"""Search from shopper-like photos: the whole photo against the garment localiser, and the ceiling.

The dev photos are split into halves as every benchmark here splits them (``evaluation_split``,
seed 42); the localiser was trained and chosen without the test half, and the backgrounds here
(the benchmark half of the Plasma wallpapers) were never seen by it. ``--products`` test-half
products are each made into a shopper-like photo under each condition (seeded) and searched
against an index of all 2,946 dev photos: with frozen ImageNet Lite0 on the whole photo, and
with the shipped model on the whole photo, through the localiser and through the product's
true mask (a perfect localiser); with ``--previous`` (a model folder), the shipped model before
the tuned recipe the same three ways. Two-garment photos check that each garment is found.

    python benchmarks/shopper_photos.py --photos ../shared/data/fashion-products-dev

Writes benchmarks/results/shopper_photos.{json,md} and shopper_photos.png (example queries).
Training on a CPU is not bit-reproducible across processors; the localiser that ships is the
one measured here.
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

import pandas as pd

from fashion_search.data import evaluation_split, list_catalogue
from fashion_search.data.backgrounds import load_backgrounds
from fashion_search.io import write_results
from fashion_search.models.localiser_training import SPLIT_SEED, dev_thirds
from fashion_search.params import IndexParams
from fashion_search.pipeline import shopper_queries as sq
from fashion_search.pipeline.shopper_figure import example_figure
from fashion_search.search.engine import SearchEngine, build_index

ROOT = Path(__file__).resolve().parent


def markdown(table: pd.DataFrame, pairs: pd.DataFrame, args: argparse.Namespace, machine: str) -> str:
    options = f"--products {args.products} --pairs {args.pairs}" + (
        f" --queries {args.queries}" if args.queries != "test" else "")
    if (args.previous / "manifest.json").is_file():
        options += f" --previous {os.path.relpath(args.previous, ROOT.parent)} --previous-label '{args.previous_label}'"
    lines = ["# Search from shopper-like photos", "",
             f"`python benchmarks/shopper_photos.py {options}` on {machine}: "
             f"{int(table['queries'].max())} usable products of "
             + ("the dev test half, each made into a shopper-like photo per condition (benchmark backgrounds, never "
                "seen in training)" if args.queries == "test" else "the localiser's choosing third (validation "
                "backgrounds)") + ", searched against all 2,946 dev photos. "
             "AP@10 leaves the product itself out; p50 is one query end to end, in this run.", "",
             "| model | method | query photo | type mAP@10 | type+colour mAP@10 | product in top 10 | "
             "product first | p50 ms |", "|---|---|---|---|---|---|---|---|"]
    for row in table.itertuples():
        lines.append(f"| {row.model} | {row.method} | {row.condition} | {row.type_map10:.3f} | "
                     f"{row.type_colour_map10:.3f} | {row.product_top10:.3f} | {row.product_first:.3f} | "
                     f"{row.p50_ms:.0f} |")
    lines += ["", f"Two-garment photos ({len(pairs) // 2} photos, every condition at once): each garment found "
              f"(box IoU ≥ 0.5) {pairs['found'].mean():.3f}; the picked garment's product in the top 10 "
              f"{pairs['picked_product_top10'].mean():.3f}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default="../shared/data/fashion-products-dev")
    parser.add_argument("--products", type=int, default=150)
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=42, help="draws the products and their photos (not the split)")
    parser.add_argument("--queries", choices=["test", "choosing"], default="test",
                        help="test: the dev test half on the benchmark backgrounds (the report); choosing: the "
                             "third of the validation half the localiser was chosen on, on the validation "
                             "backgrounds (for choosing settings, never the test half)")
    parser.add_argument("--previous", type=Path, default=ROOT.parent / "outputs/fashion_lite0-fused",
                        help="a model folder of the shipped model before the tuned recipe (left out if missing)")
    parser.add_argument("--previous-label", default="fashion_lite0 before",
                        help="what the tables call the --previous model")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args(argv)
    catalog = list_catalogue("photo_folder", args.photos)
    items = catalog.items.assign(id=catalog.items["id"].astype(str)).set_index("id", drop=False)
    if args.queries == "test":
        halves = evaluation_split(items["articleType"].to_numpy(), 0.5, SPLIT_SEED)   # never moved by --seed
        chosen = items[halves == "test"]
    else:
        chosen = items.loc[dev_thirds(Path(args.photos))[1]["id"].astype(str)]
    backgrounds = load_backgrounds("benchmark" if args.queries == "test" else "validation")
    with tempfile.TemporaryDirectory() as folder:
        engines = {}
        previous = ([(args.previous_label, IndexParams(model=str(args.previous)), sq.METHODS)]
                    if (args.previous / "manifest.json").is_file() else [])
        for name, settings, methods in [("frozen Lite0", IndexParams(model="efficientnet_lite0", image_size=224),
                                         ("whole photo",)), *previous,
                                        ("fashion_lite0", IndexParams(), sq.METHODS)]:
            build_index(catalog, Path(folder) / name.replace(" ", "_"), settings)
            engines[name] = (SearchEngine.open(Path(folder) / name.replace(" ", "_"), settings), methods)
        table, pair_rows, queries = sq.shopper_evaluation(
            engines, items, chosen.sample(args.products, random_state=args.seed), backgrounds, args.seed, args.pairs)
        stem = "shopper_photos" if args.queries == "test" else "shopper_photos_choosing"
        example_figure(engines["fashion_lite0"][0], queries, args.out / f"{stem}.png")
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    write_results(args.out / stem, {
        "machine": machine, "products": int(table["queries"].max()), "queries": args.queries, "seed": args.seed,
        "table": table.round(4).to_dict(orient="records"),
        "two_garments": {"photos": len(pair_rows) // 2, "found": round(float(pair_rows["found"].mean()), 4),
                         "picked_product_top10": round(float(pair_rows["picked_product_top10"].mean()), 4)}},
        markdown(table, pair_rows, args, machine))
    print(markdown(table, pair_rows, args, machine))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
