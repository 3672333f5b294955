"""An index folder's bookkeeping: which manifest is current (and not an older one put back),
which of its files the engine owns and uses, and the subfolders it writes (``work/`` for
resumable embedding, ``uploads/`` for photos added over HTTP). :mod:`.ownership` keeps the
ledger; :mod:`.store` changes the index with these."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from fashion_search.params import IndexParams
from fashion_search.search.index.generations import MANIFEST_FILE, UPLOADS_DIR, ProductIndexError, generation_files, locked
from fashion_search.search.index.integrity import damaged
from fashion_search.search.index.milvus_index import LITE_FILE
from fashion_search.search.index.ownership import (WORK_DIR, Ledger, claim, claim_folder, debris, owned_subfolder,
                                             read_ledger, remove_owned, temp_name, valid_name, write_ledger,
                                             write_owned)

SKIPPED_FILE = "skipped.csv"
FORMAT_VERSION = 2  # 1: no seal, no ledger (read, and upgraded by the next change)
READABLE_FORMATS = (1, 2)


def refuse_existing(folder: Path) -> None:
    """Raise if ``folder`` already holds an index (a new one would silently replace it)."""
    if (folder / MANIFEST_FILE).is_file():
        raise ProductIndexError(f"{folder} already holds an index; add to it with 'fashion-search add', "
                                "or rebuild it with 'fashion-search index --overwrite'")


def release_index(folder: Path, settings: IndexParams) -> None:
    """``index --overwrite``: delete the files of the index in ``folder``, those its ledger records
    (or, without a readable ledger, the plain file names its manifest gives), but not the
    embedding work in progress; other files stay. A folder that is not an index (and not empty)
    is refused."""
    claim_folder(folder)
    with locked(folder, settings.lock_wait_s):
        try:
            ledger = read_ledger(folder)
        except ProductIndexError:
            ledger = None  # damaged: the manifest says what is ours, as for an index from before ledgers
        if ledger is None:
            ledger = index_ledger(folder, _manifest_if_any(folder), ignore_ledger=True)
        write_ledger(folder, Ledger(ledger.names, 0))  # first: a new index starts again at generation 1
        names = (ledger.names | {MANIFEST_FILE}) - {WORK_DIR}
        gone = remove_owned(folder, names | {temp_name(name) for name in names})
        write_ledger(folder, Ledger(ledger.names - gone, 0))


def work_folder(folder: Path, settings: IndexParams) -> Path:
    """The index's folder of resumable embedding work (``work/``), made if missing. Embedding
    starts without waiting for another process's change: the lock is taken only once, when the
    name must be recorded (an index made before ledgers)."""
    try:
        ledger = read_ledger(folder)
    except ProductIndexError:
        ledger = None  # damaged (an --overwrite mends it): rebuilt from the manifest below
    if ledger is not None and WORK_DIR in ledger.names:
        return owned_subfolder(folder, WORK_DIR, ledger)  # recorded: nothing to write but the folder
    with locked(folder, settings.lock_wait_s):
        return owned_subfolder(folder, WORK_DIR, index_ledger(folder, _manifest_if_any(folder), ignore_ledger=True)
                               if ledger is None else ledger)


def drop_work(chunks: Path) -> None:
    """Delete one finished job's chunks (a folder under ``work/`` that the job made, never through
    a symbolic link), and ``work/`` itself once empty."""
    if chunks.is_dir() and not chunks.is_symlink() and not chunks.parent.is_symlink():
        shutil.rmtree(chunks, ignore_errors=True)
    ledger = read_ledger(chunks.parent.parent)
    if ledger is not None and WORK_DIR in ledger.names:  # made by the engine, not a folder of the user's
        try:
            chunks.parent.rmdir()
        except OSError:
            pass  # another job's chunks are there, or it has gone


def _manifest_if_any(folder: Path) -> dict:
    """The manifest, or {} when there is none or it cannot be read."""
    try:
        return read_manifest(folder) if (folder / MANIFEST_FILE).is_file() else {}
    except ProductIndexError:
        return {}


def save_upload(folder: Path, name: str, data: bytes, settings: IndexParams) -> Path:
    """Store a photo added over HTTP in ``uploads/``, recorded as the engine's before it is written."""
    with locked(folder, settings.lock_wait_s):
        ledger = index_ledger(folder, _manifest_if_any(folder))
        owned_subfolder(folder, UPLOADS_DIR, ledger)
        claim(folder, [f"{UPLOADS_DIR}/{name}"], ledger)
        write_owned(folder, f"{UPLOADS_DIR}/{name}", data)
    return (folder / UPLOADS_DIR / name).resolve()  # the same path whatever the working folder


def in_use(manifest: dict, products: pd.DataFrame | None = None) -> set[str]:
    """The names of the folder a generation needs: its files and the previous generation's, the
    skipped list, the work and uploads folders, the Milvus Lite database, live uploads."""
    names = set(manifest_names(manifest)) | {SKIPPED_FILE, WORK_DIR, UPLOADS_DIR, LITE_FILE}
    if products is not None and len(products):
        paths = products["path"].astype(str)[~products["deleted"].to_numpy(bool)]
        names |= {f"{UPLOADS_DIR}/{Path(p).name}" for p in map(str, paths) if Path(p).parent.name == UPLOADS_DIR}
    return names


