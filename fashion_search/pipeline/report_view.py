"""The report's tables as a notebook shows them: one page, like a paper's results section.

The files :mod:`.report` writes keep every protocol, definition and distance; a notebook shows
the compact view of them here, its headings under the notebook's own.
"""
from __future__ import annotations

import re

import pandas as pd

from fashion_search.layout import RunLayout
from fashion_search.pipeline.report import KEYS, write_per_category_map
from fashion_search.pipeline.tables import markdown_table


def report_layout_markdown(tables: pd.DataFrame, missing: str = "") -> str:
    """For the notebook, one compact table: a row per model, its mAP@k under the report's
    definition and the first distance, for each protocol and relevance side by side (every
    definition and distance stays in ``map_table.md``)."""
    if tables.empty:
        return "No model could be evaluated."
    distance = tables["distance"].iloc[0]
    chosen = tables[(tables["definition"] == "report") & (tables["distance"] == distance)]
    models = [c for c in chosen.columns if c not in (*KEYS, "rank")]
    relevances = list(dict.fromkeys(chosen["relevance"]))
    columns = {}
    for (protocol, relevance), table in chosen.groupby(["protocol", "relevance"], sort=False):
        prefix = protocol if len(relevances) == 1 else f"{protocol}, same {relevance}:"
        for _, row in table.iterrows():
            columns[f"{prefix} {row['rank'].replace('Top ', 'mAP@')}"] = [_cell(row[m]) for m in models]
    compact = pd.DataFrame({"model": models, **columns})
    said = f"relevant = same {relevances[0]}, " if len(relevances) == 1 else ""
    lines = [f"mAP@k, the report's definition, {said}{distance} distance (the min(k, R) definition and the other "
             "distances: `map_table.md`):", "", markdown_table(compact), ""]
    return "\n".join(lines + ([f"*{missing}*", ""] if missing else []))


def _cell(value: object) -> str:
    """A map-table value as the notebook shows it: four decimals, or the table's own word (n/a)."""
    try:
        return f"{float(value):.4f}" if float(value) == float(value) else "n/a"
    except ValueError:
        return str(value)


def demote_headings(markdown: str, levels: int = 2) -> str:
    """Markdown with every heading ``levels`` deeper: a file's ``#`` under a notebook's ``##``."""
    return re.sub(r"^(#{1,6}) ", lambda m: "#" * min(6, len(m.group(1)) + levels) + " ", markdown, flags=re.MULTILINE)


def per_colour_sections(layout: RunLayout, models: list[str], definitions: tuple[str, ...], distance: str,
                        k: int, source: str = "") -> list[tuple[str, pd.DataFrame | None]]:
    """05's "mAP per colour": for each relevance definition that also asks for a colour
    (``articleType+baseColour``), a title and the AP@k table per value of that column; when none
    does, one line saying why (Fashion-MNIST, ``source``, has no colour at all), and no table."""
    sections = [(f"**Relevant = same {definition}: mAP@{k} per {column}**",
                 write_per_category_map(layout, models, definition, distance, k, column=column).round(3))
                for definition in definitions for column in definition.split("+")[1:]]
    why = ("and Fashion-MNIST has no colour to ask for: its images are grayscale, its only label the category"
           if source == "fashion_mnist" else "(add one, e.g. `articleType+baseColour`, to see this table)")
    return sections or [(f"No mAP per colour: no relevance definition asks for a colour "
                         f"(`evaluate.relevance`: {', '.join(definitions)}), {why}.", None)]

