"""Searching a run's test catalogue from a notebook: one index per embedding model, and a widget.

``build_run_indexes`` indexes the run's test items with each model the notebooks prepared
(frozen and fine-tuned alike); ``search_widget`` lets a person upload a photo or pick an
item, choose the model, k and filters, and see the results as an image grid. Without a
browser (papermill), the notebook draws the same grid for a fixed example query.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from fashion_search.catalog import Catalog
from fashion_search.config import Params
from fashion_search.images import decode_photo
from fashion_search.io import read_json
from fashion_search.layout import RunLayout, variant_name
from fashion_search.plots import plot_search_grid, save_figure
from fashion_search.search import Query, SearchEngine, build_index


def build_run_indexes(params: Params, layout: RunLayout, test: Catalog) -> dict[str, SearchEngine]:
    """An engine over ``test`` for every available model of the run, keyed ``<backbone>-<recipe>``
    (each index rebuilt, so it always matches the run's current models and catalogue)."""
    engines = {}
    for backbone in params.backbones:
        for recipe in params.finetune.recipes:
            model = layout.model(backbone.name, recipe)
            if not (model / "manifest.json").is_file() or not read_json(model / "manifest.json").get("available"):
                continue
            settings = dataclasses.replace(params.index, model=str(model), type="auto")
            index = build_index(test, layout.index(backbone.name, recipe), settings, overwrite=True)
            engines[variant_name(backbone.name, recipe)] = SearchEngine(index, settings)
    return engines


def item_images(catalog: Catalog, ids: list[str]) -> list[np.ndarray | str]:
    """The stored pixels or photo path of each catalogue id."""
    position = pd.Series(np.arange(len(catalog)), index=catalog.items["id"].astype(str))
    return [catalog.images[position[i]] for i in ids]


def search_grid(engine: SearchEngine, catalog: Catalog, query: Query, query_image, k: int,
                filters: list[str]) -> tuple[pd.DataFrame, Figure]:
    """Search, and draw the query with its results."""
    results = engine.search(query, k, filters)
    figure = plot_search_grid(query_image, results, item_images(catalog, results["id"].tolist()), query.label,
                              catalog.label_column)
    return results, figure


def example_grids(engines: dict[str, SearchEngine], catalog: Catalog, example: str, k: int,
                  figures: Path) -> dict[str, Figure]:
    """"More like" one catalogue item with each model, drawn and saved as ``search_<model>.png``."""
    image = item_images(catalog, [example])[0]
    grids = {}
    for name, engine in engines.items():
        _, figure = search_grid(engine, catalog, engine.product_query(example), image, k, [])
        figure.suptitle(f"{name}: more like {example}", fontsize=9)
        save_figure(figure, figures / f"search_{name}.png")
        grids[name] = figure
    return grids


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
    import matplotlib.pyplot as plt
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
