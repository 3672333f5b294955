"""A contact sheet of search results: the query photo, then the results with rank, id and what
ranked them (the distance, or the score of a colour blend)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from fashion_search.data.metadata import MISSING_TEXT
from fashion_search.images import UnusableImageError, fit_to_square, read_photo
from fashion_search.io import atomic_path

THUMB = 160
CAPTION = 34
PER_ROW = 6
FONT_SIZE = 12  # Pillow's own scalable font: no font file is needed


def _thumbnail(path: str | None) -> Image.Image:
    """A square thumbnail of a photo; grey where it cannot be read."""
    try:
        pixels = read_photo(path) if path else None
    except UnusableImageError:
        pixels = None
    if pixels is None:
        return Image.new("RGB", (THUMB, THUMB), (200, 200, 200))
    return Image.fromarray(fit_to_square(pixels, THUMB))


def fitted(text: str, font: ImageFont.FreeTypeFont, width: float) -> str:
    """``text`` shortened in its middle ("summer-…-0042.jpg") until it fits ``width`` pixels:
    a name keeps its start and its end, where names differ."""
    if font.getlength(text) <= width:
        return text
    keep = len(text)
    while keep > 2 and font.getlength(f"{text[:keep // 2]}…{text[len(text) - (keep - keep // 2):]}") > width:
        keep -= 1
    return f"{text[:keep // 2]}…{text[len(text) - (keep - keep // 2):]}"


def known_value(row: pd.Series, columns: list[str]) -> str:
    """The first of ``columns`` the result has a value in ("unknown": a value it lacks), or ""."""
    return next((str(row[c]) for c in columns if pd.notna(row[c]) and str(row[c]) not in ("", MISSING_TEXT)), "")


def contact_sheet(results: pd.DataFrame, query_path: str | None) -> Image.Image:
    """The query (first tile, when it has a photo) and each result, in rows of :data:`PER_ROW`."""
    font = ImageFont.load_default(size=FONT_SIZE)
    tiles = [(query_path, "query", Path(query_path).name)] if query_path else []
    describe = [c for c in ("category", "articleType", "brand", "colours") if c in results.columns]
    for _, row in results.iterrows():
        detail = known_value(row, describe)
        scored = "score" in row and pd.notna(row["score"])  # results ranked by a colour blend, not by distance
        ranking = f"score {row['score']:.3f}" if scored else f"distance {row['distance']:.3f}"
        tiles.append((row["path"], f"#{row['rank']} {row['id']}", f"{ranking} · {detail}" if detail else ranking))
    columns = min(PER_ROW, max(len(tiles), 1))
    rows = int(np.ceil(len(tiles) / columns)) or 1
    sheet = Image.new("RGB", (columns * THUMB, rows * (THUMB + CAPTION)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (path, title, detail) in enumerate(tiles):
        x, y = (i % columns) * THUMB, (i // columns) * (THUMB + CAPTION)
        sheet.paste(_thumbnail(path), (x, y))
        if i == 0 and query_path:
            draw.rectangle([x, y, x + THUMB - 1, y + THUMB - 1], outline=(220, 40, 40), width=3)
        draw.text((x + 4, y + THUMB + 2), fitted(title, font, THUMB - 8), fill="black", font=font)
        draw.text((x + 4, y + THUMB + 17), fitted(detail, font, THUMB - 8), fill=(90, 90, 90), font=font)
    return sheet


def save_contact_sheet(results: pd.DataFrame, query_path: str | None, path: str | Path) -> Path:
    """Write the contact sheet as a PNG (atomically)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        contact_sheet(results, query_path).save(tmp, format="PNG")
    return path
