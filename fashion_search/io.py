"""Atomic file writes and small JSON helpers shared by every stage.

A file is written to a temporary sibling and renamed into place, so an interrupted job
never leaves a half-written artefact that a later stage would mistake for a finished one. The
file gets the permissions the process's umask gives any new file (``mkstemp`` alone would make
it owner-only, and a colleague could not read the reports, nor another user serve the index).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np


def current_umask() -> int:
    """The process's umask, read without changing it where Linux allows (no window in which
    another thread would create files with a umask of 0)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix="".join(path.suffixes))
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_results(stem: str | Path, data: Any, markdown: str) -> None:
    """A benchmark's results: ``<stem>.json`` (the data) and ``<stem>.md`` (the table people read)."""
    write_json(f"{stem}.json", data)
    write_text_atomic(f"{stem}.md", markdown)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def save_npy(path: str | Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, array)


def file_sha256(path: str | Path, chunk: int = 1 << 20, start: int = 0, stop: int | None = None) -> str:
    """Hex SHA-256 of a file's bytes ``start:stop`` (the whole file by default)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        handle.seek(start)
        left = float("inf") if stop is None else stop - start
        while left > 0 and (block := handle.read(int(min(chunk, left)))):
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


def content_key(image: np.ndarray | str | Path) -> str:
    """What an item's image is, cheaply: a file's path, size and modification time, or the pixels' hash."""
    if isinstance(image, np.ndarray):
        return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()
    try:
        stat = Path(image).stat()
    except OSError:
        return f"{image}|missing"
    return f"{image}|{stat.st_size}|{stat.st_mtime_ns}"


def work_key(*parts: Any, images=()) -> str:
    """A short key for a resumable job's chunk folder: its parts (model, ids...) and the content
    of its images, so chunks of another model, or of an earlier photo under the same id, are
    never reused."""
    digest = hashlib.sha256(json.dumps([parts, [content_key(image) for image in images]], default=str).encode())
    return digest.hexdigest()[:16]


def chunk_bounds(total: int, chunk_size: int) -> list[tuple[int, int]]:
    """``range(total)`` cut into chunks of ``chunk_size``: (start, stop) pairs."""
    return [(start, min(start + chunk_size, total)) for start in range(0, total, chunk_size)]


def chunk_path(work_dir: str | Path, start: int, stop: int) -> Path:
    """Where the chunk of items ``start:stop`` of a resumable job is saved."""
    return Path(work_dir) / f"chunk_{start:010d}_{stop:010d}.npz"


def save_chunk(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Save one chunk's arrays atomically: a killed job leaves a whole chunk or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)


def resumable_chunks(work_dir: str | Path, total: int, chunk_size: int,
                     compute: Callable[[int, int], dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """Run ``compute(start, stop)`` over ``range(total)`` in chunks, saving each chunk's arrays
    to ``work_dir`` as it finishes (atomically); chunks already there are loaded instead, so an
    interrupted job resumes where it stopped. Returns the chunks' arrays in order."""
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    for start, stop in chunk_bounds(total, chunk_size):
        path = chunk_path(work_dir, start, stop)
        if not path.is_file():
            save_chunk(path, compute(start, stop))
    return load_chunks(work_dir, total, chunk_size)


def load_chunks(work_dir: str | Path, total: int, chunk_size: int) -> list[dict[str, np.ndarray]]:
    """Every saved chunk of a finished job over ``range(total)``, in order."""
    chunks = []
    for start, stop in chunk_bounds(total, chunk_size):
        with np.load(chunk_path(work_dir, start, stop)) as saved:
            chunks.append({key: saved[key] for key in saved.files})
    return chunks
