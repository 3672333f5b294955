"""Shopper-like query photos of catalogue products, searched with and without the garment localiser.

Each product of a query set is cut from its catalogue photo and made into a shopper's photo
under each condition of :data:`~fashion_search.data.shopper_photos.CONDITIONS` (seeded, on
backgrounds the localiser never saw), then searched against the clean catalogue three ways:
the whole photo, the localiser's main garment, and the product's true mask (a perfect
localiser, the ceiling). Two-garment photos check that each garment is found and that picking
one finds its product. ``benchmarks/shopper_photos.py`` and the reports show the same tables.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fashion_search.data.backgrounds import background_crop
from fashion_search.data.cutouts import Cutout, box_of, read_cutouts
from fashion_search.data.shopper_photos import CONDITIONS, Conditions, ShopperPhoto, compose
from fashion_search.images import read_photo
from fashion_search.metrics import average_precision_report_per_query
from fashion_search.models.localiser import Garment
from fashion_search.progress import progress
from fashion_search.search.embedding.garments import garment_pixels

K = 10
PHOTO_SIDE = 400  # made query photos are this large, like a phone photo shrunk for upload
METHODS = ("whole photo", "localiser", "true mask")
CATALOGUE = "catalogue photo"


@dataclass
class MadeQuery:
    """A made query photo, the products in it (in pasting order) and the condition it was made under."""

    condition: str
    photo: ShopperPhoto
    products: list[str]


def made_queries(cutouts: dict[str, Cutout], backgrounds: list[np.ndarray], seed: int) -> list[MadeQuery]:
    """Each product under each condition, on a background crop drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    queries = []
    for product, cutout in cutouts.items():
        for condition, conditions in CONDITIONS.items():
            background = background_crop(rng, backgrounds[rng.integers(len(backgrounds))], PHOTO_SIDE)
            queries.append(MadeQuery(condition, compose(rng, [cutout], background, PHOTO_SIDE, conditions), [product]))
    return queries


def two_garment_queries(cutouts: dict[str, Cutout], backgrounds: list[np.ndarray], seed: int,
                        count: int) -> list[MadeQuery]:
    """``count`` photos of two products of different groups side by side, under every condition at once."""
    rng = np.random.default_rng(seed + 1)
    ids = list(cutouts)
    queries = []
    while len(queries) < count:
        first, second = (ids[i] for i in rng.choice(len(ids), 2, replace=False))
        if cutouts[first].group == cutouts[second].group:
            continue
        background = background_crop(rng, backgrounds[rng.integers(len(backgrounds))], PHOTO_SIDE)
        photo = compose(rng, [cutouts[first], cutouts[second]], background, PHOTO_SIDE, Conditions())
        if all(mask.mean() > 0.02 for mask in photo.masks):  # both still visible
            queries.append(MadeQuery("two garments", photo, [first, second]))
    return queries


def box_iou(a: tuple, b: tuple) -> float:
    """Intersection over union of two boxes ``(x0, y0, x1, y1)``."""
    width = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def scores(results: pd.DataFrame, product: str, items: pd.DataFrame) -> dict:
    """Type and type+colour AP@10 (the product itself left out), and where the product ranks."""
    ranked = results["id"].astype(str).tolist()
    rank = ranked.index(product) + 1 if product in ranked else None
    others = [i for i in ranked if i != product][:K]
    mine = items.loc[product]

    def ap(hits: np.ndarray) -> float:  # the report's definition, as every mAP here
        return float(average_precision_report_per_query(hits[None], len(hits))[0]) if len(hits) else 0.0

    same_type = items.loc[others, "articleType"].to_numpy() == mine["articleType"]
    same_colour = items.loc[others, "baseColour"].to_numpy() == mine["baseColour"]
    return {"type_ap": ap(same_type), "type_colour_ap": ap(same_type & same_colour),
            "product_top10": rank is not None and rank <= K, "product_first": rank == 1}


