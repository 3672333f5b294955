"""Is an index folder what was written? Checks of the manifest, its files and their checksums.

Three levels, each cheaper than the next is thorough:

- :func:`check_manifest` (every open): the manifest's seal (a format-2 manifest carries the
  SHA-256 of its own fields), its fields' types and ranges, file names that are plain names in
  the folder and no symbolic links, checksums of the right shape covering every row, and each
  file as large as ``rows`` and ``dim`` say, before anything is allocated;
- :func:`check_finite`, :func:`check_rows_read` and :func:`check_checksums` of whole files
  (every open, on what is read into memory): no NaN or infinity, and the bytes read are the
  bytes written;
- :func:`verify_files` (``fashion-search verify``): every current file against the SHA-256
  recorded when it was written, memory-mapped vectors too, and every vector finite, read a
  chunk at a time.

Append-only files (vectors, colours) are checksummed by segments of rows, so an add hashes only
the rows it appended; adjacent segments are merged (re-hashed) once the older is no longer larger,
which keeps a few dozen segments for any number of adds.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Iterator

import numpy as np

from fashion_search.io import file_sha256
from fashion_search.search.index.generations import ProductIndexError, read_rows

KINDS = ("flat", "hnsw", "ivfpq", "milvus")
METRICS = ("l2", "inner_product")
MAX_DIM = 65_536
SEALED_FROM_FORMAT = 2  # manifests of this format on carry a seal and a checksum for every current file
SHA256 = re.compile(r"[0-9a-f]{64}")
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
    previous = manifest.get("previous_files", {})
    problems.append(("previous_files", isinstance(previous, dict) and all(
        isinstance(n, str) and Path(n).name == n and n not in ("", ".", "..") for n in previous.values())))
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
        if path.is_symlink():
            raise damaged(folder, f"{name} is a symbolic link (the engine writes none, and follows none)")
        if not path.is_file():
            raise damaged(folder, f"{name} is missing")
        if role in row_widths:
            needed_bytes = manifest["rows"] * row_widths[role] * 4
            if path.stat().st_size < needed_bytes:
                raise damaged(folder, f"{name} holds {path.stat().st_size:,} bytes; {manifest['rows']:,} rows need "
                                      f"{needed_bytes:,}")
    check_seal(folder, manifest)
    check_checksum_records(folder, manifest, row_widths)


def seal_of(manifest: dict) -> str:
    """The SHA-256 of a manifest's content without its seal (keys sorted): any change of a field shows."""
    body = {key: value for key, value in manifest.items() if key != "seal"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def sealed(manifest: dict) -> dict:
    """``manifest`` with its seal."""
    return {**manifest, "seal": seal_of(manifest)}


def check_seal(folder: Path, manifest: dict) -> None:
    """Refuse a manifest of a sealed format whose fields changed since it was written."""
    if manifest.get("format", 0) < SEALED_FROM_FORMAT:
        return
    if manifest.get("seal") != seal_of(manifest):
        raise damaged(folder, "manifest.json was changed after it was written (its seal differs)")


def _whole_rows(segments: object, rows: int) -> bool:
    """Segments that are [first, end, sha256] runs covering rows 0..rows exactly, in order."""
    if not isinstance(segments, list):
        return False
    expected = 0
    for segment in segments:
        if not (isinstance(segment, list) and len(segment) == 3 and _is_count(segment[0], expected, expected)
                and _is_count(segment[1], expected + 1, rows) and isinstance(segment[2], str)
                and SHA256.fullmatch(segment[2])):
            return False
        expected = segment[1]
    return expected == rows


def check_checksum_records(folder: Path, manifest: dict, row_widths: dict[str, int]) -> None:
    """Refuse checksums of the wrong shape, row runs that do not cover every row once, and (in a
    sealed format) a current file without a checksum."""
    checksums = manifest.get("checksums", {})
    if not isinstance(checksums, dict):
        raise damaged(folder, "manifest.json: checksums is not an object")
    for role, recorded in checksums.items():
        fine = (_whole_rows(recorded, manifest["rows"]) if role in row_widths
                else isinstance(recorded, str) and SHA256.fullmatch(recorded))
        if role not in manifest["files"] or not fine:
            raise damaged(folder, f"manifest.json: the checksum of {str(role)[:40]} is malformed or does not cover "
                                  "every row")
    if manifest["format"] >= SEALED_FROM_FORMAT:
        unrecorded = sorted(set(manifest["files"]) - set(checksums))
        if unrecorded:
            raise damaged(folder, f"manifest.json records no checksum for {', '.join(unrecorded)}")


def array_sha256(array: np.ndarray) -> str:
    """Hex SHA-256 of an in-memory array's bytes, as they are on disk (no copy for a contiguous array)."""
    return hashlib.sha256(memoryview(np.ascontiguousarray(array)).cast("B")).hexdigest()


def check_rows_read(folder: Path, manifest: dict, role: str, array: np.ndarray) -> None:
    """Compare rows read into memory with the checksums of their runs (no second read from disk)."""
    for first, end, sha in manifest.get("checksums", {}).get(role, []):
        if array_sha256(array[first:end]) != sha:
            raise damaged(folder, f"{manifest['files'][role]}: rows {first:,}–{end:,} differ from the checksum "
                                  "recorded when they were written")


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
                    whole_files_only: bool = False) -> tuple[set[str], int]:
    """Compare files with the checksums recorded when they were written (with
    ``whole_files_only``: the products and faiss files, not the row runs of the append-only ones);
    raises :class:`DamagedIndexError` at the first difference. Returns the files and bytes read."""
    files, checked_bytes = set(), 0
    for name, start, stop, sha in _expected(manifest, row_widths):
        size = (folder / name).stat().st_size if stop is None else stop - start
        if whole_files_only and stop is not None:
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
