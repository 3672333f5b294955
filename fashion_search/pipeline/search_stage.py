"""Stage 06: the run's test catalogue in the search engine, one index per embedding model.

:func:`build_run_indexes` indexes the test items with each model the notebooks prepared
(frozen and fine-tuned alike); :func:`example_grids` draws "more like" one fixed item with
each model; :func:`shopper_photos` searches shopper-like photos of the test items with and
without the garment localiser. The interactive panel is :func:`fashion_search.search.widget.search_widget`.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from fashion_search.data.backgrounds import BackgroundsMissingError, load_backgrounds
from fashion_search.data.catalog import Catalog
from fashion_search.figures import save_figure
from fashion_search.layout import RunLayout, variants
from fashion_search.models import saved
from fashion_search.params import IndexParams, Params
from fashion_search.search.embedding.embedder import Embedder, ModelError, check_identity, load_embedder
from fashion_search.search.engine import SearchEngine, build_index
from fashion_search.search.index.store import ProductIndexError, open_index
from fashion_search.pipeline import shopper_queries
from fashion_search.pipeline.shopper_figure import example_figure
from fashion_search.search.widget import item_images, search_grid

SHOPPER_COLUMNS = ("subCategory", "articleType", "baseColour")  # what made shopper photos need of a catalogue


def _index_of(folder: Path, settings: IndexParams, catalog: Catalog, embedder: Embedder) -> SearchEngine | None:
    """The index in ``folder`` if it was built with this model over exactly this catalogue."""
    try:
        index = open_index(folder, settings)
        check_identity(index.identity, embedder.identity, str(folder))
    except (ProductIndexError, ModelError):
        return None
    same_items = sorted(index.products["id"][index.live].astype(str)) == sorted(catalog.items["id"].astype(str))
    return SearchEngine(index, settings, embedder) if same_items else None


def build_run_indexes(params: Params, layout: RunLayout, test: Catalog) -> dict[str, SearchEngine]:
    """An engine over ``test`` for every available model of the run, keyed ``<backbone>-<recipe>``.
    An index already built with the same model over the same items is opened as it is (a notebook
    run by hand leaves the batch run's indexes alone); a missing or stale one is rebuilt."""
    engines = {}
    for variant in variants(params):
        model = layout.model(variant)
        if not saved.is_usable(model):
            continue
        # TensorFlow, as in the features the run evaluated: a test split is too small to repay
        # a conversion to ONNX Runtime (fashion_search.search.embedding.runtime)
        settings = dataclasses.replace(params.index, model=str(model), type="auto", runtime="tensorflow")
        embedder = load_embedder(settings)
        engines[variant.name] = _index_of(layout.index(variant), settings, test, embedder) or SearchEngine(
            build_index(test, layout.index(variant), settings, overwrite=True, embedder=embedder,
                        description=f"indexing with {variant.name}"), settings, embedder)
    return engines


def example_grids(engines: dict[str, SearchEngine], catalog: Catalog, example: str, k: int,
                  figures: Path) -> dict[str, Path]:
    """"More like" one catalogue item with each model, drawn and saved as ``search_<model>.png``;
    returns the saved files (a notebook shows each with ``IPython.display.Image``)."""
    image = item_images(catalog, [example])[0]
    label = str(catalog.items.set_index(catalog.items["id"].astype(str)).loc[example, catalog.label_column])
    grids = {}
    for name, engine in engines.items():
        _, figure = search_grid(engine, catalog, engine.product_query(example), image, k, [], query_label=label)
        figure.suptitle(f"{name}: more like {example}", fontsize=9)
        grids[name] = save_figure(figure, figures / f"search_{name}.png")
    return grids


def shopper_photos(engines: dict[str, SearchEngine], catalog: Catalog, figures: Path, products: int, seed: int
                   ) -> tuple[pd.DataFrame, str, Path] | str:
    """``products`` test items made into shopper-like photos (benchmark backgrounds), searched by
    every model whole and through the garment localiser, the shipped model (else the last) also with
    each product's true mask and on two-garment photos: the table, a line on two-garment photos and an example figure (``shopper_photos.png``);
    or why it cannot run (a catalogue without photo files or those columns, backgrounds not installed)."""
    missing = [c for c in SHOPPER_COLUMNS if c not in catalog.items.columns]
    if missing or not all(isinstance(image, str) for image in catalog.images[:1]):
        return (f"shopper photos need a catalogue of photo files with {', '.join(SHOPPER_COLUMNS)} "
                "(as configs/fashion-products-dev.yaml has); this run's catalogue has not")
    try:
        backgrounds = load_backgrounds("benchmark")
    except BackgroundsMissingError as err:
        return str(err)
    items = catalog.items.assign(id=catalog.items["id"].astype(str), path=list(catalog.images)).set_index(
        "id", drop=False)
    main = next((name for name in engines if name.endswith("shipped")), list(engines)[-1])  # the engine's default
    names = [name for name in engines if name != main] + [main]
    chosen = {name: (engines[name], shopper_queries.METHODS if name == main else ("whole photo", "localiser"))
              for name in names}
    table, pairs, queries = shopper_queries.shopper_evaluation(
        chosen, items, items.sample(min(products, len(items)), random_state=seed), backgrounds, seed, products // 2)
    line = (f"Two-garment photos ({len(pairs) // 2}, every condition at once, {main}): each garment found "
            f"(box IoU ≥ 0.5) {pairs['found'].mean():.3f}; the picked garment's product in the top 10 "
            f"{pairs['picked_product_top10'].mean():.3f}.")
    return table, line, example_figure(engines[main], queries, figures / "shopper_photos.png")
