"""The catalogue: a table of items with labels and a split, plus their images.

Every source (:mod:`fashion_search.data`) is read into the one shape, :class:`Catalog`; this
module holds what is done to that shape whatever its source: labels, the stratified split,
relevance, leaving out unusable photos, and saving it for the later stages.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from fashion_search.progress import progress

from fashion_search.images import UnusableImageError, read_photo
from fashion_search.io import read_json, save_npy, write_json, write_text_atomic
from fashion_search.params import SplitFractions

SPLITS = ("train", "validation", "test")
SKIPPED_COLUMNS = ["id", "path", "reason"]
# A cell starting with one of these is run as a formula by a spreadsheet opening the CSV.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# An id the service can put in a URL and a file name: never a path, never hidden, no spaces.
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
SAFE_ID_RULE = "letters, digits, '.', '_' and '-', starting with a letter or digit, at most 128"


class DatasetNotFoundError(FileNotFoundError):
    """The catalogue's files are missing; the message says how to get them."""


class CatalogueError(ValueError):
    """Catalogue metadata that cannot be used as it is; the message names the column or id."""


def is_safe_id(item_id: str) -> bool:
    """Whether ``item_id`` follows :data:`SAFE_ID` (the whole string)."""
    return SAFE_ID.fullmatch(item_id) is not None


@dataclass
class Catalog:
    """Items (``id``, ``label``, a category column, ``split``) and their images, row-aligned.

    ``images`` holds either the pixels (uint8, ``(N, H, W)`` or ``(N, H, W, 3)``) or, for a
    catalogue of photo files, their paths (a 1-D string array), decoded in the input pipeline.
    """

    items: pd.DataFrame
    images: np.ndarray
    label_column: str = "category"
    skipped: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SKIPPED_COLUMNS))

    def __post_init__(self) -> None:
        if len(self.items) != len(self.images):
            raise ValueError(f"{len(self.items)} items but {len(self.images)} images")

    def __len__(self) -> int:
        return len(self.items)

    @property
    def class_names(self) -> list[str]:
        """Category names, indexed by the integer ``label``."""
        pairs = self.items[["label", self.label_column]].drop_duplicates().sort_values("label")
        return pairs[self.label_column].tolist()

    def searched(self) -> "Catalog":
        """The items the catalogue protocol searches: all, or with ``data.evaluation_path`` the
        evaluation photos only (column ``in_catalogue``), not the photos only trained on."""
        if "in_catalogue" not in self.items.columns:
            return self
        mask = self.items["in_catalogue"].to_numpy(bool)
        return Catalog(self.items[mask].reset_index(drop=True), self.images[mask], self.label_column)

    def subset(self, split: str) -> "Catalog":
        """The items of one split, in catalogue order."""
        mask = (self.items["split"] == split).to_numpy()
        return Catalog(self.items[mask].reset_index(drop=True), self.images[mask], self.label_column)


# ----------------------------------------------------------------------------- labels, usable photos
def with_labels(catalog: Catalog, label_column: str) -> Catalog:
    """``catalog`` with an integer ``label`` per value of ``label_column`` (sorted names)."""
    items = catalog.items
    if label_column not in items.columns:
        raise ValueError(f"the catalogue has no column '{label_column}'; columns: {', '.join(items.columns)}")
    items[label_column] = items[label_column].fillna("unknown").astype(str)
    names = sorted(items[label_column].unique())
    items.insert(1, "label", items[label_column].map({n: i for i, n in enumerate(names)}).astype(int))
    return Catalog(items, catalog.images, label_column, catalog.skipped)


def photo_problem(path: str | Path) -> str | None:
    """Why the photo at ``path`` cannot be used (missing, empty, unreadable, too large), or None."""
    try:
        read_photo(path)
    except UnusableImageError as err:
        return str(err)
    return None


def _with_skipped(catalog: Catalog, keep: np.ndarray, reasons: list[str]) -> Catalog:
    """The items where ``keep`` holds; the others added to ``skipped`` with their ``reasons``."""
    paths = catalog.items["path"] if "path" in catalog.items.columns else pd.Series([""] * len(catalog))
    bad = pd.DataFrame({"id": catalog.items["id"][~keep].astype(str), "path": paths[~keep].astype(str),
                        "reason": reasons})
    skipped = pd.concat([catalog.skipped, bad], ignore_index=True) if len(catalog.skipped) else bad.reset_index(drop=True)
    return Catalog(catalog.items[keep].reset_index(drop=True), catalog.images[keep], catalog.label_column, skipped)


