"""The engine's model: a backbone by name or a model folder from the notebooks, and its identity."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fashion_search.params import IndexParams
from fashion_search.search.embedding.embedder import ModelError, check_identity, load_embedder


@pytest.fixture(scope="module")
def trained_folder(tmp_path_factory):
    """A folder laid out like outputs/<run>/models/<backbone>/<recipe>: embedding.keras + manifest."""
    import keras

    folder = tmp_path_factory.mktemp("cosface")
    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    keras.Model(inputs, keras.layers.Dense(8, name="embedding")(pooled)).save(folder / "embedding.keras")
    manifest = {"available": True, "backbone": "efficientnet_lite0", "recipe": "cosface", "weights": "imagenet",
                "image_size": 32, "preprocessing": "(x - 127) / 128 on RGB 0..255"}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_a_trained_model_folder_embeds_with_its_own_size_and_identity(trained_folder):
    embedder = load_embedder(IndexParams(model=str(trained_folder)))
    identity = embedder.identity
    assert (identity["recipe"], identity["dim"], identity["image_size"], embedder.image_size) == ("cosface", 8, 32, 32)
    assert len(identity["weights_sha256"]) == 64
    vectors = embedder.embed(np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8))
    assert vectors.shape == (3, 8) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    frozen = load_embedder(IndexParams(model="efficientnet_lite0", weights="none", image_size=32))
    with pytest.raises(ModelError, match="recipe, weights_sha256, dim differ"):
        check_identity(identity, frozen.identity, "here")


def test_an_unknown_model_or_an_unusable_folder_is_refused(tmp_path):
    with pytest.raises(ModelError, match="neither a model folder"):
        load_embedder(IndexParams(model="resnet5O"))
    (tmp_path / "manifest.json").write_text(json.dumps({"available": False, "reason": "weights unavailable"}))
    with pytest.raises(ModelError, match="holds no usable model .weights unavailable"):
        load_embedder(IndexParams(model=str(tmp_path)))
