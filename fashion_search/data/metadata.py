"""The shape metadata may take, wherever it comes from (a CSV given to ``index`` or ``add``, the
JSON of ``POST /items``, the web page): plain scalar values under names a filter can use, and
limits on how many columns an index holds and how long names and values are, so that one
request cannot make every product of an index grow or every ``/filters`` call slow.
"""
from __future__ import annotations

import json
import math
from typing import Iterable

import pandas as pd

from fashion_search.data.catalog import CatalogueError

MAX_COLUMNS = 64         # metadata columns (id aside) one index holds
MAX_NEW_COLUMNS = 16     # columns one add may bring that the index does not have yet
MAX_NAME_CHARS = 64
MAX_VALUE_CHARS = 1_000
# Names the project sets itself (and ``colour``, the filter key of the colours read from photos):
# metadata may not take them, whatever their case or surrounding spaces.
RESERVED_COLUMNS = ("path", "label", "split", "deleted", "colours", "colour", "rank", "distance", "score",
                    "colour_distance")
Scalar = str | int | float | bool | None


class MetadataError(CatalogueError):
    """Metadata that cannot be stored as it is; the message names the column and the rule."""


def _name_problem(name: object) -> str | None:
    if not isinstance(name, str) or name.startswith("Unnamed: ") or not name.strip():
        return "has no name"
    if len(name) > MAX_NAME_CHARS:
        return f"is longer than {MAX_NAME_CHARS} characters"
    if name != name.strip():
        return "has spaces around it (a filter could not name it)"
    if not name.isprintable():
        return "holds a line break or another control character"
    if "=" in name:
        return "holds '=' (a filter, key=value, could not name it)"
    if name.casefold() in RESERVED_COLUMNS:
        return f"is a name fashion-search sets itself ({', '.join(RESERVED_COLUMNS)})"
    return None


def check_names(names: Iterable[object], where: str) -> None:
    """Refuse column names a filter could not use, or that the project sets itself; ``id`` is
    the one name of the project's that metadata gives."""
    names = [n for n in names if n != "id"]
    if len(names) > MAX_COLUMNS:
        raise MetadataError(f"{where} has {len(names):,} metadata columns; an index holds at most {MAX_COLUMNS}")
    for name in names:
        problem = _name_problem(name)
        if problem:
            shown = repr(name[:MAX_NAME_CHARS]) if isinstance(name, str) else "a column"
            raise MetadataError(f"{where}: the column {shown} {problem}; rename it")


def check_values(table: pd.DataFrame, where: str) -> None:
    """Refuse a text value longer than :data:`MAX_VALUE_CHARS` or a number that is infinite."""
    for column in table.columns:
        values = table[column]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            if values.abs().eq(math.inf).any():
                raise MetadataError(f"{where}: the column '{column}' holds an infinite number")
        elif values.astype(str).str.len().gt(MAX_VALUE_CHARS).any():
            raise MetadataError(f"{where}: a value of '{column}' is longer than {MAX_VALUE_CHARS:,} characters")


def check_new_columns(held: Iterable[str], incoming: Iterable[str], where: str) -> None:
    """Refuse an add that would give the index more than :data:`MAX_NEW_COLUMNS` new columns at
    once or :data:`MAX_COLUMNS` in all, or a column that differs from one it holds only in case."""
    held = [c for c in held if c != "id"]
    by_case = {c.casefold(): c for c in held}
    new = [c for c in dict.fromkeys(incoming) if c != "id" and c not in held]
    for name in new:
        if name.casefold() in by_case:
            raise MetadataError(f"{where}: the column '{name}' differs from the index's '{by_case[name.casefold()]}' "
                                "only in case; use that name")
    if len(new) > MAX_NEW_COLUMNS:
        raise MetadataError(f"{where} brings {len(new):,} columns the index does not have; at most "
                            f"{MAX_NEW_COLUMNS} at once")
    if len(held) + len(new) > MAX_COLUMNS:
        raise MetadataError(f"{where} would give the index {len(held) + len(new):,} metadata columns; it holds "
                            f"at most {MAX_COLUMNS}")


def _refuse_constant(name: str) -> None:
    raise MetadataError(f"the metadata holds {name}, which is not a number a product can have")


def metadata_from_json(text: str) -> dict[str, Scalar]:
    """A JSON object of metadata: names as :func:`check_names` wants them, values that are text,
    finite numbers, true/false or null, each at most :data:`MAX_VALUE_CHARS` long."""
    try:
        fields = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as err:
        if isinstance(err, MetadataError):
            raise
        raise MetadataError("metadata must be a JSON object") from None
    if not isinstance(fields, dict):
        raise MetadataError("metadata must be a JSON object")
    check_names(fields, "the metadata")
    for name, value in fields.items():
        if isinstance(value, (dict, list)):
            kind = "object" if isinstance(value, dict) else "array"
            raise MetadataError(f"the metadata's '{name}' is a JSON {kind}; values are text, numbers, true/false or null")
        if isinstance(value, float) and not math.isfinite(value):  # 1e999 parses as infinity
            raise MetadataError(f"the metadata's '{name}' is not a finite number")
        if len(str(value)) > MAX_VALUE_CHARS:
            raise MetadataError(f"the metadata's '{name}' is longer than {MAX_VALUE_CHARS:,} characters")
    return fields
