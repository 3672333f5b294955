"""Shared fixtures: a tiny synthetic Fashion-MNIST folder and a matching parameter dict."""
from __future__ import annotations

import gzip
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
# pymilvus binds log handlers to the sys.stderr of the moment it is imported: import it now, not
# inside a test whose captured stream is closed once that test ends (later log lines would crash)
import pymilvus  # noqa: F401
import pytest
import yaml

from fashion_search.data.fashion_mnist import FASHION_MNIST_FILES


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory) -> Path:
    """Models converted for ONNX Runtime go to a folder of this test session, not the user's cache."""
    folder = tmp_path_factory.mktemp("cache")
    os.environ["FASHION_SEARCH_CACHE"] = str(folder)
    return folder


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as a gzipped IDX file (the MNIST format)."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def synthetic_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """28×28 images whose stripe frequency and direction depend on the class, plus noise."""
    y, x = np.mgrid[0:28, 0:28]
    images = []
    for label in labels:
        wave = np.sin((x if label % 2 else y) * (0.3 + 0.25 * label))
        image = 127 + 100 * wave + rng.normal(0, 20, (28, 28))
        images.append(np.clip(image, 0, 255))
    return np.array(images, np.uint8)


@pytest.fixture(scope="session")
def fashion_mnist_dir(tmp_path_factory) -> Path:
    """A folder laid out like Debian's dataset-fashion-mnist, with 40 train and 12 test images per class."""
    folder = tmp_path_factory.mktemp("fashion-mnist")
    rng = np.random.default_rng(0)
    for split, per_class in (("train", 40), ("test", 12)):
        labels = rng.permutation(np.repeat(np.arange(10), per_class)).astype(np.uint8)
        images_name, labels_name = FASHION_MNIST_FILES[split]
        write_idx(folder / images_name, synthetic_images(labels, rng))
        write_idx(folder / labels_name, labels)
    return folder


@pytest.fixture
def raw_params(fashion_mnist_dir) -> dict:
    """A small valid parameter dict (as read from YAML) over the synthetic folder."""
    return {
        "run": "test",
        "seed": 1,
        "data": {"source": "fashion_mnist", "path": str(fashion_mnist_dir),
                 "per_class": {"train": 10, "validation": 4, "test": 8}},
        "backbones": [{"name": "resnet50", "weights": "none", "image_size": 32}],
        "finetune": {"frozen_epochs": 1, "unfrozen_epochs": 1, "batch_size": 16},
        "features": {"batch_size": 16, "chunk_size": 32},
        "evaluate": {"ks": [1, 5, 10], "distances": ["euclidean", "cosine"]},
        "visualise": {"n_queries": 2, "top_k": 5},
    }


@pytest.fixture
def params_file(tmp_path, raw_params) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw_params))
    return path


