"""Markdown tables and the numbers in their cells: a mean with its interval, on one line."""
from __future__ import annotations

import pandas as pd

NO_BREAK, JOIN = "\u00a0", "\u2060"  # a space and a joiner a line never breaks at: an interval stays on one line


def interval_text(low: float, high: float) -> str:
    """``0.789–0.822``, never split over two lines of a table cell."""
    return f"{low:.3f}{JOIN}–{JOIN}{high:.3f}"


def estimate(mean: float, low: float, high: float) -> str:
    """``0.8059 [0.789, 0.822]``: a mean and its interval, on one line."""
    return f"{mean:.4f}{NO_BREAK}[{low:.3f},{NO_BREAK}{high:.3f}]"


def paired_estimate(mean: float, low: float, high: float) -> str:
    """``+0.0206 [+0.0133, +0.0278]``: a signed difference and its interval, on one line."""
    return f"{mean:+.4f}{NO_BREAK}[{low:+.4f},{NO_BREAK}{high:+.4f}]"


def markdown_table(frame: pd.DataFrame) -> str:
    """``frame`` as a Markdown table, its cells as they print."""
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])
