"""The search panel for JupyterLab: upload a photo or pick an item, choose the model, k and
filters, and see the results as an image grid (:func:`search_widget`). The grid is also what
stage 06 draws for its fixed example query (:mod:`fashion_search.pipeline.search_stage`).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from fashion_search.data.catalog import Catalog
from fashion_search.figures import frame_tile, show_image
from fashion_search.images import decode_photo
from fashion_search.search.engine import Query, SearchEngine


def item_images(catalog: Catalog, ids: list[str]) -> list[np.ndarray | str]:
    """The stored pixels or photo path of each catalogue id."""
    position = pd.Series(np.arange(len(catalog)), index=catalog.items["id"].astype(str))
    return [catalog.images[position[i]] for i in ids]


def search_grid(engine: SearchEngine, catalog: Catalog, query: Query, query_image, k: int,
                filters: list[str], query_label: str | None = None) -> tuple[pd.DataFrame, Figure]:
    """Search, and draw the query with its results."""
    results = engine.search(query, k, filters)
    figure = plot_search_grid(query_image, results, item_images(catalog, results["id"].tolist()), query.label,
                              catalog.label_column, query_label)
    return results, figure


def plot_search_grid(query: np.ndarray | str | None, results: pd.DataFrame, images: list[np.ndarray | str],
                     title: str, label_column: str | None = None, query_label: str | None = None) -> Figure:
    """The query (when it has an image) and each result with its id, label and distance; with
    the query's label known, results that share it are framed green, the others red (as in 05)."""
    query_caption = "query" if query_label is None else f"query\n{query_label}"
    tiles = ([(query, query_caption)] if query is not None else []) + [
        (image, f"#{row['rank']} {row['id']}\n{row.get(label_column, '') if label_column else ''} {row['distance']:.3f}")
        for image, (_, row) in zip(images, results.iterrows())]
    columns = min(6, max(len(tiles), 1))
    rows = -(-len(tiles) // columns) or 1
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.9, rows * 2.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    labels = [None] * (query is not None) + [row.get(label_column) if label_column else None
                                             for _, row in results.iterrows()]
    for position, (ax, (image, caption)) in enumerate(zip(axes.ravel(), tiles)):
        show_image(ax, image)
        ax.axis("on")
        is_result = position >= (query is not None)
        colour = frame_tile(ax, labels[position] == query_label) if is_result and query_label is not None else "black"
        ax.set_title(caption, fontsize=7, color=colour, fontweight="bold" if not is_result else "normal")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def panel_search(engines: dict[str, SearchEngine], catalog: Catalog, model: str, upload: tuple, item: str, k: int,
                 filters_text: str) -> Figure | str:
    """What the panel shows for its current inputs: the results grid, or the error in words
    (an unreadable photo, an unknown filter key)."""
    engine = engines[model]
    wanted = [f.strip() for f in filters_text.split(",") if "=" in f]
    try:
        if upload:
            pixels = decode_photo(bytes(upload[0]["content"]), engine.settings.max_image_pixels)
            query, image = engine.pixels_query(pixels, f"photo {upload[0]['name']}"), pixels
        else:
            query, image = engine.product_query(item), item_images(catalog, [item])[0]
        return search_grid(engine, catalog, query, image, k, wanted)[1]
    except ValueError as err:
        return f"error: {err}"


def search_widget(engines: dict[str, SearchEngine], catalog: Catalog):
    """An ipywidgets panel: upload a photo or pick an item, choose model, k and filters, search."""
    import ipywidgets as widgets
    from IPython.display import display

    ids = catalog.items["id"].astype(str).tolist()
    upload = widgets.FileUpload(accept="image/*", multiple=False, description="Photo")
    item = widgets.Dropdown(options=ids[:500], description="or item")
    model = widgets.Dropdown(options=list(engines), description="model")
    k = widgets.IntSlider(value=10, min=1, max=50, description="k")
    filters = widgets.Text(placeholder=f"{catalog.label_column}=..., comma-separated", description="filters")
    button = widgets.Button(description="Search", button_style="primary")
    output = widgets.Output()

    def run(_) -> None:
        shown = panel_search(engines, catalog, model.value, upload.value, item.value, k.value, filters.value)
        output.clear_output()
        with output:
            if isinstance(shown, str):
                print(shown)
            else:
                display(shown)
                plt.close(shown)

    button.on_click(run)
    return widgets.VBox([widgets.HBox([upload, item]), widgets.HBox([model, k]), filters, button, output])
