"""Stage 06: the run's test catalogue in the search engine, one index per embedding model.

:func:`build_run_indexes` indexes the test items with each model the notebooks prepared
(frozen and fine-tuned alike); :func:`example_grids` draws "more like" one fixed item with
each model. The interactive panel is :func:`fashion_search.search.widget.search_widget`.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from fashion_search.data.catalog import Catalog
from fashion_search.figures import save_figure
from fashion_search.layout import RunLayout, variants
from fashion_search.models import saved
from fashion_search.params import Params
from fashion_search.search.engine import SearchEngine, build_index
from fashion_search.search.widget import item_images, search_grid


def build_run_indexes(params: Params, layout: RunLayout, test: Catalog) -> dict[str, SearchEngine]:
    """An engine over ``test`` for every available model of the run, keyed ``<backbone>-<recipe>``
    (each index rebuilt, so it always matches the run's current models and catalogue)."""
    engines = {}
    for variant in variants(params):
        model = layout.model(variant)
        if not saved.is_usable(model):
            continue
        # TensorFlow, as in the features the run evaluated: a test split is too small to repay
        # a conversion to ONNX Runtime (fashion_search.search.runtime)
        settings = dataclasses.replace(params.index, model=str(model), type="auto", runtime="tensorflow")
        index = build_index(test, layout.index(variant), settings, overwrite=True,
                            description=f"indexing with {variant.name}")
        engines[variant.name] = SearchEngine(index, settings)
    return engines


def example_grids(engines: dict[str, SearchEngine], catalog: Catalog, example: str, k: int,
                  figures: Path) -> dict[str, Figure]:
    """"More like" one catalogue item with each model, drawn and saved as ``search_<model>.png``;
    each figure is closed, so a notebook shows it once, where it is displayed."""
    image = item_images(catalog, [example])[0]
    label = str(catalog.items.set_index(catalog.items["id"].astype(str)).loc[example, catalog.label_column])
    grids = {}
    for name, engine in engines.items():
        _, figure = search_grid(engine, catalog, engine.product_query(example), image, k, [], query_label=label)
        figure.suptitle(f"{name}: more like {example}", fontsize=9)
        save_figure(figure, figures / f"search_{name}.png")
        plt.close(figure)
        grids[name] = figure
    return grids
