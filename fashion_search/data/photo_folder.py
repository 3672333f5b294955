"""A folder of photos as a catalogue: searched recursively, any common format, with an optional
metadata CSV (``labels.csv`` or ``metadata.csv`` with an ``id`` column). Without one, a photo's
first sub-folder names its ``category``. Photos and folders named on the command line are
read the same way (:func:`list_photos`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fashion_search.data.catalog import SKIPPED_COLUMNS, Catalog, CatalogueError, DatasetNotFoundError
from fashion_search.data.metadata import check_names, check_values
from fashion_search.images import PHOTO_SUFFIXES

METADATA_FILES = ("labels.csv", "metadata.csv")


def find_photos(folder: str | Path) -> list[Path]:
    """Every photo under ``folder`` (any depth, any suffix of :data:`PHOTO_SUFFIXES`, hidden
    files and folders left out), in sorted order."""
    folder = Path(folder)
    found = [p for p in folder.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file()
             and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    return sorted(found)


def photo_ids(photos: list[Path], folder: Path) -> list[str]:
    """A product id per photo: its file name without suffix, or, where two photos share that
    name, its path below ``folder`` without suffix, folders joined by '.' (``shoes.runner``)."""
    stems = [p.stem for p in photos]
    if len(set(stems)) == len(stems):
        return stems
    return [".".join(p.relative_to(folder).with_suffix("").parts) for p in photos]


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
        raise CatalogueError(f"{path} has no 'id' column; its columns: {', '.join(table.columns)}")
    check_names(table.columns, str(path))
    check_values(table, str(path))
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


def list_photos(paths: list[str | Path], metadata: str | Path | None = None) -> Catalog:
    """Photos and folders (as :func:`list_photo_folder` reads them) as one catalogue; a loose
    photo's id is its file name without suffix, its metadata the ``metadata`` CSV's row."""
    parts, loose = [], []
    for given in map(Path, paths):
        if given.is_dir():
            parts.append(list_photo_folder(given, metadata))
        elif given.suffix.lower() in PHOTO_SUFFIXES or given.is_file():
            loose.append(given)
        else:
            raise DatasetNotFoundError(f"{given} is neither a photo nor a folder")
    if loose:
        items = pd.DataFrame({"id": [p.stem for p in loose], "path": [str(p) for p in loose]})
        if metadata:
            items = items.merge(read_metadata(metadata), on="id", how="left")
        items["split"] = "test"
        parts.append(Catalog(items, items["path"].to_numpy(str)))
    items = pd.concat([p.items for p in parts], ignore_index=True)
    skipped = pd.concat([p.skipped for p in parts], ignore_index=True)
    return Catalog(items, np.concatenate([p.images for p in parts]), skipped=skipped)
