import keras
import numpy as np
import pytest

from fashion_search.models.weights import WeightsUnavailableError
from fashion_search.models.backbones import build_feature_extractor
from fashion_search.data.fashion_mnist import load_fashion_mnist
from fashion_search.params import BackboneParams, FinetuneParams
from fashion_search.params_file import parse_params
from fashion_search.pipeline.finetune import load_embedding_model, prepare_embedding_model, unfreeze_top


def small_backbone() -> keras.Model:
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, name="c1")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Conv2D(4, 3, name="c2")(x)
    x = keras.layers.Conv2D(4, 3, name="c3")(x)
    outputs = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, outputs)


def test_unfreeze_top_trains_only_the_top_layers_and_keeps_batchnorm_frozen():
    model = small_backbone()  # layers: input, c1, bn, c2, c3, pool
    unfreeze_top(model, 0.5)
    trainable = {layer.name for layer in model.layers if layer.trainable}
    assert trainable == {"c2", "c3", "pool"}
    unfreeze_top(model, 1.0)
    assert not model.get_layer("bn").trainable and model.get_layer("c1").trainable


@pytest.mark.parametrize("name, dim", [
    ("vgg16", 4096), ("resnet50", 2048), ("inceptionv3", 2048), ("efficientnetv2_b0", 1280),
    ("mobilenetv3_large", 960), ("convnext_tiny", 768),
    ("efficientnet_lite0", 1280), ("efficientnet_lite1", 1280), ("efficientnet_lite2", 1280),
])
def test_registry_backbones_give_their_documented_feature_dimension(name, dim):
    size = 75 if name == "inceptionv3" else 32
    model, source = build_feature_extractor(name, "none", size)
    assert model.output_shape == (None, dim)
    assert source.kind == "random"


def test_unloadable_imagenet_weights_are_reported_not_raised(tmp_path, raw_params, monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://example.invalid/resnet50.h5: no network")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty-keras-home"))
    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(WeightsUnavailableError, match="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"):
        build_feature_extractor("resnet50", "imagenet", 32)

    params = parse_params(raw_params)
    catalog = load_fashion_mnist(params.data, params.seed)
    backbone = BackboneParams("resnet50", "imagenet", 32)
    result = prepare_embedding_model(backbone, "softmax", catalog, FinetuneParams(), tmp_path, seed=0)
    assert not result.available
    assert "download failed" in result.manifest["reason"] and "empty-keras-home" in result.manifest["remedy"]
    assert not (tmp_path / "embedding.keras").exists()
    assert not load_embedding_model(tmp_path, backbone, "softmax").available


def test_frozen_model_is_saved_and_loading_refuses_other_settings(tmp_path, raw_params):
    params = parse_params(raw_params)
    catalog = load_fashion_mnist(params.data, params.seed)
    backbone = BackboneParams("resnet50", "none", 32)
    made = prepare_embedding_model(backbone, "frozen", catalog, FinetuneParams(), tmp_path, seed=0)
    loaded = load_embedding_model(tmp_path, backbone, "frozen")
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded.model.predict_on_batch(x), made.model.predict_on_batch(x), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="image_size"):
        load_embedding_model(tmp_path, BackboneParams("resnet50", "none", 64), "frozen")
    with pytest.raises(ValueError, match="recipe"):
        load_embedding_model(tmp_path, backbone, "cosface")




def test_the_summary_table_shows_counts_as_counts_and_a_dash_where_frozen_has_none():
    from fashion_search.pipeline.model_summary import summary_table

    table = summary_table({
        "lite0-frozen": {"available": True, "weights": "imagenet", "image_size": 128, "feature_dim": 1280},
        "lite0-softmax": {"available": True, "weights": "imagenet", "image_size": 128, "feature_dim": 1280,
                          "trained_on": ["category"], "epochs": 6.0, "best_epoch": 5.0, "best_val_map": 0.87591,
                          "train_seconds": 101.25},
        "vgg16-frozen": {"available": False}}).set_index("model")
    assert table.index.tolist() == ["lite0-frozen", "lite0-softmax"]
    assert table.loc["lite0-softmax", ["trained_on", "epochs", "best_val_map", "train_seconds"]].tolist() == [
        "category", "6", "0.8759", "101.2"]
    assert table.loc["lite0-frozen", "epochs"] == "-" and "nan" not in table.to_string().lower()
