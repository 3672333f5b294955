"""Running an embedding model over a catalogue's images in batches, resumable in chunks.

Shared by feature extraction (03) and the ``fused`` recipe, which trains its heads on
features computed once. A fused model takes each photo's colour grid beside it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import keras
import numpy as np

from fashion_search.images import fit_to_square
from fashion_search.io import resumable_chunks
from fashion_search.models.fused import colour_cells_of, takes_colour
from fashion_search.pipeline.input_pipeline import make_dataset
from fashion_search.progress import progress_bar
from fashion_search.colour_grid import HISTOGRAM_DIM, colour_grids
from fashion_search.search.embedding.embedder import load_item


def catalogue_colour_grids(images: np.ndarray, size: int, cells: int,
                           description: str | None = "colour grids", batch_size: int = 64) -> np.ndarray:
    """The colour grid (``cells`` per side) of each catalogue image (pixels or photo paths), framed
    at ``size`` as the search engine frames it, so a vector here equals the engine's for the same
    photo. Computed ``batch_size`` images at a time; progress under ``description`` (None: none shown)."""
    parts = []
    with progress_bar(len(images), description or "", unit="image", disable=description is None) as bar:
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size]
            parts.append(colour_grids([fit_to_square(load_item(image), size) for image in batch], cells))
            bar.update(len(batch))
    return np.concatenate(parts) if parts else np.zeros((0, cells, cells, HISTOGRAM_DIM), np.float32)


def extract_features(model: keras.Model, images: np.ndarray, size: int, preprocess: Callable, batch_size: int,
                     work_dir: str | Path, chunk_size: int = 1024, description: str = "features",
                     flip: bool = False) -> np.ndarray:
    """Run ``model`` over ``images`` in batches (mirrored left-right with ``flip``); chunks
    already in ``work_dir`` are reused. A fused model also gets each image's colour grid."""
    return extract_outputs(model, images, size, preprocess, batch_size, work_dir, chunk_size, description, flip)[0]


def extract_outputs(model: keras.Model, images: np.ndarray, size: int, preprocess: Callable, batch_size: int,
                    work_dir: str | Path, chunk_size: int = 1024, description: str = "features",
                    flip: bool = False, dtypes: tuple[str, ...] = ()) -> list[np.ndarray]:
    """Every output of ``model`` over ``images`` (as :func:`extract_features`), one array per
    output, stored as ``dtypes`` (float32 where not given: float16 halves a feature map's memory)."""
    with progress_bar(len(images), description, unit="image") as bar:
        def compute(start: int, stop: int) -> dict[str, np.ndarray]:
            part = images[start:stop]
            grids = catalogue_colour_grids(part, size, colour_cells_of(model), None) if takes_colour(model) else None
            rows: list[list[np.ndarray]] = []
            done = 0
            for batch in make_dataset(part, size, preprocess, batch_size):
                batch = batch[:, :, ::-1, :] if flip else batch
                inputs = batch if grids is None else [batch, grids[done:done + len(batch)]]
                outputs = model.predict_on_batch(inputs)
                outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
                rows.append([np.asarray(out, dtype=dtypes[i] if i < len(dtypes) else np.float32)
                             for i, out in enumerate(outputs)])
                done += len(batch)
                bar.update(len(batch))
            return {_key(i): np.concatenate([row[i] for row in rows]) for i in range(len(rows[0]))}

        chunks = resumable_chunks(work_dir, len(images), chunk_size, compute)
        bar.update(len(images) - bar.n)
    if not chunks:
        return [np.zeros((0, 0), np.float32)]
    return [np.concatenate([c[_key(i)] for c in chunks]) for i in range(len(chunks[0]))]


def _key(output: int) -> str:
    """The name an output is saved under in a chunk (the first: ``features``, as before)."""
    return "features" if output == 0 else f"output_{output}"
