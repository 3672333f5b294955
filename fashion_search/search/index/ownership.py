"""Which files of an index folder are the engine's, and the only ones it deletes or rewrites.

The engine writes an index only into a folder that is new, empty, or already one of its indexes
(:func:`claim_folder`). Before it creates a file there it records the name in the ledger
``owned-files.json`` (:func:`claim`, under the change lock), so a crash leaves nothing it cannot
recognise as its own; it deletes only recorded names (:func:`remove_owned`), never through a
symbolic link, never a folder it did not make. A user's file in the folder, whatever its name, is
never touched, with one exception: the temporary sibling ``.<name>.tmp`` of a file the engine
owns is the engine's too (it writes there before the rename, and removes one a crash left). The
ledger also remembers the last generation committed, so a ``manifest.json`` put back from an
older copy is recognised (:func:`.index_folder.check_not_rolled_back`).

An index written before the ledger existed (format 1) owns the files its manifest names; its next
change writes the ledger.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from fashion_search.search.index import generations
from fashion_search.search.index.generations import LOCK_FILE, MANIFEST_FILE, UPLOADS_DIR, ProductIndexError

LEDGER_FILE = "owned-files.json"
WORK_DIR = "work"
LITE_DIR = "milvus.db"  # Milvus Lite's database: a folder whose content is Milvus's own
BOOKKEEPING = (MANIFEST_FILE, LOCK_FILE, LEDGER_FILE)
WHOLE_FOLDERS = (WORK_DIR, LITE_DIR)  # owned folders deleted with their content; others only when empty


@dataclass
class Ledger:
    """The names (relative to the folder) the engine created there, and the last generation committed."""

    names: set[str] = field(default_factory=set)
    generation: int = 0


def valid_name(name: str) -> bool:
    """A name the engine may own: a plain file name in the folder, or one in ``uploads/``."""
    parts = name.split("/")
    plain = all(p not in ("", ".", "..") and "\\" not in p and "\0" not in p for p in parts)
    return plain and (len(parts) == 1 or (len(parts) == 2 and parts[0] == UPLOADS_DIR))


def temp_name(name: str) -> str:
    """The temporary sibling an owned file is written to before it is renamed into place."""
    parent, _, base = name.rpartition("/")
    return f"{parent + '/' if parent else ''}.{base}.tmp"


def is_plain(path: Path) -> bool:
    """A regular file or folder reached without a symbolic link (the last component is checked)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    return stat.S_ISREG(mode) or stat.S_ISDIR(mode)


def read_ledger(folder: Path) -> Ledger | None:
    """The folder's ledger; None when it has none (a folder that is no index, or a format-1 index)."""
    path = folder / LEDGER_FILE
    if not path.exists() and not path.is_symlink():
        return None
    try:
        if not is_plain(path):
            raise ValueError("not a regular file")
        data = json.loads(path.read_text())
        names, generation = data["names"], data["generation"]
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names) and isinstance(generation, int)):
            raise ValueError("names or generation of the wrong type")
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as err:
        raise ProductIndexError(f"the index in {folder} is damaged ({LEDGER_FILE}: {str(err)[:120]}); rebuild it "
                                "with 'fashion-search index --overwrite' (files it does not name are kept)") from None
    return Ledger({n for n in names if valid_name(n)}, generation)  # a forged name outside the folder: ignored


def write_ledger(folder: Path, ledger: Ledger) -> None:
    """Replace the ledger atomically (call under the change lock)."""
    write_owned(folder, LEDGER_FILE, json.dumps({"names": sorted(ledger.names), "generation": ledger.generation},
                                                indent=1).encode())


def write_owned(folder: Path, name: str, data: bytes) -> None:
    """Write ``data`` to an owned file atomically, through its recorded temporary sibling, never
    through a symbolic link (one at the temporary name is replaced, not followed)."""
    tmp = folder / temp_name(name)
    if tmp.is_symlink():
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, folder / name)
    finally:
        if tmp.exists():
            tmp.unlink()


def claim(folder: Path, names: list[str], ledger: Ledger | None = None) -> Ledger:
    """Record ``names`` as the engine's before creating them (call under the change lock). A name
    already taken by a file the engine did not write is refused: it is the user's."""
    ledger = ledger or read_ledger(folder) or Ledger()
    assert all(valid_name(n) for n in names), names
    new = [n for n in names if n not in ledger.names]
    foreign = [n for n in new if os.path.lexists(folder / n)]
    if foreign:
        raise ProductIndexError(f"{folder / foreign[0]} is not a file fashion-search wrote; it will not overwrite "
                                "it: move it out of the index folder")
    if new:
        ledger.names |= set(new)
        write_ledger(folder, ledger)
    return ledger


