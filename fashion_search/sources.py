"""Catalogue sources, each read into the one :class:`~fashion_search.catalog.Catalog` shape.

- a folder of photos, searched recursively, any common format, with an optional metadata CSV
  (``labels.csv`` or ``metadata.csv`` with an ``id`` column); without one, a photo's first
  sub-folder names its ``category``;
- the Farfetch listings layout the report used (``current_farfetch_listings.csv``,
  ``cutout-img/`` and ``model-img/``), with a category derived from each product's short
  description and a ``product_id`` shared by the photos of one product;
- Fashion-MNIST (:mod:`fashion_search.catalog`).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from fashion_search.catalog import (Catalog, DatasetNotFoundError, load_fashion_mnist, read_fashion_mnist,
                                    stratified_split, FASHION_MNIST_CLASSES)
from fashion_search.config import DataParams
from fashion_search.images import PHOTO_SUFFIXES, UnusableImageError, read_photo

METADATA_FILES = ("labels.csv", "metadata.csv")
FARFETCH_LISTINGS = "current_farfetch_listings.csv"
FARFETCH_VIEWS = {"cutout": ("images.cutOut", "cutout-img"), "model": ("images.model", "model-img")}
SKIPPED_COLUMNS = ["id", "path", "reason"]


# ----------------------------------------------------------------------------- photo folders
def find_photos(folder: str | Path) -> list[Path]:
    """Every photo under ``folder`` (any depth, any suffix of :data:`PHOTO_SUFFIXES`, hidden
    files and folders left out), in sorted order."""
    folder = Path(folder)
    found = [p for p in folder.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file()
             and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    return sorted(found)


def photo_ids(photos: list[Path], folder: Path) -> list[str]:
    """A product id per photo: its file name without suffix, or, where two photos share that
    name, its path below ``folder`` without suffix."""
    stems = [p.stem for p in photos]
    if len(set(stems)) == len(stems):
        return stems
    return [p.relative_to(folder).with_suffix("").as_posix() for p in photos]


def find_metadata(folder: Path) -> Path | None:
    """The metadata CSV at the top of ``folder``, if there is one."""
    return next((folder / name for name in METADATA_FILES if (folder / name).is_file()), None)


def read_metadata(path: str | Path) -> pd.DataFrame:
    """A metadata CSV with an ``id`` column; missing text values read as "unknown"."""
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"no metadata file {path}")
    table = pd.read_csv(path, dtype={"id": str})
    if "id" not in table.columns:
        raise ValueError(f"{path} has no 'id' column; its columns: {', '.join(table.columns)}")
    for column in table.columns.drop("id"):
        if not pd.api.types.is_numeric_dtype(table[column]):
            table[column] = table[column].fillna("unknown").astype(str)
    return table


def list_photo_folder(folder: str | Path, metadata: str | Path | None = None) -> Catalog:
    """The photos of a folder as catalogue items (``id``, ``path``, metadata columns), every
    item in the ``test`` split; no photo is opened.

    With a metadata CSV (``metadata``, else ``labels.csv`` / ``metadata.csv`` in the folder), its
    rows are the catalogue: a row whose photo is missing, and a photo without a row, are listed
    in ``Catalog.skipped``. Without one, every photo is an item and its first sub-folder (if
    any) is its ``category``.
    """
    folder = Path(folder).expanduser().resolve()  # an index is queried from anywhere
    if not folder.is_dir():
        raise DatasetNotFoundError(f"{folder} is not a folder")
    photos = find_photos(folder)
    ids = photo_ids(photos, folder)
    by_id = dict(zip(ids, map(str, photos)))
    metadata_path = Path(metadata) if metadata else find_metadata(folder)
    if metadata_path is None:
        if not photos:
            raise DatasetNotFoundError(f"{folder} holds no photos ({', '.join(PHOTO_SUFFIXES)})")
        categories = [p.relative_to(folder).parts[0] if len(p.relative_to(folder).parts) > 1 else "unknown"
                      for p in photos]
        items = pd.DataFrame({"id": ids, "category": categories})
        skipped = pd.DataFrame(columns=SKIPPED_COLUMNS)
    else:
        items = read_metadata(metadata_path)
        listed = set(items["id"])
        missing = ~items["id"].isin(by_id)
        unlisted = [i for i in ids if i not in listed]
        skipped = pd.DataFrame({
            "id": list(items["id"][missing]) + unlisted,
            "path": [str(folder / f"{i}.jpg") for i in items["id"][missing]] + [by_id[i] for i in unlisted],
            "reason": ["file missing"] * int(missing.sum()) + [f"no row in {metadata_path.name}"] * len(unlisted),
        })
        items = items[~missing].reset_index(drop=True)
    paths = np.array([by_id[i] for i in items["id"]], dtype=str)
    items.insert(1, "path", paths)
    items["split"] = "test"
    return Catalog(items, paths, "category", skipped)


PIPELINE_FORMATS = ("JPEG", "PNG", "GIF", "BMP")  # what tf.io.decode_image reads


def photo_problem(path: str | Path) -> str | None:
    """Why the notebooks' input pipeline cannot use the photo at ``path`` (missing, empty,
    unreadable, too large, a format ``tf.io.decode_image`` cannot decode), or None when it can."""
    try:
        read_photo(path)
    except UnusableImageError as err:
        return str(err)
    with Image.open(path) as image:
        kind = image.format
    if kind not in PIPELINE_FORMATS:
        return f"{kind} images are not supported (use {', '.join(PIPELINE_FORMATS)})"
    return None


def with_labels(catalog: Catalog, label_column: str) -> Catalog:
    """``catalog`` with an integer ``label`` per value of ``label_column`` (sorted names)."""
    items = catalog.items
    if label_column not in items.columns:
        raise ValueError(f"the catalogue has no column '{label_column}'; columns: {', '.join(items.columns)}")
    items[label_column] = items[label_column].fillna("unknown").astype(str)
    names = sorted(items[label_column].unique())
    items.insert(1, "label", items[label_column].map({n: i for i, n in enumerate(names)}).astype(int))
    return Catalog(items, catalog.images, label_column, catalog.skipped)


def drop_unusable(catalog: Catalog) -> Catalog:
    """Leave out photos the input pipeline cannot use, adding them to ``skipped`` with the reason."""
    problems = [photo_problem(p) for p in tqdm(catalog.images, desc="checking photos", unit="photo",
                                                 mininterval=2.0)]
    usable = np.array([problem is None for problem in problems], bool)
    bad = pd.DataFrame({"id": catalog.items["id"][~usable], "path": catalog.images[~usable],
                        "reason": [p for p in problems if p is not None]})
    skipped = pd.concat([catalog.skipped, bad], ignore_index=True) if len(catalog.skipped) else bad.reset_index(drop=True)
    return Catalog(catalog.items[usable].reset_index(drop=True), catalog.images[usable], catalog.label_column, skipped)


def load_photo_folder(folder: str | Path, label_column: str) -> Catalog:
    """A photo folder ready for the notebooks: unusable photos skipped, ``label`` from ``label_column``."""
    return with_labels(drop_unusable(list_photo_folder(folder)), label_column)


# ----------------------------------------------------------------------------- Farfetch listings
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
CATEGORIES = (*CATEGORY_KEYWORDS, "other")


def _singular(word: str) -> set[str]:
    forms = {word}
    if word.endswith("es"):
        forms.add(word[:-2])
    if word.endswith("s"):
        forms.add(word[:-1])
    return forms


def category_from_description(description: str) -> str:
    """The category of :data:`CATEGORIES` a product's short description names ("other" if none)."""
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


