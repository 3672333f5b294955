"""A searchable product index on disk: vectors, colours, metadata and a faiss index, kept in step.

Folder layout::

    manifest.json          what made the index (model identity, metric, kind) and which files are current
    vectors.f32            every row's exact vector, float32, append-only
    colours.f32            every row's colour descriptor, float32, append-only
    products-<gen>.csv     one row per vector: id, path, metadata, colour names, deleted
    faiss-<gen>.faiss      the faiss index
    skipped.csv            photos left out, with the reason

A change (add, remove) writes the next generation's files, then the manifest naming them, in
one atomic rename; the old generation's files go only after that. An interruption at any point
leaves the previous generation whole: rows appended past the manifest's count are ignored and
overwritten by the next change.
"""
from __future__ import annotations

import dataclasses
import fcntl
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from fashion_search.io import read_json, write_json, write_text_atomic
from fashion_search.params import IndexParams
from fashion_search.search.colour import DESCRIPTOR_DIM, colour_names
from fashion_search.search.faiss_index import (IndexChoice, VectorIndex, add_in_chunks, build_faiss_index,
                                               choose_index, load_faiss_index, save_faiss_index)

MANIFEST_FILE = "manifest.json"
VECTORS_FILE = "vectors.f32"
COLOURS_FILE = "colours.f32"
SKIPPED_FILE = "skipped.csv"
LOCK_FILE = ".lock"
FORMAT_VERSION = 1


class ProductIndexError(ValueError):
    """An index that is missing, damaged, or asked to do something it cannot."""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _append_rows(path: Path, rows_before: int, row_bytes: int, array: np.ndarray) -> None:
    """Append ``array``'s rows after the first ``rows_before`` rows of a raw float32 file,
    dropping whatever an interrupted change left beyond them; flushed to disk."""
    with open(path, "ab") as handle:  # creates it when missing
        pass
    with open(path, "r+b") as handle:
        handle.truncate(rows_before * row_bytes)
        handle.seek(0, os.SEEK_END)
        handle.write(np.ascontiguousarray(array, np.float32).tobytes())
        handle.flush()
        os.fsync(handle.fileno())


def _read_rows(path: Path, rows: int, width: int, in_memory: bool) -> np.ndarray:
    if rows == 0:
        return np.zeros((0, width), np.float32)
    if in_memory:
        return np.fromfile(path, np.float32, count=rows * width).reshape(rows, width)
    return np.memmap(path, np.float32, "r", shape=(rows, width))


@dataclass
class ProductIndex:
    """An opened product index: its manifest, product table, colours and vector index."""

    folder: Path
    manifest: dict
    products: pd.DataFrame
    colours: np.ndarray
    vectors: VectorIndex
    skipped: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["id", "path", "reason"]))

    @property
    def identity(self) -> dict:
        return self.manifest["model"]

    @property
    def live(self) -> np.ndarray:
        """Rows not removed."""
        return ~self.products["deleted"].to_numpy(bool)

    def rows_of(self, product: str) -> np.ndarray:
        """Live rows of a product: those whose ``id`` or ``product_id`` is ``product``, and the
        other photos of the same ``product_id`` (a Farfetch product's cut-out and model photos)."""
        match = self.products["id"].to_numpy(str) == product
        if "product_id" in self.products.columns:
            product_ids = self.products["product_id"].astype(str).to_numpy()
            match |= np.isin(product_ids, [product, *product_ids[match]])
        return np.flatnonzero(match & self.live)

    def info(self) -> dict:
        """What a user wants to know about the index, as plain data."""
        live = int(self.live.sum())
        m = self.manifest
        return {"folder": str(self.folder), "products": live, "removed_rows": len(self.products) - live,
                "skipped_photos": len(self.skipped), "kind": m["kind"], "factory": m["factory"],
                "chosen_because": m["choice_reason"], "metric": m["metric"], "dimension": m["dim"],
                "model": self.identity, "created": m["created"], "updated": m["updated"],
                "generation": m["generation"],
                "columns": [c for c in self.products.columns if c not in ("deleted",)]}


