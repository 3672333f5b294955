"""Catalogue sources: photo folders (recursive, optional CSV), the Farfetch layout, Fashion-MNIST."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fashion_search.data import load_catalogue
from fashion_search.data.catalog import stratified_split
from fashion_search.data.farfetch import category_from_description, list_farfetch
from fashion_search.data.fashion_mnist import list_fashion_mnist
from fashion_search.data.photo_folder import list_photo_folder
from fashion_search.params import DataParams, SplitFractions


def photo(path, colour=(120, 30, 30), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 16), colour).save(path, format=fmt)


def test_a_folder_without_csv_is_searched_recursively_and_its_subfolders_are_categories(tmp_path):
    photo(tmp_path / "shoes" / "runner.jpg")
    photo(tmp_path / "shoes" / "trail" / "boot.png")
    photo(tmp_path / "bags" / "tote.webp", fmt="WEBP")
    photo(tmp_path / "loose.jpeg")
    (tmp_path / "notes.txt").write_text("not a photo")
    photo(tmp_path / ".cache" / "hidden.jpg")
    catalog = list_photo_folder(tmp_path)
    rows = dict(zip(catalog.items["id"], catalog.items["category"]))
    assert rows == {"tote": "bags", "loose": "unknown", "runner": "shoes", "boot": "shoes"}
    assert all(p.endswith((".jpg", ".png", ".webp", ".jpeg")) for p in catalog.images)


def test_repeated_file_names_get_path_ids(tmp_path):
    photo(tmp_path / "a" / "1.jpg")
    photo(tmp_path / "b" / "1.jpg")
    assert sorted(list_photo_folder(tmp_path).items["id"]) == ["a.1", "b.1"]  # safe ids: no slash


def test_a_metadata_csv_gives_the_rows_and_lists_what_does_not_match(tmp_path):
    photo(tmp_path / "images" / "11.jpg")
    photo(tmp_path / "images" / "12.jpg")
    photo(tmp_path / "images" / "13.jpg")
    (tmp_path / "metadata.csv").write_text("id,category,price\n11,shoes,80\n12,bags,\n14,bags,30\n")
    catalog = list_photo_folder(tmp_path)
    assert catalog.items["id"].tolist() == ["11", "12"] and catalog.items["price"].tolist()[0] == 80
    reasons = dict(zip(catalog.skipped["id"], catalog.skipped["reason"]))
    assert reasons == {"14": "file missing", "13": "no row in metadata.csv"}


def test_the_farfetch_layout_gives_two_photos_per_product_and_derived_categories(farfetch_folder):
    catalog = list_farfetch(farfetch_folder)
    items = catalog.items
    assert len(items) == 6 and set(catalog.skipped["id"]) == {"1003_model", "1004_cutout"}
    assert items.groupby("product_id").size().to_dict() == {"1001": 2, "1002": 2, "1003": 1, "1004": 1}
    categories = items.drop_duplicates("product_id").set_index("product_id")["category"].to_dict()
    assert categories == {"1001": "dresses", "1002": "shoes", "1003": "bags", "1004": "outerwear"}
    first = items.iloc[0]
    assert (first["brand"], first["gender"], first["price"]) == ("Gucci", "WOMEN", 1200)


def test_farfetch_splits_keep_a_products_photos_together(farfetch_folder):
    data = DataParams(source="farfetch", path=str(farfetch_folder), label_column="category",
                      split=SplitFractions(validation=0.0, test=0.5))
    catalog = load_catalogue(data, seed=0)
    assert (catalog.items.groupby("product_id")["split"].nunique() == 1).all()


def test_grouped_stratified_split():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    groups = np.array(["a", "a", "b", "b", "c", "c", "d", "d"])
    split = stratified_split(labels, SplitFractions(0.0, 0.5), seed=1, groups=groups)
    assert all(split[i] == split[i + 1] for i in range(0, 8, 2)) and sorted(set(split)) == ["test", "train"]


@pytest.mark.parametrize("description, category", [
    ("cotton crew-neck T-shirt", "tops"), ("slim-fit jeans", "bottoms"), ("shirt dress", "dresses"),
    ("leather ankle boots", "shoes"), ("gold-tone hoop earrings", "jewellery"), ("logo baseball cap", "accessories"),
    ("quilted puffer jacket", "outerwear"), ("mini crossbody bag", "bags"), ("scented candle", "other"),
])
def test_categories_come_from_description_keywords(description, category):
    assert category_from_description(description) == category


def test_fashion_mnist_as_a_catalogue(fashion_mnist_dir):
    catalog = list_fashion_mnist(fashion_mnist_dir, "test")
    assert len(catalog) == 120 and catalog.items["id"].iloc[0] == "test-0" and catalog.images.shape == (120, 28, 28)
    assert len(list_fashion_mnist(fashion_mnist_dir, "all")) == 520
