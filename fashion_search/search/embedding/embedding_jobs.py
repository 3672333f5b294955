"""Embedding a catalogue for an index, as one resumable job: photos in, the index's rows out
(the usable items with their vectors and colours), and every photo skipped with its reason.
``index`` builds a new index from such a job, ``add`` adds one to an index."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fashion_search.data.catalog import Catalog, drop_unsafe_ids, spreadsheet_safe
from fashion_search.io import work_key
from fashion_search.params import IndexParams
from fashion_search.search.embedding.embedder import Embedder, embed_catalog


@dataclass
class Added:
    """What one add did: photos added, of which new products and replaced ones, and those skipped."""

    photos: int
    new_products: int
    replaced: int
    skipped: pd.DataFrame


@dataclass
class Embedded:
    """A catalogue ready for the index: the usable items, their vectors and colours, every skipped
    photo with its reason, and the folder of saved chunks (to drop once the index holds them)."""

    items: pd.DataFrame
    vectors: np.ndarray
    colours: np.ndarray
    skipped: pd.DataFrame
    chunks: Path


def embed_into_items(embedder: Embedder, catalog: Catalog, work_dir: Path, settings: IndexParams,
                     description: str) -> Embedded:
    """Embed a catalogue, resumable in a folder under ``work_dir`` keyed by the model and the
    photos' content, in this process or on Ray (``settings.executor``); ids the service could
    not serve are skipped with the reason. The skipped list's cells are spreadsheet-safe (see
    :func:`~fashion_search.data.catalog.spreadsheet_safe`), as skipped.csv is opened in one."""
    catalog = drop_unsafe_ids(catalog)
    ids = catalog.items["id"].astype(str).tolist()
    chunks = work_dir / work_key(embedder.identity, ids, images=catalog.images)
    on_ray = settings.executor == "ray" and len(ids) >= settings.ray_min_photos
    if settings.executor == "ray" and not on_ray:
        print(f"{len(ids):,} photos: embedded in this process, not on Ray (a job pays for Ray's start from "
              f"index.ray_min_photos = {settings.ray_min_photos:,} photos)", file=sys.stderr, flush=True)
    if on_ray:
        from fashion_search.search.embedding.ray_embedding import embed_catalog_on_ray  # Ray only when asked for

        done = embed_catalog_on_ray(embedder, catalog.images, chunks, settings, description)
    else:
        done = embed_catalog(embedder, ids, catalog.images, chunks, settings.chunk_size, settings.batch_size,
                             description, settings.max_image_pixels)
    items = catalog.items.drop(columns=[c for c in ("label", "split") if c in catalog.items.columns])
    if "path" not in items.columns:
        items.insert(1, "path", "")
    bad = ~done.usable
    skipped = pd.DataFrame({"id": items["id"][bad].tolist(), "path": items["path"][bad].astype(str).tolist(),
                            "reason": [r for r in done.reasons if r is not None]})
    skipped = pd.concat([catalog.skipped.astype(str), skipped], ignore_index=True) if len(catalog.skipped) else skipped
    return Embedded(items[done.usable].reset_index(drop=True), done.vectors, done.colours, spreadsheet_safe(skipped),
                    chunks)
