"""Is an index folder what was written? Checks of the manifest, its files and their checksums.

Three levels, each cheaper than the next is thorough:

- :func:`check_manifest` (every open): the manifest's fields have their types and ranges, the
  file names are plain names in the folder, and each file is as large as ``rows`` and ``dim``
  say, before anything is allocated;
- :func:`check_finite` (every open, on what is read into memory): no NaN or infinity in vectors
  or colours;
- :func:`verify_files` (``fashion-search verify``): every current file against the SHA-256
  recorded when it was written, and every vector finite, read a chunk at a time.

Append-only files (vectors, colours) are checksummed by segments of rows, so an add hashes only
the rows it appended; adjacent segments are merged (re-hashed) once the older is no longer larger,
which keeps a few dozen segments for any number of adds.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from fashion_search.io import file_sha256
from fashion_search.search.generations import ProductIndexError, read_rows

KINDS = ("flat", "hnsw", "ivfpq", "milvus")
METRICS = ("l2", "inner_product")
MAX_DIM = 65_536
Segment = list  # [first_row, end_row, sha256 hex]


class DamagedIndexError(ProductIndexError):
    """An index whose files are not what was written: rebuild it (HTTP 503). ``what`` says what
    is wrong without the folder's path (which the HTTP service does not show)."""

    def __init__(self, message: str, what: str):
        super().__init__(message)
        self.what = what


def damaged(folder: Path, what: str) -> DamagedIndexError:
    return DamagedIndexError(f"the index in {folder} is damaged ({what}); rebuild it", what)


def extend_segments(segments: list[Segment], path: Path, row_bytes: int, rows_before: int,
                    rows_after: int) -> list[Segment]:
    """The segment checksums of an append-only file after rows ``rows_before:rows_after`` were
    written (segments past ``rows_before`` are dropped, as the rows they covered were)."""
    kept = [list(s) for s in segments if s[1] <= rows_before]
    if rows_after > rows_before:
        appended = file_sha256(path, start=rows_before * row_bytes, stop=rows_after * row_bytes)
        kept.append([rows_before, rows_after, appended])
    while len(kept) >= 2 and kept[-2][1] - kept[-2][0] <= kept[-1][1] - kept[-1][0]:
        first, end = kept[-2][0], kept[-1][1]
        kept[-2:] = [[first, end, file_sha256(path, start=first * row_bytes, stop=end * row_bytes)]]
    return kept


def _is_count(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def check_manifest(folder: Path, manifest: object, row_widths: dict[str, int]) -> None:
    """Refuse a manifest whose fields are missing, of the wrong type or out of range, that names
    files outside the folder, or whose files are smaller than its ``rows`` say; ``row_widths``:
    float32 values a row takes in each append-only file (``vectors``: the manifest's ``dim``)."""
    if not isinstance(manifest, dict):
        raise damaged(folder, "manifest.json is not a JSON object")
    model, files = manifest.get("model"), manifest.get("files")
    problems = [
        ("rows", _is_count(manifest.get("rows"), 0, 2**40)), ("dim", _is_count(manifest.get("dim"), 1, MAX_DIM)),
        ("generation", _is_count(manifest.get("generation"), 1, 2**40)), ("kind", manifest.get("kind") in KINDS),
        ("metric", manifest.get("metric") in METRICS), ("model", isinstance(model, dict)),
        ("files", isinstance(files, dict) and all(isinstance(n, str) for n in files.values())),
    ]
    wrong = [name for name, fine in problems if not fine]
    if wrong:
        raise damaged(folder, f"manifest.json: {', '.join(wrong)} missing or out of range")
    if model.get("dim", manifest["dim"]) != manifest["dim"]:
        raise damaged(folder, f"manifest.json: dim {manifest['dim']} but the model writes {model.get('dim')}-d vectors")
    needed = ("vectors", "colours", "products") + (() if manifest.get("backend") == "milvus" else ("faiss",))
    missing = [role for role in needed if role not in files]
    if missing:
        raise damaged(folder, f"manifest.json names no {' or '.join(missing)} file")
    for role, name in files.items():
        if Path(name).name != name or name in ("", ".", ".."):
            raise damaged(folder, f"manifest.json: the {role} file '{name[:80]}' is not a file name in the folder")
        path = folder / name
        if not path.is_file():
            raise damaged(folder, f"{name} is missing")
        if role in row_widths:
            needed_bytes = manifest["rows"] * row_widths[role] * 4
            if path.stat().st_size < needed_bytes:
                raise damaged(folder, f"{name} holds {path.stat().st_size:,} bytes; {manifest['rows']:,} rows need "
                                      f"{needed_bytes:,}")


def non_finite_rows(array: np.ndarray, chunk: int = 4096) -> int:
    """How many rows of a float32 matrix (or memory map) hold a NaN or an infinity."""
    return sum(int((~np.isfinite(np.asarray(array[start:start + chunk])).all(axis=1)).sum())
               for start in range(0, len(array), chunk))


def check_finite(folder: Path, name: str, array: np.ndarray) -> None:
    """Refuse vectors or colours holding NaN or infinity (damage: the engine writes none)."""
    bad = non_finite_rows(array)
    if bad:
        raise damaged(folder, f"{name}: {bad:,} rows hold NaN or infinite values")


def _expected(manifest: dict, row_widths: dict[str, int]) -> Iterator[tuple[str, int, int | None, str]]:
    """(file, first byte, end byte or None for the whole file, sha256) of every checksum the
    manifest records for its current files."""
    for role, recorded in manifest.get("checksums", {}).items():
        name = manifest["files"].get(role)
        if name is None:
            continue
        if isinstance(recorded, str):
            yield name, 0, None, recorded
        else:
            row_bytes = row_widths[role] * 4
            for first, end, sha in recorded:
                yield name, first * row_bytes, end * row_bytes, sha


def check_checksums(folder: Path, manifest: dict, row_widths: dict[str, int],
                    whole_files_up_to: int | None = None) -> tuple[set[str], int]:
    """Compare files with the checksums recorded when they were written (with
    ``whole_files_up_to``: only whole files of at most that many bytes, the check of an open);
    raises :class:`DamagedIndexError` at the first difference. Returns the files and bytes read."""
    files, checked_bytes = set(), 0
    for name, start, stop, sha in _expected(manifest, row_widths):
        size = (folder / name).stat().st_size if stop is None else stop - start
        if whole_files_up_to is not None and (stop is not None or size > whole_files_up_to):
            continue
        if file_sha256(folder / name, start=start, stop=stop) != sha:
            raise damaged(folder, f"{name}: its checksum differs from the one recorded when it was written")
        files.add(name)
        checked_bytes += size
    return files, checked_bytes


def verify_files(folder: Path, manifest: dict, row_widths: dict[str, int]) -> dict:
    """Every checksum the manifest records, and finite vectors and colours; raises
    :class:`DamagedIndexError` at the first difference. Returns what was checked."""
    for role, width in row_widths.items():
        name = manifest["files"][role]
        check_finite(folder, name, read_rows(folder / name, manifest["rows"], width, in_memory=False))
    files, checked_bytes = check_checksums(folder, manifest, row_widths)
    return {"files": sorted(files), "bytes": checked_bytes, "rows": manifest["rows"],
            "unrecorded": sorted(set(manifest["files"]) - set(manifest.get("checksums", {})))}