def is_index_folder(folder: Path) -> bool:
    """Whether ``folder`` is one of the engine's index folders (with a ledger, or a format-1 manifest)."""
    if (folder / LEDGER_FILE).is_file():
        return True
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == 1 and isinstance(manifest.get("files"), dict)


def claim_folder(folder: Path) -> None:
    """Make ``folder`` an index folder: create it, or adopt it when empty; one of the engine's
    own (an index, or a build that was interrupted) is left as it is. Refuses any other folder."""
    if folder.is_symlink() and not folder.is_dir():
        raise ProductIndexError(f"{folder} is a symbolic link to nothing; give a folder for the index")
    if folder.exists() and not folder.is_dir():
        raise ProductIndexError(f"{folder} is a file, not a folder; give a new or empty folder for the index")
    if folder.is_dir() and is_index_folder(folder):
        return
    if folder.is_dir():
        others = sorted(p.name for p in folder.iterdir() if p.name != temp_name(LEDGER_FILE))
        if others:
            shown = ", ".join(others[:3]) + (" …" if len(others) > 3 else "")
            raise ProductIndexError(f"{folder} is not empty and holds no index ({shown}); fashion-search writes an "
                                    "index only into a new or empty folder: give another --index")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ProductIndexError(f"{folder} cannot be made: a file stands where one of its folders would be") from None
    write_ledger(folder, Ledger({WORK_DIR}))  # the resumable embedding's folder, made when a job starts


def remove_owned(folder: Path, names: set[str]) -> set[str]:
    """Delete the given owned names that are still plain files or folders: a folder only when
    empty, except Milvus Lite's database and ``work/`` (whose content is the engine's), which go
    whole. Symbolic links, at the name or on the way to it, and names outside the folder are left
    alone. Returns the names gone (deleted or already missing)."""
    gone = set()
    for name in sorted(names, key=lambda n: -n.count("/")):  # a folder's files before the folder
        path = folder / name
        if not valid_name(name) or not all(is_plain(p) for p in _parents(folder, name)):
            continue
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            gone.add(name)
            continue
        try:
            if stat.S_ISREG(mode):
                path.unlink()
            elif stat.S_ISDIR(mode) and name in WHOLE_FOLDERS:
                shutil.rmtree(path)  # rmtree never follows a link inside
            elif stat.S_ISDIR(mode):
                path.rmdir()
            else:
                continue
        except OSError:
            continue  # a folder a user put files in: it stays
        gone.add(name)
    return gone


def debris(folder: Path, ledger: Ledger, in_use: set[str]) -> list[str]:
    """The engine's files no generation uses: older generations, files of changes that never
    reached the manifest, temporary files, and uploads no live product shows once older than
    ``generations.UPLOAD_GRACE_S`` (another process's add may be about to show them). Call under the lock."""
    candidates = ledger.names | {temp_name(n) for n in ledger.names | set(BOOKKEEPING)}
    old = time.time() - generations.UPLOAD_GRACE_S
    found = []
    for name in sorted(candidates - in_use - set(BOOKKEEPING)):
        try:
            info = os.lstat(folder / name)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if name.startswith(f"{UPLOADS_DIR}/") and info.st_mtime >= old:
            continue
        found.append(name)
    return found


def _parents(folder: Path, name: str) -> list[Path]:
    parts = name.split("/")[:-1]
    return [folder.joinpath(*parts[:i + 1]) for i in range(len(parts))]


def owned_subfolder(folder: Path, name: str, ledger: Ledger) -> Path:
    """An owned subfolder (``work``, ``uploads``), recorded and made if missing; one that is a
    symbolic link or not a folder is refused (call under the change lock)."""
    path = folder / name
    if path.is_symlink() or (os.path.lexists(path) and not path.is_dir()):
        raise ProductIndexError(f"{path} is not a folder fashion-search made (it is a symbolic link or a file); it "
                                "will not write there: move it out of the index folder")
    if name not in ledger.names and not path.exists():
        claim(folder, [name], ledger)
    path.mkdir(exist_ok=True)
    return path