def refuse_existing(folder: Path) -> None:
    """Raise if ``folder`` already holds an index (a new one would silently replace it)."""
    if (folder / MANIFEST_FILE).is_file():
        raise ProductIndexError(f"{folder} already holds an index; add to it with 'fashion-search add', "
                                "or rebuild it with 'fashion-search index --overwrite'")


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold the index's change lock; another process changing it at the same time is refused."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ProductIndexError(f"another process is changing the index in {folder}; try again when it "
                                    "has finished") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _files(generation: int) -> dict:
    return {"vectors": VECTORS_FILE, "colours": COLOURS_FILE, "products": f"products-{generation:06d}.csv",
            "faiss": f"faiss-{generation:06d}.faiss"}


def _with_colour_names(items: pd.DataFrame, colours: np.ndarray) -> pd.DataFrame:
    items = items.reset_index(drop=True).copy()
    items["colours"] = [" ".join(colour_names(c)) for c in colours]
    items["deleted"] = False
    return items


def _commit(folder: Path, manifest: dict, products: pd.DataFrame, faiss_index, skipped: pd.DataFrame,
            new_faiss: bool) -> dict:
    """Write the next generation and switch the manifest to it; return the new manifest."""
    old_files = manifest.get("files", {})
    generation = manifest.get("generation", 0) + 1
    files = _files(generation)
    if not new_faiss:
        files["faiss"] = old_files["faiss"]
    write_text_atomic(folder / files["products"], products.to_csv(index=False))
    if new_faiss:
        save_faiss_index(faiss_index, folder / files["faiss"])
    write_text_atomic(folder / SKIPPED_FILE, skipped.to_csv(index=False))
    manifest = {**manifest, "generation": generation, "rows": len(products), "files": files, "updated": _now()}
    write_json(folder / MANIFEST_FILE, manifest)
    for key in ("products", "faiss"):
        if old_files.get(key) and old_files[key] != files[key]:
            (folder / old_files[key]).unlink(missing_ok=True)
    return manifest


def create_index(folder: str | Path, identity: dict, settings: IndexParams, items: pd.DataFrame,
                 vectors: np.ndarray, colours: np.ndarray, skipped: pd.DataFrame) -> ProductIndex:
    """Build a new index in ``folder`` from embedded items (``id``, ``path``, metadata)."""
    folder = Path(folder)
    with locked(folder):
        return _create(folder, identity, settings, items, vectors, colours, skipped)


def _create(folder: Path, identity: dict, settings: IndexParams, items: pd.DataFrame, vectors: np.ndarray,
            colours: np.ndarray, skipped: pd.DataFrame) -> ProductIndex:
    refuse_existing(folder)
    if len(items) == 0:
        raise ProductIndexError("no usable photos to index (see the skipped list)")
    dim = vectors.shape[1]
    choice: IndexChoice = choose_index(len(items), dim, settings)
    for name in (VECTORS_FILE, COLOURS_FILE):
        (folder / name).unlink(missing_ok=True)
    _append_rows(folder / VECTORS_FILE, 0, dim * 4, vectors)
    _append_rows(folder / COLOURS_FILE, 0, DESCRIPTOR_DIM * 4, colours)
    faiss_index = build_faiss_index(vectors, choice, settings.metric, settings)
    manifest = {"format": FORMAT_VERSION, "model": identity, "dim": dim, "metric": settings.metric,
                "kind": choice.kind, "factory": choice.factory, "choice_reason": choice.reason,
                "colour_descriptor": f"{DESCRIPTOR_DIM // 4} dominant CIELAB colours (L, a, b, share)",
                "created": _now()}
    products = _with_colour_names(items, colours)
    manifest = _commit(folder, manifest, products, faiss_index, skipped, new_faiss=True)
    return open_index(folder, settings)


