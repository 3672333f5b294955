"""The Farfetch listings layout the report used, as a catalogue.

``current_farfetch_listings.csv`` beside ``cutout-img/`` and ``model-img/`` (photos named
``<id>_<imageid>_300.jpg``): one item per photo, a ``product_id`` shared by a product's
photos, a ``category`` derived from its short description; ``brand``, ``gender`` and ``price``
from the listing.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from fashion_search.data.catalog import SKIPPED_COLUMNS, Catalog, DatasetNotFoundError

FARFETCH_LISTINGS = "current_farfetch_listings.csv"
FARFETCH_VIEWS = {"cutout": ("images.cutOut", "cutout-img"), "model": ("images.model", "model-img")}


# Keywords of each category, searched in order (a "shirt dress" is a dress, a "bag charm" a bag).
CATEGORY_KEYWORDS = {
    "jewellery": {"ring", "necklace", "earring", "bracelet", "pendant", "brooch", "cufflink", "anklet", "choker",
                  "bangle", "jewellery", "jewelry"},
    "bags": {"bag", "tote", "clutch", "backpack", "satchel", "purse", "crossbody", "shopper", "duffle", "pouch",
             "holdall", "handbag"},
    "shoes": {"shoe", "sneaker", "trainer", "boot", "sandal", "loafer", "pump", "heel", "mule", "espadrille",
              "slipper", "flat", "derby", "oxford", "brogue", "slide", "ballerina", "stiletto", "moccasin"},
    "dresses": {"dress", "gown", "jumpsuit", "playsuit"},
    "outerwear": {"coat", "jacket", "blazer", "parka", "trench", "puffer", "gilet", "anorak", "cape", "bomber",
                  "windbreaker", "overcoat", "poncho", "raincoat"},
    "bottoms": {"trouser", "jean", "pant", "short", "skirt", "legging", "jogger", "chino", "culotte", "trackpant"},
    "tops": {"shirt", "tee", "blouse", "top", "sweater", "jumper", "cardigan", "hoodie", "sweatshirt", "polo",
             "tank", "camisole", "bodysuit", "knit", "pullover", "turtleneck", "vest", "tunic", "bra"},
    "accessories": {"hat", "cap", "beanie", "scarf", "belt", "sunglasses", "glove", "wallet", "tie", "watch",
                    "sock", "keyring", "cardholder", "umbrella", "mask", "headband", "bandana", "glasses"},
}
def _singular(word: str) -> set[str]:
    forms = {word}
    if word.endswith("es"):
        forms.add(word[:-2])
    if word.endswith("s"):
        forms.add(word[:-1])
    return forms


def category_from_description(description: str) -> str:
    """The category of :data:`CATEGORY_KEYWORDS` a product's short description names ("other" if none)."""
    words = set()
    for word in re.findall(r"[a-z]+", str(description).lower()):
        words |= _singular(word)
    for category, keywords in CATEGORY_KEYWORDS.items():
        if words & keywords:
            return category
    return "other"


def _photos_by_product(folder: Path) -> dict[str, list[Path]]:
    by_product: dict[str, list[Path]] = {}
    if folder.is_dir():
        for photo in sorted(folder.glob("*_*_300.*")):
            by_product.setdefault(photo.name.split("_", 1)[0], []).append(photo)
    return by_product


def _farfetch_photo(listing: pd.Series, column: str, folder: Path, by_product: dict[str, list[Path]]) -> Path | None:
    """The photo a listing names in ``column`` (a URL or file name ending in the file name),
    else the first ``<id>_*_300`` photo of the product in ``folder``."""
    named = str(listing.get(column, "") or "")
    if named and named.lower() != "nan":
        candidate = folder / named.rsplit("/", 1)[-1]
        if candidate.is_file():
            return candidate
    photos = by_product.get(str(listing["id"]))
    return photos[0] if photos else None


def list_farfetch(folder: str | Path) -> Catalog:
    """The Farfetch listings layout as catalogue items: one item per photo (cut-out and model
    views), ``product_id`` shared by a product's photos, ``category`` derived from
    ``shortDescription``; ``brand``, ``gender`` and ``price`` from the listing."""
    folder = Path(folder).expanduser().resolve()
    listings_path = folder / FARFETCH_LISTINGS
    if not listings_path.is_file():
        raise DatasetNotFoundError(f"{folder} holds no {FARFETCH_LISTINGS}; a Farfetch catalogue needs it, "
                                   "with cutout-img/ and model-img/ beside it")
    listings = pd.read_csv(listings_path, dtype={"id": str})
    missing = [c for c in ("id", "shortDescription") if c not in listings.columns]
    if missing:
        raise ValueError(f"{listings_path} has no column '{missing[0]}'")
    rows, skipped = [], []
    for view, (column, subfolder) in FARFETCH_VIEWS.items():
        by_product = _photos_by_product(folder / subfolder)
        for _, listing in listings.iterrows():
            photo = _farfetch_photo(listing, column, folder / subfolder, by_product)
            if photo is None:
                skipped.append((f"{listing['id']}_{view}", str(folder / subfolder), f"no {view} photo"))
                continue
            rows.append({
                "id": photo.stem, "path": str(photo), "product_id": listing["id"], "view": view,
                "category": category_from_description(listing["shortDescription"]),
                "description": str(listing["shortDescription"]),
                "brand": str(listing.get("brand.name", "unknown")), "gender": str(listing.get("gender", "unknown")),
                "price": pd.to_numeric(listing.get("priceInfo.finalPrice"), errors="coerce"),
            })
    items = pd.DataFrame(rows, columns=["id", "path", "product_id", "view", "category", "description", "brand",
                                        "gender", "price"])
    items = items.drop_duplicates("id").sort_values(["product_id", "view"], kind="stable").reset_index(drop=True)
    items["split"] = "test"
    return Catalog(items, items["path"].to_numpy(dtype=str), "category",
                   pd.DataFrame(skipped, columns=SKIPPED_COLUMNS))
