"""``data.evaluation_path``: train on one folder of photos, choose and judge on another, never
training on the second (how the shipped model is made)."""
import shutil

import numpy as np
import pandas as pd
import pytest

from fashion_search.data import evaluation_split, load_catalogue
from fashion_search.data.catalog import CatalogueError, load_catalog, save_catalog
from fashion_search.params import BackboneParams, DataParams, FinetuneParams, SplitFractions
from fashion_search.pipeline import fused_training
from fashion_search.pipeline.evaluate import gallery_of
from fashion_search.pipeline.finetune import prepare_embedding_model


@pytest.fixture(scope="module")
def evaluation_folder(photo_folder, tmp_path_factory):
    """The photo folder's photos again as other products (ids + 5000)."""
    folder = tmp_path_factory.mktemp("evaluation")
    (folder / "images").mkdir()
    labels = pd.read_csv(photo_folder / "labels.csv", dtype={"id": str})
    labels = labels[[(photo_folder / "images" / f"{i}.jpg").is_file() for i in labels["id"]]]
    for old in labels["id"]:
        shutil.copy(photo_folder / "images" / f"{old}.jpg", folder / "images" / f"{int(old) + 5000}.jpg")
    labels["id"] = [str(int(i) + 5000) for i in labels["id"]]
    labels.to_csv(folder / "labels.csv", index=False)
    return folder


def data_params(training, evaluation) -> DataParams:
    return DataParams(source="photo_folder", path=str(training), label_column="articleType",
                      split=SplitFractions(test=0.5), evaluation_path=str(evaluation))


def test_every_training_photo_trains_and_the_evaluation_photos_are_split_in_two(photo_folder, evaluation_folder):
    catalog = load_catalogue(data_params(photo_folder, evaluation_folder), seed=3)
    items = catalog.items
    training = ~items["in_catalogue"]
    assert (items["split"][training] == "train").all() and training.sum() == 25
    held = items[items["in_catalogue"]]
    assert set(held["split"]) == {"validation", "test"} and len(held) == 25
    for _, group in held.groupby("articleType"):   # stratified: half of each type (8 photos -> 4 test)
        assert (group["split"] == "test").sum() == round(len(group) * 0.5) or len(group) == 1
    again = evaluation_split(held["articleType"].to_numpy(), 0.5, 3)   # what benchmarks compute alone
    assert again.tolist() == held["split"].tolist()


def test_the_catalogue_protocol_searches_the_evaluation_photos_only(photo_folder, evaluation_folder, tmp_path):
    save_catalog(load_catalogue(data_params(photo_folder, evaluation_folder), seed=3), tmp_path)
    searched = load_catalog(tmp_path).searched()   # what notebooks 03-05 read
    assert searched.items["in_catalogue"].all() and len(searched) == 25 == len(searched.images)
    gallery, queries = gallery_of(searched, "catalogue")
    assert len(gallery) == 25 and (searched.items["split"].iloc[gallery[queries]] == "test").all()
    assert len(load_catalog(tmp_path)) == 50   # 02 trains on the whole


def test_a_product_in_both_folders_is_refused(photo_folder):
    with pytest.raises(CatalogueError, match="in both"):
        load_catalogue(data_params(photo_folder, photo_folder), seed=3)


def test_fused_training_never_trains_on_the_evaluation_photos(photo_folder, evaluation_folder, tmp_path,
                                                             monkeypatch):
    catalog = load_catalogue(data_params(photo_folder, evaluation_folder), seed=3)
    trained_on = []
    fit = fused_training._fit_epochs

    def spy(model, inputs, targets, *args, **kwargs):
        trained_on.append(len(targets))
        return fit(model, inputs, targets, *args, **kwargs)

    monkeypatch.setattr(fused_training, "_fit_epochs", spy)
    made = prepare_embedding_model(BackboneParams("efficientnet_lite0", "none", 32), "fused", catalog,
                                   FinetuneParams(recipes=("fused",), task_columns=("articleType", "baseColour"),
                                                  batch_size=8, head_epochs=2, embedding_dim=16),
                                   tmp_path, seed=0, fingerprint="test")
    assert trained_on == [25, 25]   # type head, colour head: the training photos only, no refit
    assert made.manifest["refit_on"] == "train"
    assert np.isfinite(made.manifest["best_val_map"])
