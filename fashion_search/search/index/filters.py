"""Metadata filters: ``key=value`` expressions turned into a boolean mask over index rows.

``category=shoes`` matches case-insensitively; ``category=shoes,bags`` is either; a number
column takes a range, ``price=50..200``, ``price=..100`` or ``price=300..``; ``colour=red``
matches the colour names read from the photos; a plain number also matches equal numbers
(``year=2011`` finds 2011.0). A missing value is "unknown" (``price=unknown``) and in no range.
Several filters must all hold. Keys and values
are compared in NFKC form (:mod:`fashion_search.data.text_forms`), a key in any case. Only plain
decimal numbers are numbers: a value such as ``Infinity``, ``1e3`` or ``+7`` never matches a
range, and a number column holding an infinity (text read back as a number) takes none. A
request holds at most :data:`MAX_FILTERS` filters of at most :data:`MAX_VALUES` values each, so
one request cannot make the engine scan its table thousands of times.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fashion_search.data.metadata import MISSING_TEXT
from fashion_search.data.text_forms import PLAIN_LIMIT, PLAIN_NUMBER, fold, is_plain_number, normal
from fashion_search.colour import PALETTE_HEX, PALETTE_LAB

COLOUR_KEY = "colour"
MAX_FILTERS = 20
MAX_VALUES = 100
HIDDEN_COLUMNS = ("path", "deleted", "colours", "split", "description")


class FilterError(ValueError):
    """A filter that cannot be applied; the message says which keys and values exist."""


@dataclass(frozen=True)
class Filter:
    key: str
    values: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None


def filter_keys(products: pd.DataFrame) -> list[str]:
    """Keys a filter may name: the metadata columns and ``colour``."""
    return [c for c in products.columns if c not in HIDDEN_COLUMNS] + [COLOUR_KEY]


def range_numbers(column: pd.Series) -> pd.Series:
    """A column's values as numbers for a range (NaN where a value is not one): plain decimals
    of text, finite numbers under :data:`PLAIN_LIMIT`; none at all in a number column holding
    an infinity, which was text before the index's table was read back."""
    if pd.api.types.is_bool_dtype(column):
        return pd.Series(np.nan, index=column.index)
    if pd.api.types.is_numeric_dtype(column):
        numbers = column.astype(float)
        if np.isinf(numbers).any():
            return pd.Series(np.nan, index=column.index)
        return numbers.where(numbers.abs() < PLAIN_LIMIT)
    text = column.astype(str)
    return pd.to_numeric(text.where(text.str.fullmatch(PLAIN_NUMBER.pattern)), errors="coerce")


def _number_text(number: float) -> str:
    """A number as people write it: 2011 for 2011.0, 12.5 as it is."""
    number = float(number)
    return str(int(number)) if number.is_integer() and abs(number) < PLAIN_LIMIT else repr(number)


def shown_values(column: pd.Series) -> pd.Series:
    """A column's values as the text a value filter compares and a hint names: numbers in their
    short form, True/False as words, text as it is, and "unknown" where a row has no value (as a
    blank cell reads at index time)."""
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        shown = column.map(_number_text, na_action="ignore")
    else:  # text, or values of mixed types (a result table's cells)
        shown = column.map(lambda v: _number_text(v) if isinstance(v, (int, float, np.number))
                           and not isinstance(v, (bool, np.bool_)) else str(v), na_action="ignore")
    return shown.astype(object).where(column.notna(), MISSING_TEXT)


def filter_options(products: pd.DataFrame, live: np.ndarray, max_values: int = 50) -> dict[str, dict]:
    """What a filter may say, for a form to offer: per key, its most common values among live
    products (at most ``max_values``; ``more`` says whether there are others), or for a number
    column its range."""
    options: dict[str, dict] = {}
    for key in filter_keys(products)[:-1]:
        column = products.loc[live, key]
        if key == "id":
            continue
        numbers = range_numbers(column.dropna())
        if len(numbers) and numbers.notna().all():
            options[key] = {"range": [float(numbers.min()), float(numbers.max())]}
            continue
        counts = shown_values(column).value_counts()
        options[key] = {"values": counts.index[:max_values].tolist(), "more": len(counts) > max_values}
    options[COLOUR_KEY] = {"values": list(PALETTE_HEX), "more": False}
    return options


def _number(text: str, expression: str) -> float | None:
    """A range's bound: None when open, else a finite number (``inf``, ``nan`` and ``1e999``
    are refused here, so both backends refuse them the same way)."""
    if text == "":
        return None
    try:
        number = float(text)
    except ValueError:
        raise FilterError(f"'{expression}': '{text}' is not a number") from None
    if not math.isfinite(number):
        raise FilterError(f"'{expression}': '{text}' is not a finite number; leave the bound out for an open range "
                          "(price=50.. or price=..200)")
    return number


def parse_filter(expression: str, products: pd.DataFrame) -> Filter:
    """One ``key=value`` expression in NFKC form, checked against the index's columns (a key in
    any case)."""
    expression = normal(expression)
    key, sep, value = expression.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key or not value:
        raise FilterError(f"'{expression}' is not a filter: write key=value, e.g. category=shoes or price=50..200")
    keys = filter_keys(products)
    if key not in keys:
        same = [k for k in keys if fold(k) == fold(key)]
        if len(same) != 1:
            raise FilterError(f"unknown filter key '{key}'; this index has: {', '.join(keys)}")
        key = same[0]
    if key == COLOUR_KEY:
        names = tuple(v.strip().lower() for v in value.split(","))
        unknown = [n for n in names if n not in PALETTE_HEX]
        if unknown:
            raise FilterError(f"unknown colour '{unknown[0]}'; colours: {', '.join(PALETTE_HEX)}")
        return Filter(key, names)
    if len(value.split(",")) > MAX_VALUES:
        raise FilterError(f"'{key}=': at most {MAX_VALUES} values in one filter")
    if ".." in value:
        if range_numbers(products[key]).isna().all():
            raise FilterError(f"'{expression}': a range needs numbers, and '{key}' holds no plain numbers "
                              "(such as 12 or -3.5)")
        low, _, high = value.partition("..")
        return Filter(key, low=_number(low.strip(), expression), high=_number(high.strip(), expression))
    return Filter(key, tuple(v.strip() for v in value.split(",")))