def manifest_names(manifest: dict) -> list[str]:
    """The plain file names a manifest gives for this generation and the previous one (anything
    else in a damaged or forged manifest is ignored)."""
    groups = [manifest.get(key) for key in ("files", "previous_files")]
    return [n for g in groups if isinstance(g, dict) for n in g.values() if isinstance(n, str) and valid_name(n)]


def index_ledger(folder: Path, manifest: dict, products: pd.DataFrame | None = None,
                 ignore_ledger: bool = False) -> Ledger:
    """The folder's ledger; for an index written before ledgers (format 1), the files its manifest
    names, its skipped list, its own Milvus Lite database and the uploads its products show,
    which are the engine's."""
    ledger = None if ignore_ledger else read_ledger(folder)
    if ledger is not None:
        return ledger
    names = set(manifest_names(manifest)) | {SKIPPED_FILE}
    if manifest.get("backend") == "milvus" and Path(str(manifest.get("milvus", {}).get("uri"))).name == LITE_FILE:
        names.add(LITE_FILE)
    if products is not None:
        names |= in_use({}, products) - {SKIPPED_FILE, WORK_DIR, UPLOADS_DIR, LITE_FILE}
    generation = manifest.get("generation", 0)
    return Ledger({n for n in names if os.path.lexists(folder / n)}, generation if isinstance(generation, int) else 0)


def free_generation(folder: Path, manifest: dict,
                    names_of: Callable[[int], Iterable[str]] = lambda g: generation_files(g, "", "").values()) -> int:
    """The next generation whose file names no file of the user's takes (such a file is skipped over,
    never overwritten)."""
    ledger = index_ledger(folder, manifest)
    generation = manifest.get("generation", 0) + 1
    while any(n and n not in ledger.names and os.path.lexists(folder / n) for n in names_of(generation)):
        generation += 1
    return generation


def compaction_files(generation: int) -> list[str]:
    """The files a compaction writes: new vector files, and its generation's products and faiss files."""
    return [f"vectors-{generation:06d}.f32", f"colours-{generation:06d}.f32",
            *generation_files(generation, "", "").values()]


def read_manifest(folder: Path) -> dict:
    """The current manifest, checked for this version's format (a damaged one is said so)."""
    if not (folder / MANIFEST_FILE).is_file():
        raise ProductIndexError(f"no index in {folder}; build one with 'fashion-search index <catalogue> "
                                f"--index {folder}'")
    if (folder / MANIFEST_FILE).is_symlink():
        raise damaged(folder, f"{MANIFEST_FILE} is a symbolic link (the engine writes none, and follows none)")
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text(), object_pairs_hook=_no_repeated_keys)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        what = str(err) if isinstance(err, RepeatedKeyError) else "is not valid JSON"
        raise damaged(folder, f"{MANIFEST_FILE} {what}") from None
    if not isinstance(manifest, dict):
        raise damaged(folder, f"{MANIFEST_FILE} is not a JSON object")
    if manifest.get("format") not in READABLE_FORMATS:
        raise ProductIndexError(f"the index in {folder} has format {str(manifest.get('format'))[:20]}; this version "
                                f"reads formats {' and '.join(map(str, READABLE_FORMATS))}: rebuild it")
    return manifest


class RepeatedKeyError(ValueError):
    """A JSON object naming one key twice (which value counts would depend on the reader)."""


def _no_repeated_keys(pairs: list[tuple[str, object]]) -> dict:
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise RepeatedKeyError(f"names {repeated[0][:40]!r} twice")
    return dict(pairs)


def check_not_rolled_back(folder: Path, manifest: dict) -> None:
    """Refuse a current manifest older than the last generation the ledger saw committed (an older
    copy put back); a change that switched both meanwhile is told apart by reading the manifest again."""
    generation = manifest.get("generation")
    if not isinstance(generation, int):
        return  # the manifest's own checks say what is wrong with it
    ledger = read_ledger(folder)
    again = read_manifest(folder).get("generation") if ledger is not None and ledger.generation > generation else None
    if isinstance(again, int) and ledger.generation > again:
        raise damaged(folder, f"{MANIFEST_FILE} is generation {manifest['generation']}, but generation "
                              f"{ledger.generation} was committed: an older manifest was put back")


def positional(value: float) -> str:
    """A float as a plain decimal (``0.00001``, not ``1e-05``), which reads back as a number."""
    return np.format_float_positional(value, trim="-")


def write_manifest(folder: Path, manifest: dict) -> None:
    """Switch the index to the generation ``manifest`` names (one atomic rename)."""
    write_owned(folder, MANIFEST_FILE, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())


def remove_debris(folder: Path, manifest: dict, products: pd.DataFrame, ledger: Ledger, generation: int) -> None:
    """After a commit: delete the engine's files no generation uses, forget the names gone, and
    record the generation committed."""
    needed = in_use(manifest, products)
    gone = remove_owned(folder, set(debris(folder, ledger, needed)))
    missing = {name for name in ledger.names - needed if not os.path.lexists(folder / name)}
    write_ledger(folder, Ledger(ledger.names - gone - missing, generation))
