"""A folder of photos as a catalogue: searched recursively, any common format, with an optional
metadata CSV (``labels.csv`` or ``metadata.csv`` with an ``id`` column). Without one, a photo's
first sub-folder names its ``category``. Photos and folders named on the command line are
read the same way (:func:`list_photos`). An entry named like a photo that is not a readable
file (a FIFO, a socket, a device or a link to one, a link to nothing, a folder) is never opened:
it is listed in ``Catalog.skipped`` with what it is (:func:`entry_problem`).
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd

from fashion_search.data.catalog import SKIPPED_COLUMNS, Catalog, CatalogueError, DatasetNotFoundError
from fashion_search.data.metadata import check_values, normal_names, typed_values
from fashion_search.images import PHOTO_SUFFIXES

METADATA_FILES = ("labels.csv", "metadata.csv")


def entry_problem(path: Path) -> str | None:
    """Why the entry at ``path`` is not a photo file that can be read, or None; told from its
    metadata alone, so that a FIFO or a device is never opened."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "a link to nothing (its target is missing)" if path.is_symlink() else "file missing"
    except OSError as err:
        return f"cannot be read ({err.strerror or type(err).__name__})"
    if stat.S_ISREG(mode):
        return None if os.access(path, os.R_OK) else "cannot be read (permission denied)"
    kind = ("a folder" if stat.S_ISDIR(mode) else "a pipe (FIFO)" if stat.S_ISFIFO(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a special file")
    return f"{'a link to ' + kind if path.is_symlink() else kind}, not a photo file"


def find_photos(folder: str | Path) -> tuple[list[Path], dict[Path, str]]:
    """Every entry under ``folder`` named like a photo (any depth, any suffix of
    :data:`PHOTO_SUFFIXES`, hidden files and folders left out), in sorted order: the photo
    files, and the other entries with why each is not one."""
    folder = Path(folder)
    entries = sorted(p for p in folder.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES
                     and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    problems = {p: entry_problem(p) for p in entries}
    return [p for p in entries if problems[p] is None], {p: r for p, r in problems.items() if r is not None}


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
    """A metadata CSV with an ``id`` column, names and values as :mod:`.metadata` stores them
    (plain decimal numbers as numbers, other values as NFKC text, "unknown" where missing)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"no metadata file {path}")
    table = pd.read_csv(path, dtype=str)
    table.columns = normal_names(table.columns, str(path))
    if "id" not in table.columns:
        raise CatalogueError(f"{path} has no 'id' column; its columns: {', '.join(table.columns)}")
    check_values(table, str(path))
    return typed_values(table)


def list_photo_folder(folder: str | Path, metadata: str | Path | None = None) -> Catalog:
    """The photos of a folder as catalogue items (``id``, ``path``, metadata columns), every
    item in the ``test`` split; no photo is opened.

    With a metadata CSV (``metadata``, else ``labels.csv`` / ``metadata.csv`` in the folder), its
    rows are the catalogue: a row whose photo is missing, and a photo without a row, are listed
    in ``Catalog.skipped``. Without one, every photo is an item and its first sub-folder (if
    any) is its ``category``. Either way an entry named like a photo that is not a photo file is
    listed in ``Catalog.skipped`` with what it is.
    """
    folder = Path(folder).expanduser().resolve()  # an index is queried from anywhere
    if not folder.is_dir():
        raise DatasetNotFoundError(f"{folder} is not a folder")
    photos, odd = find_photos(folder)
    ids = photo_ids(photos, folder)
    by_id = dict(zip(ids, map(str, photos)))
    odd_by_id = {i: (str(p), reason) for i, (p, reason) in zip(photo_ids(list(odd), folder), odd.items())}
    metadata_path = Path(metadata) if metadata else find_metadata(folder)
    if metadata_path is None:
        if not photos:
            raise DatasetNotFoundError(f"{folder} holds no photos ({', '.join(PHOTO_SUFFIXES)})")
        categories = [p.relative_to(folder).parts[0] if len(p.relative_to(folder).parts) > 1 else "unknown"
                      for p in photos]
        items = pd.DataFrame({"id": ids, "category": categories})
        rows = [(i, *odd_by_id[i]) for i in odd_by_id]
    else:
        items = read_metadata(metadata_path)
        listed = set(items["id"])
        missing = ~items["id"].isin(by_id)
        rows = [(i, *odd_by_id.get(i, (str(folder / f"{i}.jpg"), "file missing"))) for i in items["id"][missing]]
        rows += [(i, by_id[i], f"no row in {metadata_path.name}") for i in ids if i not in listed]
        explained = set(items["id"][missing])
        rows += [(i, *odd_by_id[i]) for i in odd_by_id if i not in explained]
        items = items[~missing].reset_index(drop=True)
    skipped = pd.DataFrame(rows, columns=SKIPPED_COLUMNS)
    paths = np.array([by_id[i] for i in items["id"]], dtype=str)
    items.insert(1, "path", paths)
    items["split"] = "test"
    return Catalog(items, paths, "category", skipped)


def list_photos(paths: list[str | Path], metadata: str | Path | None = None) -> Catalog:
    """Photos and folders (as :func:`list_photo_folder` reads them) as one catalogue; a loose
    photo's id is its file name without suffix, its metadata the ``metadata`` CSV's row (one that
    is not a photo file is listed in ``Catalog.skipped`` with what it is)."""
    parts, loose = [], []
    for given in map(Path, paths):
        if given.is_dir():
            parts.append(list_photo_folder(given, metadata))
        elif given.suffix.lower() in PHOTO_SUFFIXES or given.is_file():
            loose.append(given)
        else:
            raise DatasetNotFoundError(f"{given} is neither a photo nor a folder")
    if loose:
        problems = [entry_problem(p) for p in loose]
        usable = [p for p, problem in zip(loose, problems) if problem is None]
        items = pd.DataFrame({"id": [p.stem for p in usable], "path": [str(p) for p in usable]})
        if metadata:
            items = items.merge(read_metadata(metadata), on="id", how="left")
        items["split"] = "test"
        skipped = pd.DataFrame([(p.stem, str(p), problem) for p, problem in zip(loose, problems) if problem],
                               columns=SKIPPED_COLUMNS)
        parts.append(Catalog(items, items["path"].to_numpy(str), skipped=skipped))
    items = pd.concat([p.items for p in parts], ignore_index=True)
    skipped = pd.concat([p.skipped for p in parts], ignore_index=True)
    return Catalog(items, np.concatenate([p.images for p in parts]), skipped=skipped)
