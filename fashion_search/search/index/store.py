"""A searchable product index on disk: vectors, colours, metadata and a faiss index (or a
Milvus collection, :mod:`.milvus_index`), kept in step.

Folder layout::

    manifest.json          what made the index (model identity, metric, kind) and which files are current
    vectors.f32            every row's exact vector, float32, append-only (vectors-<gen>.f32 after a compaction)
    colours.f32            every row's colour descriptor, float32, append-only
    products-<gen>.csv     one row per vector: id, path, metadata, colour names, deleted
    faiss-<gen>.faiss      the faiss index (backend faiss; with milvus the manifest names the collection)
    skipped.csv            photos left out, with the reason
    uploads/               photos added over HTTP, re-encoded
    owned-files.json       every file the engine made here (the only ones it deletes or rewrites)

Changes (add, remove, compact) hold the lock and replace the whole generation at once
(:mod:`.generations`); opening reads whichever generation is current, retrying if a change
switched it meanwhile, so a reader always gets a whole one.

Longer than 300 lines: every change of an index (create, add, remove, compact) is here, so
that the order of writes that keeps readers safe can be read in one place.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fashion_search.data.catalog import spreadsheet_safe
from fashion_search.data.metadata import stored_types, with_missing_marked
from fashion_search.io import file_sha256
from fashion_search.params import IndexParams
from fashion_search.colour import DESCRIPTOR_DIM, colour_names
from fashion_search.search.index.faiss_index import (VectorIndex, add_in_chunks, build_faiss_index, choose_index,
                                               load_faiss_index, save_faiss_index)
from fashion_search.search.index.milvus_index import (LITE_FILE, MilvusVectors, connect, create_collection, default_uri,
                                                open_collection)
from fashion_search.search.index.generations import (MANIFEST_FILE, IndexBusyError, ProductIndexError,
                                               append_rows, generation_files, locked, read_rows)
from fashion_search.search.index.integrity import (DamagedIndexError, check_checksums, check_finite, check_manifest,
                                             check_rows_read, damaged, extend_segments, sealed, verify_files)
from fashion_search.search.index.product_index import ProductIndex
from fashion_search.search.index.index_folder import (FORMAT_VERSION, SKIPPED_FILE, check_not_rolled_back,
                                                compaction_files, free_generation, index_ledger, positional,
                                                read_manifest, refuse_existing, remove_debris, write_manifest)
from fashion_search.search.index.ownership import Ledger, claim, claim_folder, read_ledger, write_ledger, write_owned

OPEN_ATTEMPTS = 5
CHECKED: set[tuple[str, str]] = set()  # (folder, seal) of the generations this process checked or wrote

__all__ = ["MANIFEST_FILE", "DamagedIndexError", "IndexBusyError", "ProductIndex", "ProductIndexError", "add_products",
           "check_can_create", "compact", "create_index", "open_index", "record_skipped", "refuse_existing",
           "remove_products", "verify_index"]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def check_can_create(folder: Path, settings: IndexParams, replacing: bool = False) -> None:
    """Before hours of embedding: take the folder (new, empty, an unfinished build, or with
    ``replacing`` an index), refuse an existing index otherwise, and reach Milvus when it is the backend."""
    claim_folder(folder)
    if not replacing:
        refuse_existing(folder)
    if settings.backend == "milvus":
        if not settings.uri:
            with locked(folder, settings.lock_wait_s):
                claim(folder, [LITE_FILE])
        connect(settings.uri or default_uri(folder), settings.lock_wait_s).close()  # no idle channel while embedding


def _with_colour_names(items: pd.DataFrame, colours: np.ndarray) -> pd.DataFrame:
    items = items.reset_index(drop=True).copy()
    items["colours"] = [" ".join(colour_names(c)) for c in colours]
    items["deleted"] = False
    return items


def row_widths(manifest: dict) -> dict[str, int]:
    """float32 values a row takes in each append-only file of the index."""
    return {"vectors": manifest["dim"], "colours": DESCRIPTOR_DIM}


def _checksums(folder: Path, manifest: dict, files: dict, rows: int) -> dict:
    """The checksums of the next generation's files: whole files for the products table and a
    faiss file written now (an unchanged one keeps its checksum), segments of rows for the
    append-only files (only the rows appended are hashed)."""
    old_files, old = manifest.get("files", {}), manifest.get("checksums", {})
    checksums = {}
    for role in ("products", "faiss"):
        if role not in files:
            continue
        unchanged = role == "faiss" and files[role] == old_files.get(role) and role in old
        checksums[role] = old[role] if unchanged else file_sha256(folder / files[role])
    for role, width in row_widths(manifest).items():
        kept = files[role] == old_files.get(role) and role in old
        checksums[role] = extend_segments(old[role] if kept else [], folder / files[role], width * 4,
                                          manifest.get("rows", 0) if kept else 0, rows)
    return checksums


def _commit(folder: Path, manifest: dict, products: pd.DataFrame, faiss_index, skipped: pd.DataFrame,
            vectors_file: str | None = None, colours_file: str | None = None, generation: int | None = None) -> dict:
    """Write the next generation (a new faiss file unless ``faiss_index`` is None), with the
    checksums of its files, and switch the sealed manifest to it; the previous generation's
    files stay for readers, older ones go."""
    old_files = manifest.get("files", {})
    generation = generation or free_generation(folder, manifest)
    files = generation_files(generation, vectors_file or old_files["vectors"], colours_file or old_files["colours"])
    if faiss_index is None:  # unchanged, or none at all (the vectors are in Milvus)
        files.pop("faiss")
        if "faiss" in old_files:
            files["faiss"] = old_files["faiss"]
    ledger = claim(folder, [files["products"], SKIPPED_FILE, *([files["faiss"]] if faiss_index is not None else [])],
                   index_ledger(folder, manifest, products))
    write_owned(folder, files["products"], products.to_csv(index=False, float_format=positional).encode())
    if faiss_index is not None:
        save_faiss_index(faiss_index, folder / files["faiss"])
    write_owned(folder, SKIPPED_FILE, spreadsheet_safe(skipped).to_csv(index=False).encode())
    manifest = sealed({**{k: v for k, v in manifest.items() if k != "seal"}, "format": FORMAT_VERSION,
                       "generation": generation, "rows": len(products), "files": files,
                       "checksums": _checksums(folder, manifest, files, len(products)),
                       "previous_files": old_files, "updated": _now()})
    write_manifest(folder, manifest)
    CHECKED.add((str(folder.resolve()), manifest["seal"]))  # this process wrote it and hashed what it wrote
    remove_debris(folder, manifest, products, ledger, generation)
    return manifest


def create_index(folder: str | Path, identity: dict, settings: IndexParams, items: pd.DataFrame,
                 vectors: np.ndarray, colours: np.ndarray, skipped: pd.DataFrame) -> ProductIndex:
    """Build a new index in ``folder`` from embedded items (``id``, ``path``, metadata)."""
    folder = Path(folder)
    claim_folder(folder)
    with locked(folder, settings.lock_wait_s):
        refuse_existing(folder)
        if len(items) == 0:
            raise ProductIndexError("no usable photos to index (see the skipped list)")
        dim = vectors.shape[1]
        choice = choose_index(len(items), dim, settings)
        files = generation_files(1, "vectors.f32", "colours.f32")
        ledger = read_ledger(folder) or Ledger()
        write_ledger(folder, Ledger(ledger.names, 0))  # a new index: generations count again from 1
        claim(folder, [files["vectors"], files["colours"]])
        append_rows(folder / files["vectors"], 0, dim * 4, vectors)
        append_rows(folder / files["colours"], 0, DESCRIPTOR_DIM * 4, colours)
        manifest = {"format": FORMAT_VERSION, "model": identity, "dim": dim, "metric": settings.metric,
                    "kind": choice.kind, "factory": choice.factory, "choice_reason": choice.reason,
                    "colour_descriptor": f"{DESCRIPTOR_DIM // 4} dominant CIELAB colours (L, a, b, share)",
                    "created": _now(), "files": {"vectors": files["vectors"], "colours": files["colours"]}}
        products = _with_colour_names(items, colours)
        faiss_index = None
        if settings.backend == "milvus":
            if not settings.uri:
                claim(folder, [LITE_FILE])
            manifest.update(create_collection(folder, 1, identity, vectors, products, settings.metric, choice.kind,
                                              settings))
        else:
            faiss_index = build_faiss_index(vectors, choice, settings.metric, settings)
        _commit(folder, manifest, products, faiss_index, skipped)
    return open_index(folder, settings)


def _open_once(folder: Path, manifest: dict, settings: IndexParams, in_memory: bool | None) -> ProductIndex:
    """The index the manifest names, after the checks of an open: the manifest's seal and sizes
    before reading, the checksums of the products and faiss files and of every row read into
    memory, finite values, no older manifest put back, the faiss index's shape."""
    check_manifest(folder, manifest, row_widths(manifest))
    files, rows, dim = manifest["files"], manifest["rows"], manifest["dim"]
    in_memory = manifest["kind"] != "ivfpq" if in_memory is None else in_memory
    vectors = read_rows(folder / files["vectors"], rows, dim, in_memory)
    colours = read_rows(folder / files["colours"], rows, DESCRIPTOR_DIM, True)
    if in_memory:
        check_finite(folder, files["vectors"], vectors)
    check_finite(folder, files["colours"], colours)
    seen = (str(folder.resolve()), manifest.get("seal"))
    if seen not in CHECKED:  # each sealed generation once a process: its checksums cover every byte read
        check_checksums(folder, manifest, row_widths(manifest), whole_files_only=True)
        for role, array in (("vectors", vectors), ("colours", colours)):
            if not isinstance(array, np.memmap):  # IVF-PQ's vectors stay on disk: 'verify' reads them
                check_rows_read(folder, manifest, role, array)
        if seen[1] and not isinstance(vectors, np.memmap):
            CHECKED.add(seen)
    products = with_missing_marked(stored_types(
        pd.read_csv(folder / files["products"], dtype=str, keep_default_na=False, na_values=[""]),
        ("id", "path", "colours", "product_id")))  # an index of an older version may hold blanks
    products["colours"] = products["colours"].fillna("")
    skipped = pd.read_csv(folder / SKIPPED_FILE, dtype=str) if (folder / SKIPPED_FILE).is_file() else pd.DataFrame(
        columns=["id", "path", "reason"])
    search_settings = dataclasses.replace(settings, metric=manifest["metric"])
    if manifest.get("backend") == "milvus":
        vector_index = open_collection(folder, manifest, vectors, search_settings)
    else:
        faiss_index = load_faiss_index(folder / files["faiss"])
        if faiss_index.d != dim:
            raise damaged(folder, f"{files['faiss']} holds {faiss_index.d}-d vectors; the manifest says {dim}")
        vector_index = VectorIndex(faiss_index, vectors, manifest["kind"], manifest["metric"], search_settings)
    if len(products) != rows:
        raise ValueError(f"{len(products)} products for {rows} vectors")
    return ProductIndex(folder, manifest, products, colours, vector_index, skipped)


