"""Fashion-MNIST, the embedded default catalogue: 70,000 grey 28×28 images in ten categories.

Read from Debian's ``dataset-fashion-mnist`` files when present (``/usr/share/datasets``),
else from a folder holding the four ``*-ubyte.gz`` files, else downloaded by
``keras.datasets`` (needs internet).
"""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pandas as pd

from fashion_search.data.catalog import Catalog, DatasetNotFoundError
from fashion_search.params import DataParams

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


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


def list_fashion_mnist(folder: str | Path | None = None, split: str = "test") -> Catalog:
    """Fashion-MNIST's ``train``, ``test`` or ``all`` images as catalogue items (``id`` like
    ``test-17``, ``category``), pixels in ``Catalog.images``."""
    arrays = read_fashion_mnist(folder)
    parts = ("train", "test") if split == "all" else (split,)
    frames, images = [], []
    for part in parts:
        x, y = arrays[part]
        frames.append(pd.DataFrame({"id": [f"{part}-{i}" for i in range(len(y))],
                                    "category": [FASHION_MNIST_CLASSES[v] for v in y]}))
        images.append(x)
    items = pd.concat(frames, ignore_index=True)
    items["split"] = "test"
    return Catalog(items, np.concatenate(images), "category")
