"""Progress of long work, where the person watching can see it.

In JupyterLab and in a terminal, a tqdm bar (``tqdm.auto``: a widget in a notebook, text in a
terminal). Under ``fashion-search run`` the notebooks execute headless and their output is
streamed to the terminal line by line, where a bar cannot redraw: there, with
``FASHION_SEARCH_PROGRESS=lines`` (set by the runner), progress is a plain line every
``LINE_INTERVAL_S`` seconds and one at the end, which also reads well in the HTML report.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Iterable, Iterator, Protocol, TypeVar

from tqdm.auto import tqdm

MODE_VARIABLE = "FASHION_SEARCH_PROGRESS"
LINE_INTERVAL_S = 15.0
T = TypeVar("T")


class Counter(Protocol):
    """What the work loops need of a progress bar."""

    n: int

    def update(self, n: int = 1) -> object: ...


def format_seconds(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class LineProgress:
    """A tqdm-like counter that prints ``desc: done/total unit (pct), rate, time left`` lines."""

    def __init__(self, total: int | None, desc: str, unit: str, interval_s: float = LINE_INTERVAL_S) -> None:
        self.total, self.desc, self.unit, self.interval_s = total, desc, unit, interval_s
        self.n = 0
        self.started = self.last_print = time.monotonic()
        self.closed = False

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        rate = self.n / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.desc}: {self.n}" + (f"/{self.total}" if self.total else "") + f" {self.unit}s"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        if rate:
            parts.append(f"{rate:.1f} {self.unit}s/s")
        if self.total and rate and self.n < self.total:
            parts.append(f"about {format_seconds((self.total - self.n) / rate)} left")
        if self.closed:
            parts.append(f"took {format_seconds(elapsed)}")
        return ", ".join(parts)

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        unfinished = self.total is None or self.n < self.total  # the last line is close()'s
        if unfinished and now - self.last_print >= self.interval_s:
            self.last_print = now
            print(self.line(), file=sys.stdout, flush=True)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            print(self.line(), file=sys.stdout, flush=True)

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def streams_lines() -> bool:
    """Whether progress should be plain lines (a headless run streamed to a terminal)."""
    return os.environ.get(MODE_VARIABLE) == "lines"


def progress_bar(total: int | None, desc: str, unit: str = "item", disable: bool = False) -> "LineProgress | tqdm":
    """A progress counter with ``update(n)`` and ``close()``, usable as a context manager."""
    if streams_lines() and not disable:
        return LineProgress(total, desc, unit)
    return tqdm(total=total, desc=desc, unit=unit, mininterval=2.0, disable=disable)


def progress(items: Iterable[T], desc: str, unit: str = "item", total: int | None = None,
             disable: bool = False) -> Iterator[T]:
    """Iterate over ``items`` with a progress counter."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress_bar(total, desc, unit, disable) as bar:
        for item in items:
            yield item
            bar.update(1)