def verify_index(folder: str | Path) -> dict:
    """Every file of the index against the checksums recorded when it was written, after the
    checks of an open; raises :class:`DamagedIndexError` at the first difference. Takes no lock
    (a read-only index can be verified): a change meanwhile is waited out by reading again."""
    folder = Path(folder)
    for _ in range(OPEN_ATTEMPTS):
        manifest = read_manifest(folder)
        try:
            check_manifest(folder, manifest, row_widths(manifest))
            check_not_rolled_back(folder, manifest)
            return {**verify_files(folder, manifest, row_widths(manifest)), "sealed": manifest["format"] >= 2}
        except (OSError, DamagedIndexError) as err:
            if read_manifest(folder).get("generation") != manifest.get("generation"):
                continue  # a change switched generations while we read: verify the new one
            raise err if isinstance(err, DamagedIndexError) else damaged(folder, str(err)[:300]) from None
    raise ProductIndexError(f"the index in {folder} kept changing while it was verified; try again")


def open_index(folder: str | Path, settings: IndexParams, in_memory: bool | None = None) -> ProductIndex:
    """Open the index in ``folder``; ``settings`` tune searching (ef, nprobe), not what was built.

    Vectors stay on disk (memory-mapped) for IVF-PQ, in memory otherwise, unless ``in_memory``
    says. A change by another process meanwhile is waited out: the current generation is re-read.
    """
    folder = Path(folder)
    for attempt in range(OPEN_ATTEMPTS):
        manifest = read_manifest(folder)
        try:
            check_not_rolled_back(folder, manifest)
            return _open_once(folder, manifest, settings, in_memory)
        except (OSError, ValueError, RuntimeError) as err:  # faiss raises RuntimeError for a missing file
            if read_manifest(folder).get("generation") != manifest.get("generation"):
                continue  # a change switched generations while we read: read the new one
            if isinstance(err, ProductIndexError):
                raise  # already says what is wrong (damage, Milvus unreachable, another model's collection)
            if attempt == OPEN_ATTEMPTS - 1 or not isinstance(err, OSError):
                raise damaged(folder, str(err)[:300]) from None
            time.sleep(0.05)
    raise ProductIndexError(f"the index in {folder} kept changing while it was opened; try again")


