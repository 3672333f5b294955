import gzip

import numpy as np
import pytest

from fashion_search.data.catalog import DatasetNotFoundError, load_catalog, save_catalog
from fashion_search.data.fashion_mnist import load_fashion_mnist, read_fashion_mnist, read_idx
from fashion_search.params_file import parse_params


def test_read_idx_round_trips(fashion_mnist_dir):
    arrays = read_fashion_mnist(fashion_mnist_dir)
    images, labels = arrays["train"]
    assert images.shape == (400, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (400,) and set(labels) == set(range(10))


def test_truncated_idx_file_is_refused(tmp_path):
    path = tmp_path / "bad.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(b"\x00\x00\x08\x01" + (100).to_bytes(4, "big") + b"\x01" * 10)
    with pytest.raises(ValueError, match="truncated"):
        read_idx(path)


def test_catalog_is_subsampled_per_class_and_split(raw_params):
    params = parse_params(raw_params)
    catalog = load_fashion_mnist(params.data, params.seed)
    counts = catalog.items.groupby(["split", "label"]).size()
    assert (counts["train"] == 10).all() and (counts["validation"] == 4).all() and (counts["test"] == 8).all()
    assert catalog.images.shape == (220, 28, 28)  # stored at their own size, not upscaled
    assert not set(catalog.subset("train").items["id"]) & set(catalog.subset("validation").items["id"])
    assert catalog.class_names[0] == "T-shirt/top" and len(catalog.class_names) == 10


def test_subsampling_is_reproducible_and_seeded(raw_params):
    params = parse_params(raw_params)
    a = load_fashion_mnist(params.data, 1).items["id"].tolist()
    assert a == load_fashion_mnist(params.data, 1).items["id"].tolist()
    assert a != load_fashion_mnist(params.data, 2).items["id"].tolist()


def test_asking_for_more_than_a_class_holds_is_an_error(raw_params):
    raw_params["data"]["per_class"]["train"] = 39  # 39 + 4 validation > 40 per class
    params = parse_params(raw_params)
    with pytest.raises(ValueError, match="fewer than"):
        load_fashion_mnist(params.data, params.seed)


def test_save_and_load_catalog(tmp_path, raw_params):
    params = parse_params(raw_params)
    catalog = load_fashion_mnist(params.data, params.seed)
    save_catalog(catalog, tmp_path / "data")
    loaded = load_catalog(tmp_path / "data")
    assert loaded.items.equals(catalog.items)
    np.testing.assert_array_equal(loaded.images, catalog.images)


def load_photo_folder(folder, label_column):
    """A photo folder as the notebooks load it."""
    from fashion_search.data import load_catalogue
    from fashion_search.params import DataParams

    return load_catalogue(DataParams(source="photo_folder", path=str(folder), label_column=label_column), seed=0)


def test_missing_files_name_the_debian_package(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="dataset-fashion-mnist"):
        read_fashion_mnist(tmp_path)


def test_photo_folder_catalogue_reads_labels_and_paths(tmp_path):
    from PIL import Image

    (tmp_path / "images").mkdir()
    for product in ("11", "12", "13"):
        Image.new("RGB", (8, 10), "white").save(tmp_path / "images" / f"{product}.jpg")
    (tmp_path / "labels.csv").write_text("id,articleType\n11,Tshirts\n12,Shoes\n13,Tshirts\n14,Shoes\n")
    catalog = load_photo_folder(tmp_path, "articleType")
    assert catalog.items["id"].tolist() == ["11", "12", "13"]  # 14 has no photo
    assert catalog.items["label"].tolist() == [1, 0, 1] and catalog.images.ndim == 1
    assert catalog.images[0].endswith("images/11.jpg")
    with pytest.raises(ValueError, match="no column"):
        load_photo_folder(tmp_path, "colour")


def test_photo_folder_is_split_stratified_with_a_seed(photo_folder):
    from fashion_search.data import load_catalogue
    from fashion_search.params import DataParams, SplitFractions

    data = DataParams(source="photo_folder", path=str(photo_folder), label_column="articleType",
                      split=SplitFractions(validation=0.25, test=0.25))
    catalog = load_catalogue(data, seed=3)
    assert len(catalog) == 25 and "1000" not in set(catalog.items["id"])  # missing photo dropped
    counts = catalog.items.groupby(["articleType", "split"]).size().unstack(fill_value=0)
    for article in ("Tshirts", "Jeans", "Shoes"):  # 8 photos each: 2 test, 2 validation, 4 train
        assert counts.loc[article].to_dict() == {"test": 2, "train": 4, "validation": 2}
    assert counts.loc["Watches"].to_dict() == {"test": 0, "train": 1, "validation": 0}  # a single photo trains
    assert catalog.items["split"].tolist() == load_catalogue(data, seed=3).items["split"].tolist()
    assert catalog.items["split"].tolist() != load_catalogue(data, seed=4).items["split"].tolist()


def test_small_classes_still_get_a_test_item():
    from fashion_search.data.catalog import stratified_split
    from fashion_search.params import SplitFractions

    split = stratified_split(np.array([0, 0, 1, 1, 1, 2]), SplitFractions(0.15, 0.2), seed=0)
    assert list(split[:2]).count("test") == 1 and list(split[:2]).count("train") == 1
    assert sorted(split[2:5]) == ["test", "train", "validation"]
    assert split[5] == "train"


def test_relevance_codes_match_on_every_column():
    import pandas as pd

    from fashion_search.data.catalog import relevance_codes

    items = pd.DataFrame({"articleType": ["Tshirts", "Tshirts", "Jeans", "Tshirts"],
                          "baseColour": ["Red", "Blue", "Red", "Red"]})
    single = relevance_codes(items, "articleType")
    assert single[0] == single[1] == single[3] != single[2]
    both = relevance_codes(items, "articleType+baseColour")
    assert both[0] == both[3] and len({both[0], both[1], both[2]}) == 3
    with pytest.raises(ValueError, match="no column 'season'"):
        relevance_codes(items, "articleType+season")


def test_check_catalogue_names_a_missing_column(photo_folder):
    from fashion_search.data import check_catalogue
    from fashion_search.params import DataParams

    data = DataParams(source="photo_folder", path=str(photo_folder), label_column="articleType")
    check_catalogue(data, ["articleType", "baseColour"])
    with pytest.raises(ValueError, match="no column 'colour'.*baseColour"):
        check_catalogue(data, ["articleType", "colour"])


def test_unusable_photos_are_skipped_and_listed_with_the_reason(photo_folder, tmp_path):
    import shutil

    from PIL import Image

    folder = tmp_path / "photos"
    shutil.copytree(photo_folder, folder)
    images = folder / "images"
    (images / "100.jpg").write_bytes(b"")                                    # zero bytes
    (images / "101.jpg").write_bytes((images / "102.jpg").read_bytes()[:200])  # truncated
    (images / "103.jpg").write_text("id,name\n1,not a photo\n")             # not an image
    Image.new("RGB", (8, 8)).save(images / "104.jpg", format="TIFF")        # any readable format is used
    catalog = load_photo_folder(folder, "articleType")
    reasons = dict(zip(catalog.skipped["id"], catalog.skipped["reason"]))
    assert reasons["100"] == "empty file" and reasons["1000"] == "file missing"
    assert reasons["101"].startswith("not a readable image") and reasons["103"].startswith("not a readable image")
    assert "104" in set(catalog.items["id"])
    assert len(catalog) == 25 - 3 and not set(reasons) & set(catalog.items["id"])
    save_catalog(catalog, tmp_path / "saved")
    assert load_catalog(tmp_path / "saved").skipped["id"].tolist() == catalog.skipped["id"].tolist()
