"""Catalogue sources, each read into the one :class:`~fashion_search.data.catalog.Catalog` shape.

One dispatcher for the notebooks and the command line, one vocabulary (:data:`SOURCES`):

- ``photo_folder``: a folder of photos with an optional metadata CSV (:mod:`.photo_folder`);
- ``farfetch``: the Farfetch listings layout of the report (:mod:`.farfetch`);
- ``fashion_mnist``: the embedded default (:mod:`.fashion_mnist`).

:func:`list_catalogue` gives every item, unsplit (what the search engine indexes);
:func:`load_catalogue` gives the notebooks' view: labelled, unusable photos left out, split.
To add a format, write its ``list_<format>`` in a module here and name it in both.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fashion_search.data.catalog import (Catalog, CatalogueError, DatasetNotFoundError, drop_unusable,
                                         stratified_split, with_labels)
from fashion_search.params import DATA_SOURCES, DataParams, SplitFractions

SOURCES = DATA_SOURCES
# The command line's older spellings.
ALIASES = {"folder": "photo_folder", "fashion-mnist": "fashion_mnist"}


def source_name(text: str) -> str:
    """A source's name from its own spelling or an alias; ValueError for anything else."""
    name = ALIASES.get(text, text)
    if name not in SOURCES:
        raise ValueError(f"unknown catalogue source {text!r}; one of {', '.join(SOURCES)}")
    return name


def detect_source(path: str | Path) -> str:
    """``fashion_mnist`` for the word itself, ``farfetch`` for a folder with its listings, else ``photo_folder``."""
    from fashion_search.data.farfetch import FARFETCH_LISTINGS

    if str(path) in ("fashion-mnist", "fashion_mnist"):
        return "fashion_mnist"
    folder = Path(path)
    if not folder.is_dir():
        raise DatasetNotFoundError(f"{path} is not a folder of photos (or 'fashion-mnist')")
    return "farfetch" if (folder / FARFETCH_LISTINGS).is_file() else "photo_folder"


def list_catalogue(source: str, path: str | Path | None = None, metadata: str | Path | None = None,
                   fashion_mnist_split: str = "test") -> Catalog:
    """Every item of the catalogue at ``path`` (``None``: Fashion-MNIST's default location), unsplit.

    ``metadata`` names a photo folder's CSV; ``fashion_mnist_split`` which Fashion-MNIST
    images (``train``, ``test`` or ``all``).
    """
    source = source_name(source)
    if source == "fashion_mnist":
        from fashion_search.data.fashion_mnist import list_fashion_mnist

        return list_fashion_mnist(path, fashion_mnist_split)
    if path is None:
        raise DatasetNotFoundError(f"a {source} catalogue needs a folder")
    if source == "farfetch":
        from fashion_search.data.farfetch import list_farfetch

        return list_farfetch(path)
    from fashion_search.data.photo_folder import list_photo_folder

    return list_photo_folder(path, metadata)


def load_catalogue(data: DataParams, seed: int) -> Catalog:
    """The catalogue ``data`` names, as the notebooks use it: labelled by ``data.label_column``,
    unusable photos left out (and listed), split train / validation / test.

    Fashion-MNIST draws ``data.per_class`` items per category and split; photo catalogues are
    split stratified by label (a Farfetch product's photos share a split). With
    ``data.evaluation_path`` (:func:`with_evaluation_photos`), every photo of ``data.path`` trains
    and the other folder's photos are only validated and tested on.
    """
    if data.source == "fashion_mnist":
        from fashion_search.data.fashion_mnist import load_fashion_mnist

        return load_fashion_mnist(data, seed)
    if data.evaluation_path:
        return with_evaluation_photos(data, seed)
    catalog = with_labels(drop_unusable(list_catalogue(data.source, data.path)), data.label_column)
    groups = catalog.items["product_id"].to_numpy() if data.source == "farfetch" else None
    catalog.items["split"] = stratified_split(catalog.items["label"].to_numpy(), data.split, seed, groups=groups)
    return catalog


def with_evaluation_photos(data: DataParams, seed: int) -> Catalog:
    """Training photos from ``data.path`` and evaluation photos from ``data.evaluation_path``.

    Every photo of ``data.path`` is ``train``. The evaluation photos are split once, stratified by
    label with ``seed``: a share ``data.split.test`` of each class is ``test``, the rest
    ``validation``; no evaluation photo is trained on. Column ``in_catalogue`` marks the evaluation
    photos: they are the catalogue 04 searches, the one the model is judged on.
    """
    training = list_catalogue(data.source, data.path)
    evaluation = list_catalogue(data.source, data.evaluation_path)
    shared = set(training.items["id"]) & set(evaluation.items["id"])
    if shared:
        raise CatalogueError(f"{len(shared)} ids are in both 'data.path' and 'data.evaluation_path' "
                             f"(e.g. {sorted(shared)[0]}); the evaluation photos must be other products")
    training.items["in_catalogue"], evaluation.items["in_catalogue"] = False, True
    both = Catalog(pd.concat([training.items, evaluation.items], ignore_index=True),
                   np.concatenate([training.images, evaluation.images]),
                   skipped=pd.concat([training.skipped, evaluation.skipped], ignore_index=True))
    catalog = with_labels(drop_unusable(both), data.label_column)
    held = catalog.items["in_catalogue"].to_numpy(bool)
    catalog.items["split"] = "train"
    catalog.items.loc[held, "split"] = evaluation_split(catalog.items[data.label_column][held].to_numpy(),
                                                       data.split.test, seed)
    return catalog


def evaluation_split(labels: np.ndarray, test: float, seed: int) -> np.ndarray:
    """``test`` or ``validation`` per evaluation photo: a share ``test`` of each label's photos
    (stratified, ``seed``) is test. Benchmarks split the evaluation photos alone the same way."""
    codes = np.unique(np.asarray(labels, str), return_inverse=True)[1]
    halves = stratified_split(codes, SplitFractions(validation=0.0, test=test), seed)
    return np.where(halves == "test", "test", "validation")


def check_catalogue(data: DataParams, columns: list[str]) -> None:
    """Raise now if the catalogue's files cannot be had (:class:`DatasetNotFoundError`) or lack
    one of ``columns`` (ValueError).

    Cheap where the files are local; without them, keras.datasets downloads (and caches) them.
    """
    if data.source == "fashion_mnist":
        from fashion_search.data.fashion_mnist import read_fashion_mnist

        read_fashion_mnist(data.path)
        available = ["category"]
    else:
        available = list(list_catalogue(data.source, data.path).items.columns)
    _check_columns(available, columns, f"the {data.source} catalogue")
    if data.evaluation_path:
        _check_columns(list(list_catalogue(data.source, data.evaluation_path).items.columns), columns,
                       "the catalogue in 'data.evaluation_path'")


def _check_columns(available: list[str], columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in available]
    if missing:
        raise ValueError(f"{what} has no column '{missing[0]}' (asked for by the "
                         f"parameters); its columns: {', '.join(available)}")
