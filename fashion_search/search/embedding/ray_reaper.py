"""The reaper of a Ray that a process starts on this machine (``index --ray`` with no address).

Ray kills its GCS and raylet with the process that started them, but the agents and workers the
raylet started outlive a killed driver by a minute or more (about 100 MB each), trying to report
to the dead GCS. The reaper is a small process started beside such a Ray, in a session of its own:
it waits for its owner to end (its stdin closes however the owner ends, SIGKILL included), then
kills every process of this user that holds a file open in one of the owner's Ray session folders
(``<ray temp dir>/session_<date>_<owner pid>/``: all of Ray's processes keep their logs there).
Linux only (it reads /proc); elsewhere it does nothing. Run as a script, it imports nothing but
the standard library.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

PROC = "/proc"


def start_reaper() -> subprocess.Popen:
    """Start the reaper of the Ray this process is about to start (see :func:`stop_reaper`)."""
    return subprocess.Popen([sys.executable, "-I", os.path.abspath(__file__), str(os.getpid())],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def stop_reaper(reaper: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """Once Ray is shut down: let the reaper kill whatever Ray left, and wait for it."""
    reaper.stdin.close()
    try:
        reaper.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        reaper.kill()
        reaper.wait()


def open_files(pid: str) -> Iterator[str]:
    """The paths a process holds open (none if it is gone or not ours)."""
    try:
        fds = os.listdir(f"{PROC}/{pid}/fd")
    except OSError:
        return
    for fd in fds:
        try:
            yield os.readlink(f"{PROC}/{pid}/fd/{fd}")
        except OSError:
            continue


def is_ray_program(pid: str) -> bool:
    """Whether a process runs this Python (Ray's agents and workers) or a program of Ray's package
    (its GCS and raylet): a ``tail -f`` of a Ray log is no Ray process."""
    try:
        program = os.readlink(f"{PROC}/{pid}/exe")
    except OSError:
        return False
    return program == os.path.realpath(sys.executable) or f"{os.sep}ray{os.sep}core{os.sep}" in program


def session_processes(owner: int) -> list[int]:
    """This user's Ray processes (other than ``owner`` and this one) holding a file open in a Ray
    session folder of process ``owner``."""
    folder = re.compile(rf"/session_[0-9_-]+_{owner}/")
    spared, uid = {str(owner), str(os.getpid())}, os.getuid()
    found = []
    for pid in os.listdir(PROC):
        try:
            if not pid.isdigit() or pid in spared or os.stat(f"{PROC}/{pid}").st_uid != uid:
                continue
        except OSError:
            continue
        if any(folder.search(path) for path in open_files(pid)) and is_ray_program(pid):
            found.append(int(pid))
    return found


def reap(owner: int, rounds: int = 3, pause_s: float = 0.2) -> int:
    """SIGKILL the processes of ``owner``'s Ray sessions, again until none is left; how many."""
    killed = 0
    for _ in range(rounds):
        pids = session_processes(owner)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
        time.sleep(pause_s)
    return killed


def main(argv: list[str]) -> None:
    """``ray_reaper.py <owner pid>``: wait for stdin to close, then reap the owner's Ray."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while sys.stdin.buffer.read(4096):
        pass
    if os.path.isdir(PROC):
        reap(int(argv[0]))


if __name__ == "__main__":
    main(sys.argv[1:])
