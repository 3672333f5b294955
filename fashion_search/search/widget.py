"""The search panel for JupyterLab: upload a photo or pick an item, choose the model, k and
filters, and see the results as an image grid (:func:`search_widget`). In an uploaded photo the
garments found are drawn, numbered, the one searched in red; another is picked by its number,
or by a box typed as ``x0,y0,x1,y1``. The grid is also what
stage 06 draws for its fixed example query (:mod:`fashion_search.pipeline.search_stage`).

The grid is a matplotlib figure made without pyplot, and the panel shows it as a PNG it renders
itself: no figure manager or inline backend state is shared between one search and the next.
"""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from fashion_search.data.catalog import Catalog
from fashion_search.figures import frame_tile, show_image
from fashion_search.images import decode_photo
from fashion_search.search.embedding.garments import parse_box
from fashion_search.search.engine import Query, SearchEngine
from fashion_search.search.index.filters import no_match_hints


def item_images(catalog: Catalog, ids: list[str]) -> list[np.ndarray | str]:
    """The stored pixels or photo path of each catalogue id."""
    position = pd.Series(np.arange(len(catalog)), index=catalog.items["id"].astype(str))
    return [catalog.images[position[i]] for i in ids]


def search_grid(engine: SearchEngine, catalog: Catalog, query: Query, query_image, k: int,
                filters: list[str], query_label: str | None = None) -> tuple[pd.DataFrame, Figure]:
    """Search, and draw the query with its results."""
    results = engine.search(query, k, filters)
    figure = plot_search_grid(query_image, results, item_images(catalog, results["id"].tolist()), query.label,
                              catalog.label_column, query_label, garment_boxes(query))
    return results, figure


def garment_boxes(query: Query) -> list[tuple[tuple, str, bool]]:
    """The boxes to draw on a query photo: each garment found (numbered) and a drawn box; the searched one marked."""
    boxes = [(g.box, f"{i} {g.group}", g is query.garment) for i, g in enumerate(query.garments, 1)
             if g.group != "whole photo"]
    if query.garment is not None and query.garment.group == "drawn box":
        boxes.append((query.garment.box, "your box", True))
    return boxes


def plot_search_grid(query: np.ndarray | str | None, results: pd.DataFrame, images: list[np.ndarray | str],
                     title: str, label_column: str | None = None, query_label: str | None = None,
                     boxes: list[tuple[tuple, str, bool]] | None = None) -> Figure:
    """The query (when it has an image) and each result with its id, label and distance; with
    the query's label known, results that share it are framed green, the others red (as in 05).
    ``boxes`` (box, label, searched) are drawn on the query."""
    from matplotlib.patches import Rectangle

    query_caption = "query" if query_label is None else f"query\n{query_label}"
    tiles = ([(query, query_caption)] if query is not None else []) + [
        (image, f"#{row['rank']} {row['id']}\n{row.get(label_column, '') if label_column else ''} {row['distance']:.3f}")
        for image, (_, row) in zip(images, results.iterrows())]
    columns = min(6, max(len(tiles), 1))
    rows = -(-len(tiles) // columns) or 1
    fig = Figure(figsize=(columns * 1.4, rows * 2.0))  # about 840 px wide: shown unscaled in a notebook
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    labels = [None] * (query is not None) + [row.get(label_column) if label_column else None
                                             for _, row in results.iterrows()]
    for position, (ax, (image, caption)) in enumerate(zip(axes.ravel(), tiles)):
        show_image(ax, image)
        ax.axis("on")
        is_result = position >= (query is not None)
        colour = frame_tile(ax, labels[position] == query_label) if is_result and query_label is not None else "black"
        ax.set_title(caption, fontsize=9, color=colour, fontweight="bold" if not is_result else "normal")
        for (x0, y0, x1, y1), label, searched in (boxes or []) if not is_result else []:
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=2 if searched else 1,
                                   color="red" if searched else "orange"))
            ax.text(x0, y0, label, fontsize=5, color="white", va="bottom",
                    bbox={"facecolor": "black", "alpha": 0.6, "pad": 0.5, "linewidth": 0})
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def figure_png(figure: Figure) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def panel_search(engines: dict[str, SearchEngine], catalog: Catalog, model: str, upload: tuple, item: str, k: int,
                 filters_text: str, garment: int = 0, box_text: str = "", localise: bool = True) -> Figure | str:
    """What the panel shows for its current inputs: the results grid, or the reason in words
    (an unreadable photo, a malformed or unknown filter, a filter that matches nothing, a
    garment number or box the photo does not have). ``garment`` 0 is the main one."""
    engine = engines[model]
    wanted = [f.strip() for f in filters_text.split(",") if f.strip()]
    try:
        if upload:
            pixels = decode_photo(bytes(upload[0]["content"]), engine.settings.max_image_pixels)
            box = parse_box(box_text) if box_text.strip() else None
            query = engine.pixels_query(pixels, f"photo {upload[0]['name']}", garment=garment or None, box=box,
                                        localise=localise)
            image = pixels
        else:
            query, image = engine.product_query(item), item_images(catalog, [item])[0]
        results, figure = search_grid(engine, catalog, query, image, k, wanted)
    except ValueError as err:
        return f"error: {err}"
    if len(results):
        return figure
    hints = no_match_hints(wanted, engine.index.products, engine.index.live)
    return "\n".join(hints) if hints else "no product matches these filters together"


def search_widget(engines: dict[str, SearchEngine], catalog: Catalog):
    """An ipywidgets panel: upload a photo or pick an item, choose model, k and filters, search.
    Each search replaces the panel's output with a PNG of the grid, or the reason in words."""
    import ipywidgets as widgets
    from IPython.display import Image

    ids = catalog.items["id"].astype(str).tolist()
    upload = widgets.FileUpload(accept="image/*", multiple=False, description="Upload photo")
    item = widgets.Dropdown(options=ids[:500], description="or item")
    model = widgets.Dropdown(options=list(engines), description="model")
    k = widgets.IntSlider(value=10, min=1, max=50, description="k")
    filters = widgets.Text(placeholder=f"{catalog.label_column}=..., comma-separated", description="filters")
    garment = widgets.BoundedIntText(value=0, min=0, max=50, description="garment",
                                     tooltip="which garment found in the photo: 0 or 1 is the main one")
    box = widgets.Text(placeholder="x0,y0,x1,y1 (pixels; optional)", description="or box")
    localise = widgets.Checkbox(value=True, description="find the garment in the photo")
    button = widgets.Button(description="Search", button_style="primary")
    output = widgets.Output()

    def run(_) -> None:
        shown = panel_search(engines, catalog, model.value, upload.value, item.value, k.value, filters.value,
                             garment.value, box.value, localise.value)
        output.outputs = ()
        if isinstance(shown, str):
            output.append_stdout(shown + "\n")
        else:
            output.append_display_data(Image(data=figure_png(shown), format="png"))

    button.on_click(run)
    return widgets.VBox([widgets.HBox([upload, item]), widgets.HBox([model, k]), filters,
                         widgets.HBox([garment, box, localise]), button, output])
