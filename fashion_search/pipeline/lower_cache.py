"""The frozen lower blocks of a backbone, run once over the training photos and kept on disk.

Training the top of a backbone on a CPU is affordable only when the lower blocks, most of the
network's cost, are not run again every epoch. :func:`build_lower_cache` runs them over every
photo and over ``copies - 1`` shopper-like views of it (:mod:`fashion_search.data.training_views`),
and keeps their output as float16 in ``maps.npy`` (``(copies, photos, h, w, channels)``) beside
each view's colour grid (``grids.npy``). The arrays are memory-mapped: a cache larger than the
memory trains from disk. Work goes a chunk at a time and a chunk done is recorded, so an
interrupted build resumes; a cache made for other photos or settings is made anew.
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from fashion_search.colour_grid import HISTOGRAM_DIM, colour_grids
from fashion_search.data.training_views import shopper_view
from fashion_search.images import fit_to_square, read_photo
from fashion_search.io import work_key, write_json
from fashion_search.progress import progress_bar

CHUNK = 256          # photos per recorded step
BATCH = 64           # photos per forward pass
SETTINGS = "settings.json"


@dataclass
class LowerCache:
    """The cached lower-block outputs and colour grids, copy 0 of each photo being the photo itself."""

    maps: np.ndarray      # (copies, photos, h, w, channels) float16
    grids: np.ndarray     # (copies, photos, cells, cells, HISTOGRAM_DIM) float16

    @property
    def copies(self) -> int:
        return self.maps.shape[0]

    def __len__(self) -> int:
        return self.maps.shape[1]


def _views(paths: list[Path], rows: range, copy: int, seed: int, size: int, backgrounds: list[np.ndarray]
           ) -> np.ndarray:
    """Copy ``copy`` of the photos ``rows``, framed at ``size``: the photo itself for copy 0."""
    framed = []
    for row in rows:
        pixels = read_photo(paths[row])
        if copy:
            pixels = shopper_view(np.random.default_rng([seed, row, copy]), pixels, backgrounds)
        framed.append(fit_to_square(pixels, size))
    return np.stack(framed)


def _open(folder: Path, settings: dict, maps_shape: tuple, cells: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The cache's arrays and its record of chunks done, created afresh unless ``settings`` match."""
    from numpy.lib.format import open_memmap

    done_path, settings_path = folder / "done.npy", folder / SETTINGS
    same = settings_path.exists() and json.loads(settings_path.read_text()) == settings
    copies, photos = maps_shape[:2]
    chunks = -(-photos // CHUNK)
    if same and done_path.exists():
        return (open_memmap(folder / "maps.npy", mode="r+"), open_memmap(folder / "grids.npy", mode="r+"),
                np.load(done_path))
    ours = ("maps.npy", "grids.npy", "done.npy")
    if not settings_path.is_file() and any((folder / name).exists() for name in ours):
        raise FileExistsError(f"{folder} holds {', '.join(ours)} files that no cache of this trainer wrote "
                              "(no settings.json beside them); choose another --cache folder")
    folder.mkdir(parents=True, exist_ok=True)
    settings_path.unlink(missing_ok=True)
    maps = open_memmap(folder / "maps.npy", mode="w+", dtype=np.float16, shape=maps_shape)
    grids = open_memmap(folder / "grids.npy", mode="w+", dtype=np.float16,
                        shape=(copies, photos, cells, cells, HISTOGRAM_DIM))
    done = np.zeros((copies, chunks), bool)
    np.save(done_path, done)
    write_json(settings_path, settings)
    return maps, grids, done


def build_lower_cache(lower, model_key: str, paths: list[Path], folder: str | Path, copies: int, size: int,
                      cells: int, preprocess: Callable, backgrounds: list[np.ndarray], seed: int,
                      description: str = "lower blocks") -> LowerCache:
    """Run ``lower`` (a Keras model: preprocessed ``(size, size, 3)`` images → a feature map; its
    weights and cut named by ``model_key``) over ``copies`` views of each photo in ``paths`` and keep the
    results in ``folder`` (see the module)."""
    folder = Path(folder)
    out_shape = tuple(int(d) for d in lower.output.shape[1:])
    settings = {"model": model_key, "photos": work_key(images=[str(p) for p in paths]), "copies": copies, "size": size,
                "cells": cells, "seed": seed, "shape": list(out_shape)}
    maps, grids, done = _open(folder, settings, (copies, len(paths), *out_shape), cells)
    todo = [(copy, chunk) for copy in range(copies) for chunk in range(done.shape[1]) if not done[copy, chunk]]

    def prepare(job: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        copy, chunk = job
        rows = range(chunk * CHUNK, min(len(paths), (chunk + 1) * CHUNK))
        images = _views(paths, rows, copy, seed, size, backgrounds)
        return images, colour_grids(list(images), cells)

    total = copies * len(paths)
    with progress_bar(total, description, unit="view") as bar, ThreadPoolExecutor(1) as pool:
        bar.update(total - sum(min(CHUNK, len(paths) - chunk * CHUNK) for _, chunk in todo))
        pending = pool.submit(prepare, todo[0]) if todo else None
        for i, (copy, chunk) in enumerate(todo):
            images, chunk_grids = pending.result()
            pending = pool.submit(prepare, todo[i + 1]) if i + 1 < len(todo) else None
            start = chunk * CHUNK
            grids[copy, start:start + len(images)] = chunk_grids
            for begin in range(0, len(images), BATCH):
                batch = preprocess(images[begin:begin + BATCH].astype(np.float32))
                maps[copy, start + begin:start + begin + len(batch)] = np.asarray(lower.predict_on_batch(batch))
                bar.update(len(batch))
            maps.flush()
            grids.flush()
            done[copy, chunk] = True
            np.save(folder / "done.npy", done)
    return LowerCache(np.load(folder / "maps.npy", mmap_mode="r"), np.load(folder / "grids.npy", mmap_mode="r"))