def add_products(index: ProductIndex, items: pd.DataFrame, vectors: np.ndarray, colours: np.ndarray,
                 skipped: pd.DataFrame) -> tuple[ProductIndex, int]:
    """Add embedded items; an id already in the index is replaced (its old row is removed).
    Returns the index and how many of the items replaced a product (counted under the lock, so
    another writer's change meanwhile is not counted as this one's)."""
    settings = index.vectors.settings
    with locked(index.folder, settings.lock_wait_s):
        index = open_index(index.folder, settings)  # the latest state, not ours
        rows, dim = index.manifest["rows"], index.manifest["dim"]
        if vectors.shape[1:] != (dim,):
            raise ProductIndexError(f"the new vectors have {vectors.shape[1]} dimensions, the index {dim}")
        products = index.products.copy()
        replaced = np.flatnonzero(products["id"].isin(items["id"]).to_numpy(bool) & index.live)
        products.loc[replaced, "deleted"] = True
        files = index.manifest["files"]
        append_rows(index.folder / files["vectors"], rows, dim * 4, vectors)
        append_rows(index.folder / files["colours"], rows, DESCRIPTOR_DIM * 4, colours)
        products = with_missing_marked(pd.concat([products, _with_colour_names(items, colours)], ignore_index=True))
        if isinstance(index.vectors, MilvusVectors):  # rows past the manifest's count stay unseen until the commit
            index.vectors.write(rows, vectors, products.iloc[rows:])
        else:
            add_in_chunks(index.vectors.index, vectors)
        all_skipped = pd.concat([index.skipped, skipped], ignore_index=True).drop_duplicates(["id", "path"],
                                                                                            keep="last")
        _commit(index.folder, index.manifest, products, getattr(index.vectors, "index", None), all_skipped)
        _forget(index, replaced)
    return open_index(index.folder, settings), int(products["id"].iloc[replaced].nunique())


