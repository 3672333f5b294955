"""How a shopper photo's garment is best cut out: the localiser's box and mask against the true ones,
and when a product on a plain page should be cut out by the page.

On the garment localiser's choosing third (the dev validation half's last third, pasted on the
validation backgrounds; never the test half), each product is made into shopper-like photos as
``benchmarks/shopper_photos.py --queries choosing`` makes them, and its main garment is cut out
several ways before the same search with the shipped model:

- the localiser's box with every product pixel as the mask (what the engine does), or with only
  its own group's pixels (about what it did before: its group's region), or no mask;
- the true box with either mask, or none; the localiser's box with the true mask; the true mask;
- on catalogue photos (every one of the choosing third) and products scaled and turned on white:
  cut out by the page below each span (the share of the photo's width and height the product
  spans), else searched whole.
- which photos count as catalogue pages: the engine as it is, with the share of the photo's edge
  a light page must hold set to each of :data:`EDGE_SHARES` (0: any light region touching the
  edge, as before that rule; a page holding two opposite sides counts at every share), on the
  catalogue photos and on the made photos of each condition.

    make backgrounds   # once: the background photos' Debian packages
    python benchmarks/garment_cutting.py --photos ../shared/data/fashion-products-dev

Writes benchmarks/results/garment_cutting.{json,md}.
"""
from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from fashion_search.data import list_catalogue
from fashion_search.data.backgrounds import load_backgrounds
from fashion_search.data.cutouts import box_of, read_cutouts
from fashion_search.images import read_photo
from fashion_search.io import write_results
from fashion_search.models import localiser
from fashion_search.models.localiser import Garment
from fashion_search.models.localiser_training import dev_thirds
from fashion_search.params import IndexParams
from fashion_search.pipeline.shopper_queries import K, made_queries, scores
from fashion_search.pipeline.tables import markdown_table
from fashion_search.search.embedding import garments as cutting
from fashion_search.search.engine import SearchEngine, build_index

ROOT = Path(__file__).resolve().parent
LOCALISED = ("on a real-photo background", "all together")
ON_WHITE = "scaled and rotated, on white"
SPANS = (0.4, 0.5, 0.6, 0.7, 0.8)
EDGE_SHARES = (0.0, 0.7, 0.8, 0.9)


def localised_ways(finder: cutting.GarmentFinder, pixels: np.ndarray, true_mask: np.ndarray) -> dict[str, Garment]:
    """The main garment cut out each way: the engine's (the localiser's box and mask), or the
    localiser's or the true box with each mask."""
    height, width = pixels.shape[:2]
    main, true_box, no_mask = finder.find(pixels)[0], box_of(true_mask), np.ones((1, 1), bool)
    planes = localiser.class_planes(finder.probabilities(pixels), height, width)
    region = ((planes.argmax(axis=-1) == localiser.GROUPS.index(main.group) + 1) & (planes[..., 0] < 0.5)
              if main.group in localiser.GROUPS else no_mask)
    return {"localiser box, every product pixel (the engine)": main,
            "localiser box, its group's pixels": Garment(main.box, main.group, 1.0, region),
            "localiser box, no mask": Garment(main.box, main.group, 1.0, no_mask),
            "true box, every product pixel": Garment(true_box, main.group, 1.0, main.mask),
            "true box, its group's pixels": Garment(true_box, main.group, 1.0, region),
            "true box, no mask": Garment(true_box, main.group, 1.0, no_mask),
            "localiser box, true mask": Garment(main.box, main.group, 1.0, true_mask),
            "true mask": Garment(true_box, main.group, 1.0, true_mask)}


def page_ways(pixels: np.ndarray) -> dict[str, Garment]:
    """A page photo searched whole, or cut out by its page when the product spans less than each span."""
    page = cutting.catalogue_page(pixels)
    whole = cutting.whole_photo(pixels)
    ways = {"searched whole": whole}
    for span in SPANS:
        small = cutting.small_on_page(page, *pixels.shape[:2], span) if page is not None else None
        ways[f"cut out by the page under {span}"] = small or whole
    return ways


def edge_finders(finder: cutting.GarmentFinder) -> dict[str, cutting.GarmentFinder]:
    """The engine's finder with each share of the edge a catalogue page must hold (one model, shared)."""
    finders = {}
    for share in EDGE_SHARES:
        finders[f"a page holds {share:.0%} of the edge"] = edged = copy.copy(finder)
        edged.page_edge = share
    return finders


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=ROOT.parent.parent / "shared/data/fashion-products-dev")
    parser.add_argument("--products", type=int, default=200)
    parser.add_argument("--seed", type=int, default=42, help="draws the made photos (not the split)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "garment_cutting")
    args = parser.parse_args(argv)
    catalog = list_catalogue("photo_folder", args.photos)
    items = catalog.items.assign(id=catalog.items["id"].astype(str)).set_index("id", drop=False)
    backgrounds = load_backgrounds("validation")
    chosen = items.loc[dev_thirds(args.photos)[1]["id"].astype(str)]
    sample = chosen.sample(args.products, random_state=args.seed)
    cutouts = read_cutouts(sample["id"].tolist(), sample["path"].tolist(), sample["subCategory"].tolist(),
                           "cutting out products")
    queries = made_queries(cutouts, backgrounds, args.seed)
    finder, rows = cutting.GarmentFinder(), []
    with tempfile.TemporaryDirectory() as folder:
        build_index(catalog, Path(folder) / "index", IndexParams())
        engine = SearchEngine.open(Path(folder) / "index", IndexParams())

        def score(condition: str, way: str, pixels: np.ndarray, garment: Garment, product: str) -> None:
            query = engine.framed_query(engine.frame(cutting.garment_pixels(pixels, garment)), way)
            rows.append({"query photo": condition, "cut out": way,
                         **scores(engine.search(query, K + 1), product, items)})

        finder.ready()
        edges = edge_finders(finder)
        for product in chosen["id"]:   # every catalogue photo of the choosing third
            pixels = read_photo(items.loc[product, "path"])
            ways = {**page_ways(pixels), **{way: found.find(pixels)[0] for way, found in edges.items()}}
            for way, garment in ways.items():
                score("catalogue photo", way, pixels, garment, product)
        for made in queries:
            pixels, product = made.photo.pixels, made.products[0]
            ways = {way: found.find(pixels)[0] for way, found in edges.items()}
            if made.condition == ON_WHITE:
                ways.update(page_ways(pixels))
            elif made.condition in LOCALISED:
                ways.update(localised_ways(finder, pixels, made.photo.masks[0]))
            for way, garment in ways.items():
                score(made.condition, way, pixels, garment, product)
    table = (pd.DataFrame(rows).groupby(["query photo", "cut out"], sort=False)
             .agg(queries=("type_ap", "size"), type_map10=("type_ap", "mean"),
                  type_colour_map10=("type_colour_ap", "mean"), product_top10=("product_top10", "mean"),
                  product_first=("product_first", "mean")).round(3).reset_index())
    markdown = (f"# Cutting out a shopper photo's garment\n\n`python benchmarks/garment_cutting.py --products "
                f"{args.products}`: products of the localiser's choosing third made into shopper-like photos on "
                f"the validation backgrounds (never the test half), each garment cut out each way and searched "
                f"against all {len(items):,} dev photos with the shipped model; mAP@{K} leaves the product "
                f"itself out.\n\n{markdown_table(table)}\n")
    write_results(args.out, table.to_dict(orient="records"), markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