def drop_unsafe_ids(catalog: Catalog) -> Catalog:
    """Leave out items whose id breaks :data:`SAFE_ID` (a space, a slash, an accent...), listing why."""
    ids = catalog.items["id"].astype(str)
    keep = ids.map(is_safe_id).to_numpy(bool)
    reasons = [f"id '{i}' cannot be served ({SAFE_ID_RULE} characters); rename the photo or its row"
               for i in ids[~keep]]
    return _with_skipped(catalog, keep, reasons)


def drop_unusable(catalog: Catalog) -> Catalog:
    """Leave out photos that cannot be read, adding them to ``skipped`` with the reason."""
    problems = [photo_problem(p) for p in progress(catalog.images, "checking photos", unit="photo")]
    usable = np.array([problem is None for problem in problems], bool)
    return _with_skipped(catalog, usable, [p for p in problems if p is not None])


# ----------------------------------------------------------------------------- splits
def stratified_split(labels: np.ndarray, fractions: SplitFractions, seed: int,
                     groups: np.ndarray | None = None) -> np.ndarray:
    """A split name per item, the same share of every class in each split.

    Per class of n items: round(n·test) test items and round(n·validation) validation items, at
    least one test item once n ≥ 2 and one validation item once n ≥ 3; the rest train. A class
    of one item goes to train (it could never be a scored query). With ``groups`` (a product id
    per photo), whole groups are split, labelled by their first item, so the photos of one
    product share a split.
    """
    if groups is not None:
        _, first, inverse = np.unique(np.asarray(groups, str), return_index=True, return_inverse=True)
        return stratified_split(np.asarray(labels)[first], fractions, seed)[inverse]
    rng = np.random.default_rng(seed)
    split = np.full(len(labels), "train", dtype=object)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n = len(members)
        n_test = max(int(round(n * fractions.test)), 1 if n >= 2 else 0)
        n_val = max(int(round(n * fractions.validation)), 1 if n >= 3 and fractions.validation > 0 else 0)
        n_val = min(n_val, n - n_test - 1) if n > n_test else 0
        split[members[:n_test]] = "test"
        split[members[n_test:n_test + n_val]] = "validation"
    return split


def relevance_codes(items: pd.DataFrame, definition: str) -> np.ndarray:
    """One integer per item, equal for items relevant to each other under ``definition``
    (a column, or columns joined by '+' that must all match)."""
    columns = definition.split("+")
    missing = [c for c in columns if c not in items.columns]
    if missing:
        raise ValueError(f"relevance '{definition}': the catalogue has no column '{missing[0]}'")
    keys = items[columns].astype(str).agg("\x1f".join, axis=1)
    return pd.factorize(keys)[0]


# ----------------------------------------------------------------------------- on disk
def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells that a spreadsheet would run as a formula (starting
    with one of :data:`FORMULA_STARTS`) start with a single quote, which shows them as text;
    numbers, and cells escaped already, are left as they are."""
    safe = frame.copy()
    for column in safe.columns:
        values = safe[column]
        if pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values):
            risky = values.map(lambda v: isinstance(v, str) and v.startswith(FORMULA_STARTS)).astype(bool)
            safe[column] = values.where(~risky, "'" + values[risky].astype(str))
    return safe


def save_catalog(catalog: Catalog, folder: str | Path) -> None:
    """Write ``items.csv``, ``images.npy``, ``skipped.csv`` (photos left out, and why) and a
    manifest into ``folder`` (each atomically)."""
    folder = Path(folder)
    save_npy(folder / "images.npy", catalog.images)
    write_text_atomic(folder / "items.csv", catalog.items.to_csv(index=False))
    write_text_atomic(folder / "skipped.csv", spreadsheet_safe(catalog.skipped).to_csv(index=False))
    counts = catalog.items.groupby("split").size().to_dict()
    write_json(folder / "manifest.json", {
        "label_column": catalog.label_column,
        "items": len(catalog),
        "skipped": len(catalog.skipped),
        "per_split": {k: int(v) for k, v in counts.items()},
        "image_shape": list(catalog.images.shape[1:]),
    })


def load_catalog(folder: str | Path) -> Catalog:
    """Read a catalogue written by :func:`save_catalog`."""
    folder = Path(folder)
    if not (folder / "manifest.json").is_file():
        raise FileNotFoundError(f"no catalogue in {folder}; run the data stage (01_data) first")
    manifest = read_json(folder / "manifest.json")
    items = pd.read_csv(folder / "items.csv", dtype={"id": str})
    catalog = Catalog(items, np.load(folder / "images.npy"), manifest["label_column"])
    if (folder / "skipped.csv").is_file():
        catalog.skipped = pd.read_csv(folder / "skipped.csv", dtype={"id": str})
    return catalog
