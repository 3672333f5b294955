"""Who holds a Milvus Lite database open: Milvus Lite locks its folder (``LOCK``, flock) for the
one process it serves, and the lock's holders are read from Linux's /proc/locks, so the engine
tells its own process's database from another process's."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path


def named_pids(holders: set[int]) -> str:
    """' (pid 4242)' for a message, or nothing when the holder could not be named (-1)."""
    return f" (pid {', '.join(map(str, sorted(holders)))})" if min(holders) > 0 else ""  # -1: not named


def lock_holders(folder: Path) -> set[int]:
    """The processes holding Milvus Lite's lock on ``folder`` (Linux's /proc/locks; elsewhere, or
    when it cannot be read, an flock test that cannot tell this process from another)."""
    lock = folder / "LOCK"
    if not lock.is_file():
        return set()
    try:
        held = os.stat(lock)
        table = Path("/proc/locks").read_text()
    except OSError:
        return {-1} if _flocked(lock) else set()
    device = f"{os.major(held.st_dev):02x}:{os.minor(held.st_dev):02x}:{held.st_ino}"
    return {int(fields[4]) for fields in (line.split() for line in table.splitlines())
            if len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == device}


def _flocked(lock: Path) -> bool:
    """Whether an exclusive flock on ``lock`` is refused now."""
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False