def _forget(index: ProductIndex, rows: np.ndarray) -> None:
    """After a commit: take removed or replaced rows out of a Milvus collection (faiss masks them)."""
    if isinstance(index.vectors, MilvusVectors):
        index.vectors.remove(rows)


def record_skipped(index: ProductIndex, skipped: pd.DataFrame) -> ProductIndex:
    """Add photos that could not be indexed to the index's skipped list (nothing else changes)."""
    settings = index.vectors.settings
    with locked(index.folder, settings.lock_wait_s):
        index = open_index(index.folder, settings)
        everything = pd.concat([index.skipped, skipped.astype(str)], ignore_index=True)
        claim(index.folder, [SKIPPED_FILE], index_ledger(index.folder, index.manifest, index.products))
        write_owned(index.folder, SKIPPED_FILE,
                    spreadsheet_safe(everything.drop_duplicates(["id", "path"], keep="last")).to_csv(
                        index=False).encode())
    return open_index(index.folder, settings)


def remove_products(index: ProductIndex, ids: list[str]) -> ProductIndex:
    """Remove products by id (every row of each); unknown ids are refused before anything changes."""
    settings = index.vectors.settings
    with locked(index.folder, settings.lock_wait_s):
        index = open_index(index.folder, settings)
        known = set(index.products["id"][index.live])
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise ProductIndexError(f"not in the index: {', '.join(unknown[:10])}{' …' if len(unknown) > 10 else ''}")
        products = index.products.copy()
        removed = np.flatnonzero(products["id"].isin(ids).to_numpy(bool) & index.live)
        products.loc[removed, "deleted"] = True
        _commit(index.folder, index.manifest, products, None, index.skipped)
        _forget(index, removed)
    return open_index(index.folder, settings)


def compact(index: ProductIndex) -> ProductIndex:
    """Drop removed rows and rebuild the faiss index from the stored vectors (no re-embedding),
    its kind chosen anew for the live count; new vector files, so readers of the previous
    generation keep theirs."""
    settings = index.vectors.settings
    with locked(index.folder, settings.lock_wait_s):
        index = open_index(index.folder, settings, in_memory=True)
        live = index.live
        if not live.any():
            raise ProductIndexError("every product was removed; nothing to compact (build a new index)")
        vectors, colours = np.asarray(index.vectors.vectors)[live], index.colours[live]
        generation = free_generation(index.folder, index.manifest, compaction_files)
        names = tuple(compaction_files(generation))[:2]
        claim(index.folder, list(names), index_ledger(index.folder, index.manifest, index.products))
        append_rows(index.folder / names[0], 0, vectors.shape[1] * 4, vectors)
        append_rows(index.folder / names[1], 0, DESCRIPTOR_DIM * 4, colours)
        choice = choose_index(len(vectors), vectors.shape[1], settings)
        manifest = {**index.manifest, "kind": choice.kind, "factory": choice.factory, "choice_reason": choice.reason}
        products = index.products[live].reset_index(drop=True)
        faiss_index = None
        if isinstance(index.vectors, MilvusVectors):  # renumbered rows: a new collection, the old one dropped after
            manifest.update(create_collection(index.folder, generation, index.identity, vectors, products,
                                              manifest["metric"], choice.kind, settings, manifest["milvus"]["uri"]))
        else:
            faiss_index = build_faiss_index(vectors, choice, index.manifest["metric"], settings)
        _commit(index.folder, manifest, products, faiss_index, index.skipped, *names, generation=generation)
        if isinstance(index.vectors, MilvusVectors):
            index.vectors.drop()
    return open_index(index.folder, settings)
