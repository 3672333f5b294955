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

from fashion_search.data.catalog import Catalog, DatasetNotFoundError, drop_unusable, stratified_split, with_labels
from fashion_search.params import DATA_SOURCES, DataParams

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
    split stratified by label (a Farfetch product's photos share a split).
    """
    if data.source == "fashion_mnist":
        from fashion_search.data.fashion_mnist import load_fashion_mnist

        return load_fashion_mnist(data, seed)
    catalog = with_labels(drop_unusable(list_catalogue(data.source, data.path)), data.label_column)
    groups = catalog.items["product_id"].to_numpy() if data.source == "farfetch" else None
    catalog.items["split"] = stratified_split(catalog.items["label"].to_numpy(), data.split, seed, groups=groups)
    return catalog


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
    missing = [c for c in columns if c not in available]
    if missing:
        raise ValueError(f"the {data.source} catalogue has no column '{missing[0]}' (asked for by the "
                         f"parameters); its columns: {', '.join(available)}")
