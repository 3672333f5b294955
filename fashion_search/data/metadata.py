"""The shape metadata may take, wherever it comes from (a CSV given to ``index`` or ``add``, the
JSON of ``POST /items``, the web page): plain scalar values under names a filter can use, and
limits on how many columns an index holds and how long names and values are, so that one
request cannot make every product of an index grow or every ``/filters`` call slow. Names and
text values are stored in NFKC form, names that could pass for another are refused, and only
plain decimals are numbers (:mod:`fashion_search.data.text_forms`).
"""
from __future__ import annotations

import json
import math
from typing import Iterable

import pandas as pd

from fashion_search.data.catalog import CatalogueError
from fashion_search.data.text_forms import fold, is_plain_number, name_problem, normal

MAX_COLUMNS = 64         # metadata columns (id aside) one index holds
MAX_NEW_COLUMNS = 16     # columns one add may bring that the index does not have yet
MAX_NAME_CHARS = 64
MAX_VALUE_CHARS = 1_000
# Names the project sets itself (and ``colour``, the filter key of the colours read from photos):
# metadata may not take them, whatever their case or surrounding spaces.
RESERVED_COLUMNS = ("path", "label", "split", "deleted", "colours", "colour", "rank", "distance", "score",
                    "colour_distance")
MISSING_TEXT = "unknown"  # what a text column holds where a row has no value
NOT_MARKED = ("id", "path", "colours", "deleted", "split", "product_id")  # missing stays missing here
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


def normal_names(names: Iterable[object], where: str) -> list[str]:
    """The names in NFKC form, refusing those a filter could not use, that could pass for another
    name, or that the project sets itself (``id`` is the one name of the project's that metadata
    gives), and two names that are one once normalised."""
    names = list(names)
    metadata = [n for n in names if n != "id"]
    if len(metadata) > MAX_COLUMNS:
        raise MetadataError(f"{where} has {len(metadata):,} metadata columns; an index holds at most {MAX_COLUMNS}")
    normalised, seen = [], {}
    for name in names:
        text = normal(name) if isinstance(name, str) else name
        problem = _name_problem(text) or name_problem(text)
        if problem:
            shown = repr(name[:MAX_NAME_CHARS]) if isinstance(name, str) else "a column"
            raise MetadataError(f"{where}: the column {shown} {problem}; rename it")
        if fold(name) in seen:
            raise MetadataError(f"{where}: the columns '{seen[fold(name)]}' and '{name}' are one name once normalised "
                                "(Unicode NFKC, any case); keep one")
        seen[fold(name)] = name
        normalised.append(text)
    return normalised


def typed_values(table: pd.DataFrame) -> pd.DataFrame:
    """A table read as text (``dtype=str``) with its values as stored: a column of plain decimals
    (:data:`~fashion_search.data.text_forms.PLAIN_NUMBER`) as numbers, one of True/False as
    booleans, any other as NFKC text with "unknown" for a missing value; the ids as they are."""
    for column in table.columns.drop("id"):
        values = table[column]
        given = values.dropna()
        if given.map(is_plain_number).all():
            table[column] = pd.to_numeric(values)
        elif values.notna().all() and values.str.lower().isin(["true", "false"]).all():
            table[column] = values.str.lower().eq("true")
        else:
            table[column] = values.fillna(MISSING_TEXT).map(normal)
    return table


def with_missing_marked(table: pd.DataFrame) -> pd.DataFrame:
    """A product table whose text metadata says :data:`MISSING_TEXT` where a row has no value, as
    at index time (rows added later without a column, or columns added later): every door then
    reads a text column as text. Number columns keep missing values (a range leaves them out);
    :data:`NOT_MARKED` columns are kept as they are."""
    for column in table.columns.drop([c for c in NOT_MARKED if c in table.columns]):
        values = table[column]
        if values.isna().any() and not pd.api.types.is_numeric_dtype(values):
            table[column] = values.astype(object).where(values.notna(), MISSING_TEXT)
    return table


def stored_types(table: pd.DataFrame, text: tuple[str, ...]) -> pd.DataFrame:
    """A stored table read as text (``dtype=str``, blanks missing) with the types it was written
    with, by the rule of :func:`typed_values`: plain decimals as numbers, True/False as booleans,
    other text (``1e3``, ``+7``, ``Infinity``) as text; missing values stay missing; the ``text``
    columns stay text."""
    for column in table.columns.drop([c for c in text if c in table.columns]):
        given = table[column].dropna()
        if len(given) and given.map(is_plain_number).all():
            table[column] = pd.to_numeric(table[column])
        elif len(given) == len(table) and len(given) and given.str.lower().isin(["true", "false"]).all():
            table[column] = given.str.lower().eq("true")
    return table


def check_values(table: pd.DataFrame, where: str) -> None:
    """Refuse a text value longer than :data:`MAX_VALUE_CHARS`."""
    for column in table.columns:
        if table[column].astype(str).str.len().gt(MAX_VALUE_CHARS).any():
            raise MetadataError(f"{where}: a value of '{column}' is longer than {MAX_VALUE_CHARS:,} characters")


def check_new_columns(held: Iterable[str], incoming: Iterable[str], where: str) -> None:
    """Refuse an add that would give the index more than :data:`MAX_NEW_COLUMNS` new columns at
    once or :data:`MAX_COLUMNS` in all, or a column that differs from one it holds only in case
    (once both are in NFKC form)."""
    held = [c for c in held if c != "id"]
    by_case = {fold(c): c for c in held}
    new = [c for c in dict.fromkeys(incoming) if c != "id" and c not in held]
    for name in new:
        if fold(name) in by_case:
            raise MetadataError(f"{where}: the column '{name}' differs from the index's '{by_case[fold(name)]}' "
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
    """A JSON object of metadata: names as :func:`normal_names` wants them, values that are text
    (stored in NFKC form), finite numbers, true/false or null, each at most
    :data:`MAX_VALUE_CHARS` long."""
    try:
        fields = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as err:
        if isinstance(err, MetadataError):
            raise
        raise MetadataError("metadata must be a JSON object") from None
    if not isinstance(fields, dict):
        raise MetadataError("metadata must be a JSON object")
    names = normal_names(fields, "the metadata")
    for name, value in zip(names, fields.values()):
        if isinstance(value, (dict, list)):
            kind = "object" if isinstance(value, dict) else "array"
            raise MetadataError(f"the metadata's '{name}' is a JSON {kind}; values are text, numbers, true/false or null")
        if isinstance(value, float) and not math.isfinite(value):  # 1e999 parses as infinity
            raise MetadataError(f"the metadata's '{name}' is not a finite number")
        if len(str(value)) > MAX_VALUE_CHARS:
            raise MetadataError(f"the metadata's '{name}' is longer than {MAX_VALUE_CHARS:,} characters")
    return {name: normal(value) if isinstance(value, str) else value for name, value in zip(names, fields.values())}