@pytest.fixture
def damage_photos():
    """Spoils three photos of a copied photo folder's ``images/`` the ways shops see: 100.jpg
    empty, 101.jpg cut short, 103.jpg not an image at all."""
    def damage(images: Path) -> None:
        (images / "100.jpg").write_bytes(b"")
        (images / "101.jpg").write_bytes((images / "102.jpg").read_bytes()[:150])
        (images / "103.jpg").write_text("not a photo")

    return damage


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory) -> Path:
    """A folder laid out like fashion-products-dev: labels.csv and images/<id>.jpg; 3 article
    types × 2 colours × 4 photos, plus one article type with a single photo. A photo's colour is
    its baseColour, its stripe direction its articleType."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("photos")
    (folder / "images").mkdir()
    colours = {"Red": (200, 30, 30), "Blue": (30, 30, 200)}
    rows, n = [], 0
    y, x = np.mgrid[0:40, 0:30]
    kinds = [("Tshirts", x), ("Jeans", y), ("Shoes", x + y)]
    for article, coordinate in kinds:
        for colour, rgb in colours.items():
            for _ in range(4):
                stripes = (np.sin(coordinate * 0.8 + n) > 0)[..., None]
                pixels = np.where(stripes, np.array(rgb), 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / "images" / f"{100 + n}.jpg")
                rows.append(f"{100 + n},{article},{colour},Men")
                n += 1
    Image.fromarray(np.full((40, 30, 3), 90, np.uint8)).save(folder / "images" / "999.jpg")
    rows.append("999,Watches,Black,Women")
    rows.append("1000,Tshirts,Red,Men")  # listed, but its photo is missing
    (folder / "labels.csv").write_text("id,articleType,baseColour,gender\n" + "\n".join(rows) + "\n")
    return folder


@pytest.fixture(scope="session")
def farfetch_folder(tmp_path_factory) -> Path:
    """The Farfetch listings layout: four products, two of them with a cut-out and a model
    photo, one with only a cut-out, one with only a model photo; each product its own colour."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("farfetch")
    listings = [
        ("1001", "Gucci", "WOMEN", "floral silk midi dress", 1200, True, True),
        ("1002", "Nike", "MEN", "Air Max 90 sneakers", 150, True, True),
        ("1003", "Prada", "WOMEN", "leather tote bag", 2300, True, False),
        ("1004", "Acne", "MEN", "wool blend coat", 900, False, True),
    ]
    lines = ["id,brand.name,gender,shortDescription,priceInfo.finalPrice,images.cutOut,images.model"]
    for pid, brand, gender, description, price, cutout, model in listings:
        cut = f"https://cdn.example.com/{pid}_{int(pid) * 7}_300.jpg"
        mod = f"https://cdn.example.com/{pid}_{int(pid) * 11}_300.jpg"
        colour = {"1001": (200, 30, 30), "1002": (30, 60, 200), "1003": (30, 150, 40), "1004": (20, 20, 20)}[pid]
        for wanted, view, image_id in ((cutout, "cutout-img", int(pid) * 7), (model, "model-img", int(pid) * 11)):
            if wanted:
                (folder / view).mkdir(exist_ok=True)
                pixels = np.full((40, 30, 3), 255, np.uint8)
                pixels[5:35, 5:25] = colour
                pixels[5:35:4, 5:25] = (255, 255, 255) if view == "model-img" else colour  # the views differ a little
                Image.fromarray(pixels).save(folder / view / f"{pid}_{image_id}_300.jpg")
        lines.append(f"{pid},{brand},{gender},{description},{price},{cut},{mod}")
    (folder / "current_farfetch_listings.csv").write_text("\n".join(lines) + "\n")
    return folder


TINY_MODEL = ["--model", "efficientnet_lite0", "--weights", "none", "--image-size", "32"]


@pytest.fixture(scope="session")
def cli_built(photo_folder, tmp_path_factory, model_cache):
    """``cli_built(backend)``: the photo folder indexed by ``fashion-search index … --backend
    <backend>`` with the tiny model, in a process of its own, once a session per backend.
    Never used in place: tests take a copy (:func:`cli_index`), which costs far less than embedding.
    Its model conversion goes to the session's cache, whichever test (monkeypatching it) asks first."""
    built: dict[str, Path] = {}

    def build(backend: str = "faiss") -> Path:
        if backend not in built:
            folder = tmp_path_factory.mktemp(f"cli-built-{backend}") / "index"
            done = subprocess.run([sys.executable, "-m", "fashion_search.cli", "index", str(photo_folder), "--index",
                                   str(folder), *TINY_MODEL, "--backend", backend], capture_output=True, text=True,
                                  timeout=300, env={**os.environ, "FASHION_SEARCH_CACHE": str(model_cache)})
            assert done.returncode == 0, done.stderr[-2000:]
            built[backend] = folder
        return built[backend]

    return build


def copy_index(original: Path, target: Path) -> Path:
    """A copy of an index folder (its own Milvus Lite database too, if it has one)."""
    shutil.copytree(original, target, symlinks=True)
    return target


@pytest.fixture
def cli_index(cli_built, tmp_path):
    """``cli_index(backend, name)``: a copy of :func:`cli_built`'s index in this test's tmp_path."""
    return lambda backend="faiss", name="index": copy_index(cli_built(backend), tmp_path / name)