def open_index(folder: str | Path, settings: IndexParams, in_memory: bool | None = None) -> ProductIndex:
    """Open the index in ``folder``; ``settings`` tune searching (ef, nprobe), not what was built.

    Vectors stay on disk (memory-mapped) for IVF-PQ, in memory otherwise, unless ``in_memory`` says.
    """
    folder = Path(folder)
    if not (folder / MANIFEST_FILE).is_file():
        raise ProductIndexError(f"no index in {folder}; build one with 'fashion-search index <catalogue> --index {folder}'")
    manifest = read_json(folder / MANIFEST_FILE)
    if manifest.get("format") != FORMAT_VERSION:
        raise ProductIndexError(f"the index in {folder} has format {manifest.get('format')}; this version reads "
                          f"format {FORMAT_VERSION}: rebuild it")
    files, rows, dim = manifest["files"], manifest["rows"], manifest["dim"]
    for key in ("products", "faiss"):
        if not (folder / files[key]).is_file():
            raise ProductIndexError(f"the index in {folder} is damaged: {files[key]} is missing; rebuild it")
    in_memory = manifest["kind"] != "ivfpq" if in_memory is None else in_memory
    vectors = _read_rows(folder / files["vectors"], rows, dim, in_memory)
    colours = _read_rows(folder / files["colours"], rows, DESCRIPTOR_DIM, True)
    products = pd.read_csv(folder / files["products"], dtype={"id": str, "product_id": str, "colours": str},
                           keep_default_na=False, na_values=[""])
    products["colours"] = products["colours"].fillna("")
    skipped = pd.read_csv(folder / SKIPPED_FILE, dtype=str) if (folder / SKIPPED_FILE).is_file() else pd.DataFrame(
        columns=["id", "path", "reason"])
    search_settings = dataclasses.replace(settings, metric=manifest["metric"])
    vector_index = VectorIndex(load_faiss_index(folder / files["faiss"]), vectors, manifest["kind"],
                               manifest["metric"], search_settings)
    if len(products) != rows:
        raise ProductIndexError(f"the index in {folder} is damaged: {len(products)} products for {rows} vectors; rebuild it")
    return ProductIndex(folder, manifest, products, colours, vector_index, skipped)


def add_products(index: ProductIndex, items: pd.DataFrame, vectors: np.ndarray, colours: np.ndarray,
                 skipped: pd.DataFrame) -> ProductIndex:
    """Add embedded items; an id already in the index is replaced (its old row is removed)."""
    with locked(index.folder):
        index = open_index(index.folder, index.vectors.settings)  # the latest state, not ours
        return _add(index, items, vectors, colours, skipped)


def _add(index: ProductIndex, items: pd.DataFrame, vectors: np.ndarray, colours: np.ndarray,
         skipped: pd.DataFrame) -> ProductIndex:
    rows, dim = index.manifest["rows"], index.manifest["dim"]
    if vectors.shape[1:] != (dim,):
        raise ProductIndexError(f"the new vectors have {vectors.shape[1]} dimensions, the index {dim}")
    products = index.products.copy()
    products.loc[products["id"].isin(items["id"]), "deleted"] = True
    files = index.manifest["files"]
    _append_rows(index.folder / files["vectors"], rows, dim * 4, vectors)
    _append_rows(index.folder / files["colours"], rows, DESCRIPTOR_DIM * 4, colours)
    add_in_chunks(index.vectors.index, vectors)
    products = pd.concat([products, _with_colour_names(items, colours)], ignore_index=True)
    all_skipped = pd.concat([index.skipped, skipped], ignore_index=True).drop_duplicates(["id", "path"], keep="last")
    _commit(index.folder, index.manifest, products, index.vectors.index, all_skipped, new_faiss=True)
    return open_index(index.folder, index.vectors.settings)


def record_skipped(index: ProductIndex, skipped: pd.DataFrame) -> ProductIndex:
    """Add photos that could not be indexed to the index's skipped list (nothing else changes)."""
    with locked(index.folder):
        index = open_index(index.folder, index.vectors.settings)
        everything = pd.concat([index.skipped, skipped.astype(str)], ignore_index=True)
        write_text_atomic(index.folder / SKIPPED_FILE,
                          everything.drop_duplicates(["id", "path"], keep="last").to_csv(index=False))
    return open_index(index.folder, index.vectors.settings)


def remove_products(index: ProductIndex, ids: list[str]) -> ProductIndex:
    """Remove products by id (every row of each); unknown ids are refused before anything changes."""
    with locked(index.folder):
        return _remove(open_index(index.folder, index.vectors.settings), ids)


def _remove(index: ProductIndex, ids: list[str]) -> ProductIndex:
    known = set(index.products["id"][index.live])
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise ProductIndexError(f"not in the index: {', '.join(unknown[:10])}{' …' if len(unknown) > 10 else ''}")
    products = index.products.copy()
    products.loc[products["id"].isin(ids), "deleted"] = True
    _commit(index.folder, index.manifest, products, None, index.skipped, new_faiss=False)
    return open_index(index.folder, index.vectors.settings)