def load_farfetch_catalog(data: DataParams, seed: int) -> Catalog:
    """A Farfetch catalogue for the notebooks, split by product (its photos share a split)."""
    catalog = with_labels(drop_unusable(list_farfetch(data.path)), data.label_column)
    items = catalog.items
    items["split"] = stratified_split(items["label"].to_numpy(), data.split, seed, groups=items["product_id"].to_numpy())
    return catalog


# ----------------------------------------------------------------------------- Fashion-MNIST
def list_fashion_mnist(folder: str | Path | None = None, split: str = "test") -> Catalog:
    """Fashion-MNIST's ``train``, ``test`` or ``all`` images as catalogue items (``id`` like
    ``test-17``, ``category``), pixels in ``Catalog.images``."""
    arrays = read_fashion_mnist(folder)
    parts = ("train", "test") if split == "all" else (split,)
    frames, images = [], []
    for part in parts:
        x, y = arrays[part]
        frames.append(pd.DataFrame({"id": [f"{part}-{i}" for i in range(len(y))],
                                    "category": [FASHION_MNIST_CLASSES[v] for v in y]}))
        images.append(x)
    items = pd.concat(frames, ignore_index=True)
    items["split"] = "test"
    return Catalog(items, np.concatenate(images), "category")


# ----------------------------------------------------------------------------- for the notebooks
def load_photo_catalog(data: DataParams, seed: int) -> Catalog:
    """A photo folder as a catalogue, split train / validation / test by ``data.label_column``."""
    catalog = load_photo_folder(data.path, data.label_column)
    catalog.items["split"] = stratified_split(catalog.items["label"].to_numpy(), data.split, seed)
    return catalog


def load_catalog_source(data: DataParams, seed: int) -> Catalog:
    """Load the catalogue that ``data.source`` names."""
    if data.source == "fashion_mnist":
        return load_fashion_mnist(data, seed)
    if data.source == "photo_folder":
        return load_photo_catalog(data, seed)
    if data.source == "farfetch":
        return load_farfetch_catalog(data, seed)
    raise ValueError(f"unknown data source {data.source!r}")


def check_source(data: DataParams, columns: list[str]) -> None:
    """Raise now if the catalogue's files cannot be had (:class:`DatasetNotFoundError`) or lack
    one of ``columns`` (ValueError).

    Cheap where the files are local; without them, keras.datasets downloads (and caches) them.
    """
    if data.source == "fashion_mnist":
        read_fashion_mnist(data.path)
        available = ["category"]
    elif data.source == "farfetch":
        available = list(list_farfetch(data.path).items.columns)
    else:
        available = list(list_photo_folder(data.path).items.columns)
    missing = [c for c in columns if c not in available]
    if missing:
        raise ValueError(f"the {data.source} catalogue has no column '{missing[0]}' (asked for by the "
                         f"parameters); its columns: {', '.join(available)}")
