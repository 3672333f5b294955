"""The model shipped before the tuned one (recipe ``shipped_heads``): its files are the ones its
provenance names, it builds as heads on the frozen Lite0, and a damaged file is refused."""
import shutil

import numpy as np
import pytest

from fashion_search.io import file_sha256
from fashion_search.models import shipped_heads
from fashion_search.models.shipped import ShippedModelError, build_shipped


@pytest.fixture(scope="module")
def record() -> dict:
    return shipped_heads.provenance()


def test_its_files_are_the_ones_its_provenance_names(record):
    assert record["name"] == shipped_heads.NAME and record["weights_file"] == shipped_heads.WEIGHTS_FILE.name
    assert file_sha256(shipped_heads.WEIGHTS_FILE) == record["weights_sha256"]
    assert record["recipe"] == "fused" and record["top_layers"] == []   # heads only: the backbone stays ImageNet's
    assert record["released_as"]["name"] == "fashion_lite0" and shipped_heads.WEIGHTS_FILE.stat().st_size < 2 * 10**6
    with np.load(shipped_heads.WEIGHTS_FILE) as arrays:
        shapes = {key: list(arrays[key].shape) for key in arrays.files if not key.endswith("/scale")}
    assert shapes == record["heads"]["arrays"]
    assert shipped_heads.arrays_sha256(shipped_heads.WEIGHTS_FILE) == record["released_as"]["arrays_sha256"]


@pytest.mark.slow
def test_it_builds_as_heads_on_the_frozen_backbone(record):
    from fashion_search.colour_grid import colour_grids
    from fashion_search.models.fused import colour_cells_of

    model = shipped_heads.build_shipped_heads(record)
    photos = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3)).astype(np.uint8)
    grids = colour_grids(photos, colour_cells_of(model))
    vectors = np.asarray(model({"image": photos.astype(np.float32), "colour": grids}))
    assert vectors.shape == (2, record["dim"]) and np.isfinite(vectors).all()
    type_part = vectors[:, :record["heads"]["embedding_dim"]]
    assert np.allclose(np.linalg.norm(type_part, axis=1), 1.0, atol=1e-3)   # the type embedding is L2-normalised


def test_a_damaged_weights_file_is_refused_before_anything_is_built(record, tmp_path):
    damaged = tmp_path / shipped_heads.WEIGHTS_FILE.name
    shutil.copyfile(shipped_heads.WEIGHTS_FILE, damaged)
    damaged.write_bytes(damaged.read_bytes()[:-10])
    with pytest.raises(ShippedModelError, match="damaged or changed.*git checkout"):
        build_shipped(damaged, record, shipped_heads.REMEDY)


@pytest.mark.slow
def test_the_pipeline_prepares_it_as_a_recipe_and_records_what_it_is(record, tmp_path):
    from fashion_search.params import BackboneParams, FinetuneParams
    from fashion_search.pipeline.finetune import prepare_embedding_model

    prepared = prepare_embedding_model(BackboneParams("efficientnet_lite0", "imagenet", 224), "shipped_heads", None,
                                       FinetuneParams(), tmp_path / "model", seed=42)
    assert prepared.manifest["recipe"] == "shipped_heads" and prepared.manifest["feature_dim"] == record["dim"]
    assert prepared.manifest["shipped_sha256"] == record["weights_sha256"]
    assert prepared.manifest["colour_weight"] == record["colour_weight"]
