"""How long ``fashion-search`` takes to answer in a fresh process.

    python benchmarks/cli_startup.py [--photos ../shared/data/fashion-products-dev] [--runs 7] [--out PATH]

Times fresh processes (the way a user meets the command) of ``fashion-search --help``,
``query --help`` and ``info`` on a small index, and a cold ``query`` by photo beside ``query
--like`` on it (the model's ONNX conversion already cached by the indexing), median of
``--runs``; beside them, measured in the same run, a bare ``python -c pass`` and ``python -c
"import tensorflow"``, so the numbers read as ratios on any machine. Writes
``benchmarks/results/cli_startup.{json,md}``.
"""
from __future__ import annotations

import argparse
import os
import socket
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from fashion_search.io import write_results

ROOT = Path(__file__).resolve().parent
DEFAULT_PHOTOS = ROOT.parent.parent / "shared" / "data" / "fashion-products-dev"
CLI = [sys.executable, "-m", "fashion_search.cli"]


def small_index(photos: Path, folder: Path, count: int = 40) -> Path:
    """An index of the first ``count`` photos, random weights at 32 px (its size does not matter to ``info``)."""
    subset = folder / "photos"
    subset.mkdir()
    for photo in sorted((photos / "images").glob("*.jpg"))[:count]:
        shutil.copy(photo, subset / photo.name)
    index = folder / "index"
    subprocess.run([*CLI, "index", str(subset), "--index", str(index), "--model", "efficientnet_lite0",
                    "--weights", "none", "--image-size", "32"], check=True, capture_output=True)
    return index


@contextmanager
def serving(index: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    """``fashion-search serve`` over ``index`` on a free loopback port, once it answers; its
    process and base URL. Stopped when the block ends."""
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([*CLI, "serve", "--index", str(index), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(f"{url}/health")
                break
            except httpx.TransportError:
                time.sleep(0.2)
        yield server, url
    finally:
        server.terminate()
        server.wait()


def median_seconds(command: list[str], runs: int) -> float:
    """Median wall-clock seconds of ``command`` in a fresh process, after one warm-up run."""
    times = []
    for attempt in range(runs + 1):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        if attempt:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "cli_startup")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        index = small_index(args.photos, Path(work))
        photo = sorted((Path(work) / "photos").glob("*.jpg"))[0]
        commands = {
            "python -c pass (floor)": [sys.executable, "-c", "pass"],
            "python -c 'import tensorflow'": [sys.executable, "-c", "import tensorflow"],
            "fashion-search --help": [*CLI, "--help"],
            "fashion-search query --help": [*CLI, "query", "--help"],
            "fashion-search info --index <40 photos>": [*CLI, "info", "--index", str(index)],
            "fashion-search query --like <id>": [*CLI, "query", "--like", photo.stem, "--index", str(index)],
            "fashion-search query <photo> (cold)": [*CLI, "query", str(photo), "--index", str(index)],
        }
        seconds = {name: median_seconds(command, args.runs) for name, command in commands.items()}
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    tf_seconds = seconds["python -c 'import tensorflow'"]
    rows = [f"| {name} | {value:.2f} | {value / tf_seconds:.2f} |" for name, value in seconds.items()]
    markdown = "\n".join([
        "# fashion-search start-up in a fresh process", "",
        f"Fresh processes, median of {args.runs} after a warm-up; {machine}.", "",
        "| command | seconds | / import tensorflow |", "|---|---|---|", *rows, ""])
    write_results(args.out, {"machine": machine, "runs": args.runs, "seconds": seconds}, markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
