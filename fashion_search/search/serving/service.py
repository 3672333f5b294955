"""The HTTP service's state: the engine with batched model calls, a fresh snapshot per read,
one writer at a time, bounded decoding of uploads, and request counters."""
from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

import numpy as np
from fastapi import HTTPException, UploadFile

from fashion_search.data.catalog import SAFE_ID_RULE, is_safe_id
from fashion_search.images import UnusableImageError, decode_photo_and_size
from fashion_search.search.engine import SearchEngine

DECODES_AT_ONCE = 2  # full-size uploads decoded at once (each may be 16 Mpx)
T = TypeVar("T")
_LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if sys.platform.startswith("linux") else None
M_MMAP_THRESHOLD = -3        # glibc's mallopt parameter
MMAP_THRESHOLD = 256 * 2**10  # blocks this large are mapped and unmapped, never kept in a thread's arena


def map_large_blocks() -> None:
    """Have glibc map every block over :data:`MMAP_THRESHOLD` on its own, so a decode's strips and
    copies go back to the system when freed (by default the threshold grows with the largest
    block freed, and the server's request threads keep tens of MiB each in their arenas)."""
    if _LIBC is not None:
        _LIBC.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def release_freed_memory() -> None:
    """Hand memory freed after a large decode back to the system (glibc keeps it per thread
    otherwise, and a server's resident size creeps up under large uploads)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


class Service:
    """The engine with its model calls batched, snapshots for readers, a lock for writers, and
    request counters for ``/stats``."""

    def __init__(self, engine: SearchEngine, api_key: str | None, max_upload_bytes: int, max_upload_pixels: int,
                 max_batch: int, max_wait_s: float):
        map_large_blocks()
        self.runtime = engine.embedder.ready()  # converted or traced now, not on the first request
        engine.garment_finder.ready()  # and so is the garment localiser
        self.batcher = engine.batch_model_calls(max_batch, max_wait_s)
        self.engine, self.api_key = engine, api_key
        self.max_upload_bytes = max_upload_bytes
        self.max_upload_pixels = min(max_upload_pixels, engine.settings.max_image_pixels)
        self.refresh_lock = threading.Lock()
        self.write_lock = threading.Lock()
        self.decode_slots = threading.BoundedSemaphore(DECODES_AT_ONCE)
        self.started = time.time()
        self.counts: dict[str, int] = {}
        self.counts_lock = threading.Lock()

    def current(self) -> SearchEngine:
        """A snapshot of the engine for one request, with changes other processes made picked up;
        a write meanwhile does not change what this request sees."""
        with self.refresh_lock:
            self.engine.refresh()
            return self.engine.snapshot()

    @contextmanager
    def writing(self) -> Iterator[SearchEngine]:
        """The engine itself, for one write at a time (searches go on meanwhile)."""
        with self.write_lock:
            with self.refresh_lock:
                self.engine.refresh()
            yield self.engine

    def count(self, name: str) -> None:
        with self.counts_lock:
            self.counts[name] = self.counts.get(name, 0) + 1

    @staticmethod
    def upload_name(upload: UploadFile) -> str:
        """The uploaded file's name for a message (printable, short), or ``the upload``."""
        name = "".join(c for c in (upload.filename or "") if c.isprintable())[:80]
        return name or "the upload"

    def read_upload(self, upload: UploadFile, reduce: Callable[[np.ndarray, tuple[int, int]], T]) -> T:
        """``reduce`` of the upload's pixels and its own size (width, height; larger than the pixels'
        when a large JPEG was decoded reduced), computed within a decode slot so that at most
        :data:`DECODES_AT_ONCE` full-size photos are in memory; 413 when too large, 415 when
        not a readable image or over the pixel budget."""
        data = upload.file.read(self.max_upload_bytes + 1)
        if len(data) > self.max_upload_bytes:
            raise HTTPException(413, f"{self.upload_name(upload)} is larger than {self.max_upload_bytes:,} bytes")
        with self.decode_slots:
            try:
                pixels, size = decode_photo_and_size(data, self.max_upload_pixels)
            except UnusableImageError as err:
                raise HTTPException(415, f"{self.upload_name(upload)} is {err}") from None
            reduced = reduce(pixels, size)
            del pixels
            release_freed_memory()
            return reduced

    @staticmethod
    def row_of(engine: SearchEngine, item_id: str) -> int:
        """The live row of a product id; 400 for a malformed id, 404 for an unknown one."""
        if not is_safe_id(item_id):
            raise HTTPException(400, f"malformed id: {SAFE_ID_RULE} characters")
        rows = np.flatnonzero((engine.index.products["id"].to_numpy(str) == item_id) & engine.index.live)
        if len(rows) == 0:
            raise HTTPException(404, f"no product '{item_id}'")
        return int(rows[0])
