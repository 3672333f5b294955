"""The catalogue: a table of items with labels and a split, plus their images.

Every source is loaded into the one shape, :class:`Catalog`. The embedded default is
Fashion-MNIST, read from Debian's ``dataset-fashion-mnist`` files when present, otherwise
downloaded by ``keras.datasets`` (needs internet).
"""
from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fashion_search.config import DataParams, SplitFractions
from fashion_search.io import read_json, save_npy, write_json, write_text_atomic

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
SPLITS = ("train", "validation", "test")


class DatasetNotFoundError(FileNotFoundError):
    """The catalogue's files are missing; the message says how to get them."""


@dataclass
class Catalog:
    """Items (``id``, ``label``, a category column, ``split``) and their images, row-aligned.

    ``images`` holds either the pixels (uint8, ``(N, H, W)`` or ``(N, H, W, 3)``) or, for a
    catalogue of photo files, their paths (a 1-D string array), decoded in the input pipeline.
    """

    items: pd.DataFrame
    images: np.ndarray
    label_column: str = "category"
    skipped: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["id", "path", "reason"]))

    def __post_init__(self) -> None:
        if len(self.items) != len(self.images):
            raise ValueError(f"{len(self.items)} items but {len(self.images)} images")

    def __len__(self) -> int:
        return len(self.items)

    @property
    def class_names(self) -> list[str]:
        """Category names, indexed by the integer ``label``."""
        pairs = self.items[["label", self.label_column]].drop_duplicates().sort_values("label")
        return pairs[self.label_column].tolist()

    def subset(self, split: str) -> "Catalog":
        """The items of one split, in catalogue order."""
        mask = (self.items["split"] == split).to_numpy()
        return Catalog(self.items[mask].reset_index(drop=True), self.images[mask], self.label_column)


# ----------------------------------------------------------------------------- Fashion-MNIST
def read_idx(path: str | Path) -> np.ndarray:
    """Read a gzipped IDX file (the MNIST format) into a uint8 array."""
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: expected {int(np.prod(shape))} values, found {array.size}")
    return array.reshape(shape)


def _missing_fashion_mnist_files(folder: Path) -> list[str]:
    return [name for pair in FASHION_MNIST_FILES.values() for name in pair if not (folder / name).is_file()]