def search(engine, pixels: np.ndarray, method: str, true_mask: np.ndarray | None = None):
    """One query photo searched one way: the results (``K + 1``), the query and the seconds it took."""
    started = time.perf_counter()
    if method == "true mask":
        garment = Garment(box_of(true_mask), "true mask", 1.0, true_mask)
        query = engine.framed_query(engine.frame(garment_pixels(pixels, garment)), "true mask")
    else:
        query = engine.pixels_query(pixels, method, localise=method == "localiser")
    results = engine.search(query, K + 1)
    return results, query, time.perf_counter() - started


def score_single(engines: dict, queries: list[MadeQuery], catalogue: dict[str, np.ndarray],
                 items: pd.DataFrame) -> pd.DataFrame:
    """Every made query (and each product's catalogue photo) searched by every engine and method: one row each."""
    rows = []
    for model, (engine, methods) in engines.items():
        for product, pixels in progress(list(catalogue.items()), f"{model}: catalogue photos", "photo"):
            for method in methods:
                if method != "true mask":
                    results, _, seconds = search(engine, pixels, method)
                    rows.append({"model": model, "method": method, "condition": CATALOGUE, "seconds": seconds,
                                 **scores(results, product, items)})
        for made in progress(queries, f"{model}: shopper photos", "photo"):
            for method in methods:
                results, _, seconds = search(engine, made.photo.pixels, method, made.photo.masks[0])
                rows.append({"model": model, "method": method, "condition": made.condition, "seconds": seconds,
                             **scores(results, made.products[0], items)})
    return pd.DataFrame(rows)


def score_pairs(engine, queries: list[MadeQuery], items: pd.DataFrame) -> pd.DataFrame:
    """Per garment of each two-garment photo: whether the localiser found it (box IoU ≥ 0.5), and
    whether searching the garment found for it puts its product in the top 10."""
    rows = []
    for made in progress(queries, "two-garment photos", "photo"):
        garments = engine.garment_finder.find(made.photo.pixels)
        for product, box in zip(made.products, made.photo.boxes):
            overlaps = [box_iou(box, g.box) for g in garments]
            best = int(np.argmax(overlaps)) if overlaps else None
            found = best is not None and overlaps[best] >= 0.5
            in_top = False
            if found:  # the person clicks the garment found for it
                query = engine.pixels_query(made.photo.pixels, "picked", garment=best + 1)
                in_top = scores(engine.search(query, K + 1), product, items)["product_top10"]
            rows.append({"found": found, "picked_product_top10": in_top,
                         "iou": max(overlaps) if overlaps else 0.0, "garments_found": len(garments)})
    return pd.DataFrame(rows)


def summary(single: pd.DataFrame) -> pd.DataFrame:
    """Mean of each measure and the p50 query time, per model, method and condition."""
    table = single.groupby(["model", "method", "condition"], sort=False).agg(
        queries=("type_ap", "size"), type_map10=("type_ap", "mean"), type_colour_map10=("type_colour_ap", "mean"),
        product_top10=("product_top10", "mean"), product_first=("product_first", "mean"),
        p50_ms=("seconds", lambda s: 1000 * float(np.median(s))))
    return table.reset_index()


def shopper_evaluation(engines: dict, items: pd.DataFrame, query_items: pd.DataFrame, backgrounds: list[np.ndarray],
                       seed: int, pairs: int) -> tuple[pd.DataFrame, pd.DataFrame, list[MadeQuery]]:
    """The whole measure: ``query_items`` (rows of ``items``, indexed by id) made into shopper-like
    photos on ``backgrounds``, searched by each of ``engines`` (name → (engine, methods)); the last
    engine also picks garments in two-garment photos. The summary table, the two-garment rows and
    the made queries (for a figure)."""
    cutouts = read_cutouts(query_items["id"].tolist(), query_items["path"].tolist(),
                           query_items["subCategory"].tolist(), "cutting out products")
    queries = made_queries(cutouts, backgrounds, seed)
    catalogue = {product: read_photo(items.loc[product, "path"]) for product in cutouts}
    single = score_single(engines, queries, catalogue, items)
    last_engine = list(engines.values())[-1][0]
    pair_rows = score_pairs(last_engine, two_garment_queries(cutouts, backgrounds, seed, pairs), items)
    return summary(single), pair_rows, queries
