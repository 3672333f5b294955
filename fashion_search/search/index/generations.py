"""The index folder's files and how a change replaces them: the lock, append-only vector files,
and generations switched by one atomic rename.

A change writes the next generation's files, then ``manifest.json`` naming them (one atomic
rename). The previous generation's files stay until the change after, so a reader that read
the old manifest a moment before can still open what it names; older ones, files of changes
that never reached the manifest, and temporary files go at the next change, under the lock
(:mod:`.ownership` says which files are the engine's to delete). Rows appended past the
manifest's count are ignored and overwritten by the next change.
"""
from __future__ import annotations

import errno
import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

MANIFEST_FILE = "manifest.json"
LOCK_FILE = ".lock"
UPLOADS_DIR = "uploads"
UPLOAD_GRACE_S = 600  # an upload younger than this may belong to an add in progress in another process


class ProductIndexError(ValueError):
    """An index that is missing, damaged, or asked to do something it cannot."""


class IndexBusyError(ProductIndexError):
    """Another process held the index's change lock for longer than we would wait."""


@contextmanager
def locked(folder: Path, wait_s: float = 0.0) -> Iterator[None]:
    """Hold the index's change lock, waiting up to ``wait_s`` seconds for another process to finish."""
    deadline = time.monotonic() + wait_s
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    except (FileNotFoundError, NotADirectoryError):
        raise ProductIndexError(f"no index in {folder}") from None
    except OSError as err:
        if err.errno != errno.ELOOP:
            raise
        raise ProductIndexError(f"{folder / LOCK_FILE} is a symbolic link; the engine follows none: remove it") from None
    with os.fdopen(fd, "rb") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise IndexBusyError(f"another process is changing the index in {folder}; try again when it "
                                         "has finished") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def generation_files(generation: int, vectors: str, colours: str) -> dict:
    """The files one generation names (vector files are shared until a compaction rewrites them)."""
    return {"vectors": vectors, "colours": colours, "products": f"products-{generation:06d}.csv",
            "faiss": f"faiss-{generation:06d}.faiss"}


def append_rows(path: Path, rows_before: int, row_bytes: int, array: np.ndarray) -> None:
    """Append ``array``'s rows after the first ``rows_before`` rows of a raw float32 file,
    dropping whatever an interrupted change left beyond them; flushed to disk."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)  # a symbolic link is refused, not followed
    with os.fdopen(fd, "r+b") as handle:
        handle.truncate(rows_before * row_bytes)
        handle.seek(0, os.SEEK_END)
        handle.write(np.ascontiguousarray(array, np.float32).tobytes())
        handle.flush()
        os.fsync(handle.fileno())


def read_rows(path: Path, rows: int, width: int, in_memory: bool) -> np.ndarray:
    """The first ``rows`` rows of a raw float32 file (a read-only memory map unless ``in_memory``)."""
    if rows == 0:
        return np.zeros((0, width), np.float32)
    if in_memory:
        return np.fromfile(path, np.float32, count=rows * width).reshape(rows, width)
    return np.memmap(path, np.float32, "r", shape=(rows, width))


def is_disk_error(err: OSError) -> bool:
    """A full or read-only disk, or one we may not write: the index stays as it was."""
    return err.errno in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT)
