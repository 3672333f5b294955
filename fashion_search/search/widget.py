"""The search panel for JupyterLab: upload a photo or pick an item, choose the model, k and
filters, and see the results as an image grid (:func:`search_widget`). In an uploaded photo the
garments found are drawn, numbered, the one searched in red, and a line above the grid gives the
photo's size and each garment's box; another is picked by its number, or by a box typed as
``x0,y0,x1,y1``. The grid is also what
stage 06 draws for its fixed example query (:mod:`fashion_search.pipeline.search_stage`).

The grid is a matplotlib figure made without pyplot, and the panel shows it as a PNG it renders
itself: no figure manager or inline backend state is shared between one search and the next.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from fashion_search.data.catalog import Catalog
from fashion_search.figures import frame_tile, show_image
from fashion_search.images import decode_photo_and_size
from fashion_search.params import IndexParams
from fashion_search.search.embedding.garments import parse_box
from fashion_search.search.engine import Query, SearchEngine
from fashion_search.search.index.filters import no_match_hints


LABEL_COLUMNS = ("articleType", "category", "subCategory", "label")  # an index's column framed green or red
MISSING_PHOTO = np.full((8, 8, 3), 200, np.uint8)  # a grey tile for a product whose photo is not at hand
RESULT_COLUMNS = 5  # result tiles per row beside a query photo drawn large (with its garments)


@dataclass
class PanelAnswer:
    """What the panel shows for one search: lines of text (the garments found in a photo, or why
    there are no results) and the results grid, when there are results."""
    text: str
    figure: Figure | None = None


def item_images(catalog: Catalog, ids: list[str], engine: SearchEngine | None = None) -> list[np.ndarray | str]:
    """The stored pixels or photo path of each id: from the catalogue, else from the index's
    table (a product added after the catalogue was read), else a grey tile."""
    position = pd.Series(np.arange(len(catalog)), index=catalog.items["id"].astype(str))
    position = position[~position.index.duplicated()]
    return [catalog.images[position[i]] if i in position.index else _indexed_photo(engine, i) for i in ids]


def _indexed_photo(engine: SearchEngine | None, item: str) -> str | np.ndarray:
    """The photo path the index holds for ``item``, or a grey tile."""
    rows = engine.index.rows_of(item) if engine is not None else []
    return str(engine.index.products["path"].iloc[rows[0]]) if len(rows) else MISSING_PHOTO


def index_catalogue(engine: SearchEngine, label_column: str | None = None) -> Catalog:
    """An index's live products as a catalogue for the panel: their photos by path, labelled by
    ``label_column`` (default: the first of :data:`LABEL_COLUMNS` the index has, else none)."""
    items = engine.index.products[engine.index.live].drop(columns=["deleted"]).reset_index(drop=True)
    label_column = label_column or next((c for c in LABEL_COLUMNS if c in items.columns), "id")
    if label_column not in items.columns:
        raise ValueError(f"the index has no column '{label_column}'; columns: {', '.join(items.columns)}")
    return Catalog(items, items["path"].astype(str).to_numpy(), label_column)


def search_grid(engine: SearchEngine, catalog: Catalog, query: Query, query_image, k: int,
                filters: list[str], query_label: str | None = None, swatch: str | None = None,
                shown_scale: float = 1.0) -> tuple[pd.DataFrame, Figure]:
    """Search (with a colour to prefer, ``swatch``), and draw the query with its results;
    ``shown_scale``: pixels of ``query_image`` per pixel of the photo (a large JPEG is decoded reduced)."""
    results = engine.search(query, k, filters, swatch=swatch)
    figure = plot_search_grid(query_image, results, item_images(catalog, results["id"].tolist(), engine),
                              query.label, catalog.label_column, query_label, garment_boxes(query, shown_scale))
    return results, figure


def garment_boxes(query: Query, shown_scale: float = 1.0) -> list[tuple[tuple, str, bool]]:
    """The boxes to draw on a query photo shown at ``shown_scale`` of its size: each garment found
    (numbered) and a drawn box; the searched one marked."""
    boxes = [(g.box, f"{i} {g.group}", g is query.garment) for i, g in enumerate(query.garments, 1)
             if g.group != "whole photo"]
    if query.garment is not None and query.garment.group == "drawn box":
        boxes.append((query.garment.box, "your box", True))
    return [(tuple(v * shown_scale for v in box), label, searched) for box, label, searched in boxes]


def plot_search_grid(query: np.ndarray | str | None, results: pd.DataFrame, images: list[np.ndarray | str],
                     title: str, label_column: str | None = None, query_label: str | None = None,
                     boxes: list[tuple[tuple, str, bool]] | None = None) -> Figure:
    """The query (when it has an image) and each result with its id, label and distance; with
    the query's label known, results that share it are framed green, the others red (as in 05).
    ``boxes`` (box, label, searched) are drawn on the query."""
    from matplotlib.patches import Rectangle

    query_caption = "query" if query_label is None else f"query\n{query_label}"
    shown_label = label_column if label_column and label_column != "id" else None
    tiles = ([(query, query_caption)] if query is not None else []) + [
        (image, f"#{row['rank']} {row['id']}\n{_short(row.get(shown_label, '')) if shown_label else ''} "
                f"{row['distance']:.3f}")
        for image, (_, row) in zip(images, results.iterrows())]
    axes = _grid_axes(len(tiles), query is not None and bool(boxes))
    labels = [None] * (query is not None) + [row.get(label_column) if label_column else None
                                             for _, row in results.iterrows()]
    for position, (ax, (image, caption)) in enumerate(zip(axes, tiles)):
        show_image(ax, image)
        ax.axis("on")
        is_result = position >= (query is not None)
        colour = frame_tile(ax, labels[position] == query_label) if is_result and query_label is not None else "black"
        ax.set_title(caption, fontsize=9, color=colour, fontweight="bold" if not is_result else "normal")
        for (x0, y0, x1, y1), label, searched in (boxes or []) if not is_result else []:
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=2 if searched else 1,
                                   color="red" if searched else "orange"))
            ax.text(x0, y0, label, fontsize=9, color="white", va="top",
                    bbox={"facecolor": "black", "alpha": 0.6, "pad": 0.5, "linewidth": 0})
    fig = axes[0].figure
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _grid_axes(tiles: int, large_query: bool) -> list:
    """A figure's axes for ``tiles`` tiles, in reading order, all off until drawn on: six to a row,
    or, with ``large_query``, the first (a query photo with its garments) two rows and two
    columns large and the results :data:`RESULT_COLUMNS` to a row beside it."""
    if not large_query:
        columns = min(6, max(tiles, 1))
        rows = -(-tiles // columns) or 1
        fig = Figure(figsize=(columns * 1.4, rows * 2.0))  # about 840 px wide: shown unscaled in a notebook
        axes = list(fig.subplots(rows, columns, squeeze=False).ravel())
    else:
        columns = min(RESULT_COLUMNS, max(tiles - 1, 1))
        rows = max(2, -(-(tiles - 1) // columns))
        fig = Figure(figsize=((columns + 2) * 1.4, rows * 2.0))
        grid = fig.add_gridspec(rows, columns + 2)
        axes = [fig.add_subplot(grid[:2, :2])] + [fig.add_subplot(grid[r, 2 + c]) for r in range(rows)
                                                  for c in range(columns)]
    for ax in axes:
        ax.axis("off")
    return axes


def _short(text: object, limit: int = 15) -> str:
    """A caption's label, cut to fit a tile."""
    text = str(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def figure_png(figure: Figure) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def panel_search(engines: dict[str, SearchEngine], catalog: Catalog, model: str, upload: tuple, item: str, k: int,
                 filters_text: str, garment: int = 0, box_text: str = "", localise: bool = True,
                 colour: str = "") -> PanelAnswer:
    """What the panel shows for its current inputs: the results grid (an item's results framed
    green where they share its label, red where not) under the garments found in an uploaded
    photo, or the reason in words (an unreadable photo, an unknown item, a malformed or unknown
    filter or colour, a filter that matches nothing, a garment number or box the photo does not
    have). ``upload`` (empty: search the item) is searched when given; ``garment`` 0 is the main
    one, and is left aside when a box is given or finding garments is off; ``colour`` a colour to prefer."""
    engine = engines[model]
    wanted = [f.strip() for f in filters_text.split(",") if f.strip()]
    swatch = colour.strip() or None
    try:
        if upload:
            pixels, size = decode_photo_and_size(bytes(upload[0]["content"]), engine.settings.max_image_pixels)
            box = parse_box(box_text) if box_text.strip() else None
            number = None if box or not localise else garment or None   # a box, or finding off, wins over it
            query = engine.pixels_query(pixels, f"photo {upload[0]['name']}", garment=number, box=box,
                                        localise=localise, size=size)
            image, label, shown_scale = pixels, None, pixels.shape[1] / size[0]
            note = garment_note(query, size, localise)
        else:
            query, image = engine.product_query(item.strip()), item_images(catalog, [item.strip()], engine)[0]
            label, shown_scale, note = _label_of(catalog, item.strip()), 1.0, ""
        results, figure = search_grid(engine, catalog, query, image, k, wanted, label, swatch, shown_scale)
    except ValueError as err:
        return PanelAnswer(f"error: {err}")
    if len(results):
        return PanelAnswer(note, figure)
    hints = no_match_hints(wanted, engine.index.products, engine.index.live)
    return PanelAnswer("\n".join(filter(None, [note, *(hints or ["no product matches these filters together"])])))


def garment_note(query: Query, size: tuple[int, int], localised: bool = True) -> str:
    """The photo's size, the garments found in it with their boxes (in the photo's own pixels, as
    a box is typed), and which one is searched."""
    photo = f"the photo is {size[0]}×{size[1]} px"
    searched, box_hint = query.garment, "type a box x0,y0,x1,y1 in the photo's pixels"
    if searched is not None and searched.group == "drawn box":
        return (f"{photo}. Searching your box {','.join(map(str, searched.box))}; clear the box to go back to "
                "the garments found.")
    if searched is None or searched.group == "whole photo":
        why = ("finding garments is turned off" if not localised else
               "it looks like a catalogue photo, or one garment fills it, or none stands out")
        return f"{photo}; searching the whole photo ({why}). To search a part, {box_hint}."
    found = [(i, g) for i, g in enumerate(query.garments, 1) if g.group != "whole photo"]
    listed = "; ".join(f"{i} {g.group} at {','.join(map(str, g.box))}" for i, g in found)
    number = next(i for i, g in found if g is searched)
    pick = "pick another by its number, or " if len(found) > 1 else ""
    return (f"{photo}; {len(found)} garment{'s' if len(found) > 1 else ''} found: {listed}. "
            f"Searching {number} ({searched.group}): {pick}{box_hint}.")


def _label_of(catalog: Catalog, item: str) -> str | None:
    """The item's label (its value of the catalogue's label column), if the catalogue has the item."""
    rows = catalog.items[catalog.items["id"].astype(str) == item]
    if not len(rows) or catalog.label_column not in rows.columns or catalog.label_column == "id":
        return None
    return str(rows[catalog.label_column].iloc[0])


def search_widget(engines: dict[str, SearchEngine], catalog: Catalog):
    """An ipywidgets panel: upload a photo or pick an item (whichever was chosen last is
    searched), choose model, k, filters and a colour to prefer, search. Each search replaces the
    panel's output with a PNG of the grid, or the reason in words. Once a photo is searched,
    choosing another garment or typing a box searches again without the button."""
    import ipywidgets as widgets
    from IPython.display import Image

    ids = catalog.items["id"].astype(str).tolist()
    upload = widgets.FileUpload(accept="image/*", multiple=False, description="Upload photo")
    item = widgets.Combobox(value=ids[0] if ids else "", options=ids, ensure_option=False, description="or item",
                            placeholder="a product id")
    searched = widgets.Label(value=f"searching item {item.value}")
    model = widgets.Dropdown(options=list(engines), description="model")
    k = widgets.IntSlider(value=10, min=1, max=50, description="k")
    filters = widgets.Text(placeholder=f"{catalog.label_column}=..., comma-separated", description="filters")
    wide = {"description_width": "initial"}  # labels in full, not cut to the default width
    colour = widgets.Text(placeholder="red, navy or #1f3a93 (optional)", description="prefer colour", style=wide)
    garment = widgets.BoundedIntText(value=0, min=0, max=50, description="garment",
                                     tooltip="the garment to search, numbered as drawn on the photo (0: the main one)")
    box = widgets.Text(placeholder="x0,y0,x1,y1 (pixels; optional)", description="or box",
                       continuous_update=False)   # taken when Enter is pressed or the field is left
    localise = widgets.Checkbox(value=True, description="find the garment in the photo", style=wide)
    button = widgets.Button(description="Search", button_style="primary")
    output = widgets.Output()
    source = {"upload": False, "searched": None}  # the last thing chosen (a photo or an item); what was searched

    def chose_upload(change) -> None:
        source["upload"], source["searched"] = bool(change["new"]), None
        if source["upload"]:
            searched.value = f"searching the uploaded photo {change['new'][0]['name']}"

    def chose_item(change) -> None:
        source["upload"] = False
        searched.value = f"searching item {change['new']}"

    def inputs() -> tuple:
        return (model.value, source["upload"] and upload.value[0]["name"], item.value, k.value, filters.value,
                garment.value, box.value, localise.value, colour.value)

    def run(_) -> None:
        if source["searched"] == inputs():   # a field just searched on leaving it, then the button: once
            return
        source["searched"] = inputs()
        shown = panel_search(engines, catalog, model.value, upload.value if source["upload"] else (), item.value,
                             k.value, filters.value, garment.value, box.value, localise.value, colour.value)
        output.outputs = ()
        if shown.text:
            output.append_stdout(shown.text + "\n")
        if shown.figure is not None:
            output.append_display_data(Image(data=figure_png(shown.figure), format="png"))

    def chose_part(_) -> None:
        if source["upload"] and source["searched"] is not None:   # another part of the photo searched: at once
            run(None)

    upload.observe(chose_upload, names="value")
    item.observe(chose_item, names="value")
    garment.observe(chose_part, names="value")
    box.observe(chose_part, names="value")
    localise.observe(chose_part, names="value")
    button.on_click(run)
    return widgets.VBox([widgets.HBox([upload, item, searched]), widgets.HBox([model, k]),
                         widgets.HBox([filters, colour]), widgets.HBox([garment, box, localise]), button, output])


def index_panel(folder: str | Path, label_column: str | None = None, settings: IndexParams | None = None):
    """The panel over any ``fashion-search`` index (``outputs/dev-index``): its products, their
    photos, filters, colours and uploads, with the model the index was built with."""
    engine = SearchEngine.open(folder, settings or IndexParams())
    name = Path(str(engine.index.identity.get("model") or engine.index.identity["backbone"])).name
    return search_widget({name: engine}, index_catalogue(engine, label_column))