def filter_mask(products: pd.DataFrame, filters: list[Filter]) -> np.ndarray:
    """Rows matching every filter."""
    mask = np.ones(len(products), bool)
    for f in filters:
        if f.key == COLOUR_KEY:
            names = products["colours"].fillna("").str.split()
            mask &= names.map(lambda have, want=set(f.values): bool(want & set(have))).to_numpy(bool)
        elif f.values:
            text = shown_values(products[f.key]).str.normalize("NFKC").str.lower()
            matches = text.isin([v.lower() for v in f.values])
            numbers = [float(v) for v in f.values if is_plain_number(v)]
            if numbers:
                matches |= range_numbers(products[f.key]).isin(numbers)
            mask &= matches.to_numpy(bool)
        else:
            column = range_numbers(products[f.key])
            inside = column.notna()
            if f.low is not None:
                inside &= column >= f.low
            if f.high is not None:
                inside &= column <= f.high
            mask &= inside.to_numpy(bool)
    return mask


def closest_values(expression: str, products: pd.DataFrame, live: np.ndarray, n: int = 5) -> list[str] | None:
    """For a ``key=value`` filter no live product matches: the values its column does hold,
    closest to the ones asked for first (None when the filter matches, or is a range or colour)."""
    parsed = parse_filter(expression, products)
    if not parsed.values or parsed.key == COLOUR_KEY or filter_mask(products[live], [parsed]).any():
        return None
    held = sorted(set(shown_values(products.loc[live, parsed.key])))
    wanted = parsed.values[0].lower()
    by_closeness = sorted(held, key=lambda v: -difflib.SequenceMatcher(None, wanted, v.lower()).ratio())
    return by_closeness[:n]


def closest_colours(expressions: list[str], products: pd.DataFrame, live: np.ndarray, n: int = 5) -> str | None:
    """For a colour filter that none of the products the other filters leave matches: the colour
    names those products are read as, closest to the asked colours (CIELAB) first, as a hint."""
    parsed = [parse_filter(e, products) for e in expressions]
    wanted = [f for f in parsed if f.key == COLOUR_KEY]
    others = [f for f in parsed if f.key != COLOUR_KEY]
    rows = products[live][filter_mask(products[live], others)]
    if not wanted or not len(rows) or filter_mask(rows, wanted).any():
        return None
    held = set(rows["colours"].fillna("").str.split().explode().dropna()) - {""}
    if not held:
        return None
    asked = [PALETTE_LAB[name] for f in wanted for name in f.values]
    gap = {name: min(float(np.linalg.norm(PALETTE_LAB[name] - lab)) for lab in asked) for name in held}
    shown = ", ".join(sorted(held, key=gap.__getitem__)[:n])
    other_text = ", ".join(e.strip() for e, f in zip(expressions, parsed) if f.key != COLOUR_KEY)
    which = f"the products with {other_text}" if others else "the products"
    return f"no product is read as {', '.join(n for f in wanted for n in f.values)}; {which} are read as, " \
           f"closest first: {shown}"


def range_span(expression: str, products: pd.DataFrame, live: np.ndarray) -> str | None:
    """For a number range no live product falls in: where the key's numbers do lie, and how many
    products have none (None when the filter matches, or is not a range)."""
    parsed = parse_filter(expression, products)
    if parsed.values or parsed.key == COLOUR_KEY or filter_mask(products[live], [parsed]).any():
        return None
    numbers = range_numbers(products.loc[live, parsed.key]).dropna()
    if not len(numbers):
        return f"no product has a number for {parsed.key}"
    lacking = int(live.sum()) - len(numbers)
    return (f"{parsed.key} values lie between {_number_text(numbers.min())} and {_number_text(numbers.max())}"
            + (f" ({lacking:,} products have none)" if lacking else ""))


def no_match_hints(expressions: list[str], products: pd.DataFrame, live: np.ndarray) -> list[str]:
    """For each ``key=value`` filter that no live product matches, a sentence naming the values
    its key does hold, closest first (for a range, where its numbers lie); for a colour, the
    colours the products the other filters leave are read as: what the CLI, the API and the panel
    say of an empty search."""
    hints = []
    for expression in expressions:
        values = closest_values(expression, products, live)
        if values:
            hints.append(f"no product has {expression.strip()}; {expression.partition('=')[0].strip()} values, "
                         f"closest first: {', '.join(values)}")
        elif (span := range_span(expression, products, live)) is not None:
            hints.append(f"no product has {expression.strip()}; {span}")
    colours = closest_colours(expressions, products, live) if not hints else None
    return hints + ([colours] if colours else [])


def parse_filters(expressions: list[str], products: pd.DataFrame) -> list[Filter]:
    """Every expression parsed (at most :data:`MAX_FILTERS`)."""
    if len(expressions) > MAX_FILTERS:
        raise FilterError(f"{len(expressions)} filters; at most {MAX_FILTERS} in one search")
    return [parse_filter(e, products) for e in expressions]