def read_fashion_mnist(folder: str | Path | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Return ``{"train": (images, labels), "test": (images, labels)}``.

    ``folder=None`` uses the Debian package's folder when it exists, else keras.datasets.
    """
    if folder is None and not FASHION_MNIST_DIR.is_dir():
        return _download_fashion_mnist()
    folder = Path(folder or FASHION_MNIST_DIR)
    missing = _missing_fashion_mnist_files(folder)
    if missing:
        raise DatasetNotFoundError(
            f"Fashion-MNIST files are missing from {folder}: {', '.join(missing)}. Install them with "
            "'apt-get install dataset-fashion-mnist' (Debian/Ubuntu), or set data.path to a folder "
            "holding the four *-ubyte.gz files, or data.path: null to download them with keras."
        )
    return {
        split: (read_idx(folder / images), read_idx(folder / labels))
        for split, (images, labels) in FASHION_MNIST_FILES.items()
    }


def _download_fashion_mnist() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
    except Exception as err:  # keras raises a bare Exception when the download fails
        raise DatasetNotFoundError(
            f"Fashion-MNIST is not installed in {FASHION_MNIST_DIR} and could not be downloaded "
            f"({err}). Install it with 'apt-get install dataset-fashion-mnist', or set data.path "
            "to a folder holding the four *-ubyte.gz files."
        ) from err
    return {"train": (x_train, y_train), "test": (x_test, y_test)}


def _sample_per_class(labels: np.ndarray, counts: list[int | None], rng: np.random.Generator) -> list[np.ndarray]:
    """Disjoint random index sets, ``counts[j]`` per class for set j (None: all that remain)."""
    chosen: list[list[np.ndarray]] = [[] for _ in counts]
    for label in np.unique(labels):
        pool = rng.permutation(np.flatnonzero(labels == label))
        start = 0
        for j, count in enumerate(counts):
            stop = len(pool) if count is None else start + count
            if stop > len(pool):
                raise ValueError(f"class {label} has {len(pool)} images, fewer than the {sum(c or 0 for c in counts)} asked for")
            chosen[j].append(pool[start:stop])
            start = stop
    return [np.sort(np.concatenate(parts)) for parts in chosen]


def load_fashion_mnist(data: DataParams, seed: int) -> Catalog:
    """Fashion-MNIST as a catalogue: train/validation drawn from its training set, test from its test set."""
    arrays = read_fashion_mnist(data.path)
    rng = np.random.default_rng(seed)
    per_class = data.per_class
    train_x, train_y = arrays["train"]
    test_x, test_y = arrays["test"]
    train_idx, val_idx = _sample_per_class(train_y, [per_class.train, per_class.validation], rng)
    (test_idx,) = _sample_per_class(test_y, [per_class.test], rng)
    parts = [("train", "train", train_idx, train_x, train_y),
             ("validation", "train", val_idx, train_x, train_y),
             ("test", "test", test_idx, test_x, test_y)]
    frames, images = [], []
    for split, source, idx, x, y in parts:
        frames.append(pd.DataFrame({
            "id": [f"{source}-{i}" for i in idx],
            "label": y[idx].astype(int),
            "category": [FASHION_MNIST_CLASSES[v] for v in y[idx]],
            "split": split,
        }))
        images.append(x[idx])
    return Catalog(pd.concat(frames, ignore_index=True), np.concatenate(images))


# ----------------------------------------------------------------------------- splits
def stratified_split(labels: np.ndarray, fractions: SplitFractions, seed: int,
                     groups: np.ndarray | None = None) -> np.ndarray:
    """A split name per item, the same share of every class in each split.

    Per class of n items: round(n·test) test items and round(n·validation) validation items, at
    least one test item once n ≥ 2 and one validation item once n ≥ 3; the rest train. A class
    of one item goes to train (it could never be a scored query). With ``groups`` (a product id
    per photo), whole groups are split, labelled by their first item, so the photos of one
    product share a split.
    """
    if groups is not None:
        _, first, inverse = np.unique(np.asarray(groups, str), return_index=True, return_inverse=True)
        return stratified_split(np.asarray(labels)[first], fractions, seed)[inverse]
    rng = np.random.default_rng(seed)
    split = np.full(len(labels), "train", dtype=object)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n = len(members)
        n_test = max(int(round(n * fractions.test)), 1 if n >= 2 else 0)
        n_val = max(int(round(n * fractions.validation)), 1 if n >= 3 and fractions.validation > 0 else 0)
        n_val = min(n_val, n - n_test - 1) if n > n_test else 0
        split[members[:n_test]] = "test"
        split[members[n_test:n_test + n_val]] = "validation"
    return split


def relevance_codes(items: pd.DataFrame, definition: str) -> np.ndarray:
    """One integer per item, equal for items relevant to each other under ``definition``
    (a column, or columns joined by '+' that must all match)."""
    columns = definition.split("+")
    missing = [c for c in columns if c not in items.columns]
    if missing:
        raise ValueError(f"relevance '{definition}': the catalogue has no column '{missing[0]}'")
    keys = items[columns].astype(str).agg("\x1f".join, axis=1)
    return pd.factorize(keys)[0]


# ----------------------------------------------------------------------------- on disk
def save_catalog(catalog: Catalog, folder: str | Path) -> None:
    """Write ``items.csv``, ``images.npy``, ``skipped.csv`` (photos left out, and why) and a
    manifest into ``folder`` (each atomically)."""
    folder = Path(folder)
    save_npy(folder / "images.npy", catalog.images)
    write_text_atomic(folder / "items.csv", catalog.items.to_csv(index=False))
    write_text_atomic(folder / "skipped.csv", catalog.skipped.to_csv(index=False))
    counts = catalog.items.groupby("split").size().to_dict()
    write_json(folder / "manifest.json", {
        "label_column": catalog.label_column,
        "items": len(catalog),
        "skipped": len(catalog.skipped),
        "per_split": {k: int(v) for k, v in counts.items()},
        "image_shape": list(catalog.images.shape[1:]),
    })


def load_catalog(folder: str | Path) -> Catalog:
    """Read a catalogue written by :func:`save_catalog`."""
    folder = Path(folder)
    if not (folder / "manifest.json").is_file():
        raise FileNotFoundError(f"no catalogue in {folder}; run the data stage (01_data) first")
    manifest = read_json(folder / "manifest.json")
    items = pd.read_csv(folder / "items.csv", dtype={"id": str})
    catalog = Catalog(items, np.load(folder / "images.npy"), manifest["label_column"])
    if (folder / "skipped.csv").is_file():
        catalog.skipped = pd.read_csv(folder / "skipped.csv", dtype={"id": str})
    return catalog
