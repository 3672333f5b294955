"""Filters as Milvus sees them: each row's metadata as lower-case text (``meta``) and as numbers
(``numbers``) with its colour names, and parsed filters (:mod:`.filters`) as Milvus filter
expressions that select the same rows as the faiss backend's mask."""
from __future__ import annotations

import json
import math

import pandas as pd

from fashion_search.data.metadata import MISSING_TEXT
from fashion_search.data.text_forms import is_plain_number
from fashion_search.search.index.filters import COLOUR_KEY, HIDDEN_COLUMNS, Filter, range_numbers, shown_values

NOTHING = "row < 0"  # an expression no row passes
COLOUR_NAMES = "colours['names']"  # where a row's colour names are (see milvus_index: COLOURS_FIELD)


def filter_values(products: pd.DataFrame) -> tuple[list[dict], list[dict], list[list[str]]]:
    """Per row: metadata as lower-case text, numeric metadata as numbers, colour names."""
    columns = [c for c in products.columns if c not in HIDDEN_COLUMNS]
    text = pd.DataFrame({c: shown_values(products[c]).str.normalize("NFKC").str.lower() for c in columns})
    meta = text.to_dict("records")
    numbers = pd.DataFrame({c: range_numbers(products[c]) for c in columns})
    values = [{c: float(v) for c, v in row.items() if not math.isnan(v)} for row in numbers.to_dict("records")]
    return meta, values, products["colours"].fillna("").astype(str).str.split().tolist()


def _literal(text: str) -> str | None:
    """``text`` as a Milvus string literal; None when it holds a control character, which Milvus
    expressions cannot write (no metadata value holds one, so such a filter matches nothing)."""
    if any(ord(c) < 32 and c not in "\t\n\r" for c in text):
        return None
    return json.dumps(text, ensure_ascii=False)  # quotes and backslashes escaped: a value stays a value


def filter_expression(filters: list[Filter], colour_names: str = COLOUR_NAMES) -> list[str]:
    """Milvus filter expressions for parsed filters (see :mod:`.filters` for their meaning);
    ``colour_names`` is where a row's colour names are."""
    parts = []
    for f in filters:
        key = _literal(f.key)
        if f.key == COLOUR_KEY:
            parts.append(f"json_contains_any({colour_names}, {json.dumps(list(f.values))})")  # palette names only
        elif f.values:
            values = [_literal(v.lower()) for v in f.values]
            terms = [f"meta[{key}] == {v}" for v in values if v is not None and key is not None]
            terms += [f"numbers[{key}] == {float(v)!r}" for v in f.values if is_plain_number(v) and key is not None]
            if key is not None and MISSING_TEXT in [v.lower() for v in f.values]:
                terms.append(f"not exists meta[{key}]")  # a row written before its index had the column
            parts.append("(" + (" or ".join(terms) or NOTHING) + ")")
        elif key is None:
            parts.append(NOTHING)
        else:
            bounds = [f"numbers[{key}] >= {f.low!r}" if f.low is not None else None,
                      f"numbers[{key}] <= {f.high!r}" if f.high is not None else None]
            parts.append(" and ".join(b for b in bounds if b) or f"(numbers[{key}] >= 0 or numbers[{key}] < 0)")
    return parts
