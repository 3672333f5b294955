import copy
import re

import pytest
import yaml

from fashion_search.params import ConfigError
from fashion_search.params_file import apply_override, load_params, parse_params


def with_change(raw: dict, path: str, value) -> dict:
    return apply_override(raw, f"{path}={yaml.safe_dump(value, default_flow_style=True).strip()}")


def test_valid_params_parse_into_typed_blocks(raw_params):
    params = parse_params(raw_params)
    assert params.backbones[0].name == "resnet50"
    assert params.backbones[0].input_size == 32
    assert params.evaluate.ks == (1, 5, 10)
    assert params.finetune.frozen_epochs == 1
    assert params.finetune.learning_rate == 0.001  # default filled in


def test_repository_params_yaml_is_valid():
    params = load_params("params.yaml")
    assert {b.name for b in params.backbones} >= {"vgg16", "resnet50", "inceptionv3"}


@pytest.mark.parametrize("path, value, key", [
    ("finetune.epochs", 3, "finetune.epochs"),                     # unknown key
    ("finetune.batch_size", "big", "finetune.batch_size"),         # wrong type
    ("finetune.batch_size", 0, "finetune.batch_size"),             # impossible value
    ("evaluate.ks", [0, 5], "evaluate.ks"),                        # k = 0
    ("evaluate.distances", ["manhattan"], "evaluate.distances"),
    ("backbones.0.image_size", 7, "backbones[0].image_size"),      # image size 7
    ("backbones.0.name", "alexnet", "backbones[0].name"),
    ("backbones.0.weights", "imagenet21k", "backbones[0].weights"),
    ("data.path", "/nonexistent/catalogue", "data.path"),          # missing catalogue path
    ("finetune.dropout", 1.5, "finetune.dropout"),
    ("visualise.top_k", 50, "visualise.top_k"),                    # more than evaluate keeps
])
def test_bad_values_are_rejected_naming_the_key(raw_params, path, value, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        parse_params(with_change(raw_params, path, value))


def test_vgg16_imagenet_refuses_a_size_its_dense_layers_cannot_take(raw_params):
    raw = copy.deepcopy(raw_params)
    raw["backbones"] = [{"name": "vgg16", "weights": "imagenet", "image_size": 64}]
    with pytest.raises(ConfigError, match="must be 224"):
        parse_params(raw)


def test_duplicate_backbones_are_rejected(raw_params):
    raw = copy.deepcopy(raw_params)
    raw["backbones"] = ["resnet50", "resnet50"]
    with pytest.raises(ConfigError, match="twice"):
        parse_params(raw)


def test_overrides_reach_nested_keys_and_list_items(raw_params):
    raw = apply_override(raw_params, "finetune.frozen_epochs=3")
    raw = apply_override(raw, "backbones.0.weights=imagenet")
    assert raw["finetune"]["frozen_epochs"] == 3
    assert raw["backbones"][0]["weights"] == "imagenet"
    assert raw_params["finetune"]["frozen_epochs"] == 1  # the original is untouched


def test_override_into_a_missing_list_index_is_an_error(raw_params):
    with pytest.raises(ConfigError, match="index"):
        apply_override(raw_params, "backbones.5.weights=none")


def test_unreadable_yaml_is_a_config_error(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(path)


def test_finetuning_with_no_epochs_at_all_is_rejected(raw_params):
    raw = with_change(with_change(raw_params, "finetune.frozen_epochs", 0), "finetune.unfrozen_epochs", 0)
    with pytest.raises(ConfigError, match="finetune.frozen_epochs"):
        parse_params(raw)


@pytest.mark.parametrize("path, value, key", [
    ("finetune.recipes", ["softmax", "triplet"], "finetune.recipes"),
    ("finetune.recipes", ["softmax", "softmax"], "finetune.recipes"),
    ("finetune.recipes", ["multitask"], "finetune.task_columns"),   # needs two columns
    ("finetune.margin", 2.0, "finetune.margin"),
    ("evaluate.relevance", ["category+"], "evaluate.relevance"),
    ("data.split", {"validation": 0.5, "test": 0.5}, "data.split"),
    ("data.source", "photo_folder", "data.path"),                  # a photo folder needs its path
])
def test_recipe_and_relevance_values_are_checked(raw_params, path, value, key):
    raw = with_change(raw_params, path, value)
    if path == "data.source":
        raw["data"].pop("path")
    with pytest.raises(ConfigError, match=key):
        parse_params(raw)


def test_relevance_defaults_to_the_label_column_and_joins_columns(raw_params):
    assert parse_params(raw_params).evaluate.relevance == ("category",)
    raw = with_change(raw_params, "evaluate.relevance", ["articleType", "articleType + baseColour"])
    assert parse_params(raw).evaluate.relevance == ("articleType", "articleType+baseColour")


def test_dev_photo_config_is_valid_where_the_photos_are():
    from pathlib import Path

    params_path = Path("configs/fashion-products-dev.yaml")
    if not Path("../shared/data/fashion-products-dev").is_dir():
        with pytest.raises(ConfigError, match="data.path"):
            load_params(params_path)
        return
    params = load_params(params_path)
    assert params.data.source == "photo_folder" and Path(params.data.path).is_absolute()
    assert params.finetune.recipes == ("frozen", "shipped_heads", "shipped", "fused")
    assert params.backbones[0].input_size == 224
    assert params.finetune.task_columns == ("articleType", "baseColour")


def test_the_shipped_model_config_trains_on_the_small_photos_and_judges_on_the_dev_photos():
    from pathlib import Path

    shared = Path("../shared/data")
    if not (shared / "fashion-products-small").is_dir() or not (shared / "fashion-products-dev").is_dir():
        with pytest.raises(ConfigError, match="data.path|data.evaluation_path"):
            load_params(Path("configs/fashion-products-small.yaml"))
        return
    params = load_params(Path("configs/fashion-products-small.yaml"))
    assert Path(params.data.path).name == "fashion-products-small"
    assert Path(params.data.evaluation_path).name == "fashion-products-dev"
    assert params.finetune.recipes == ("frozen", "fused") and params.data.split.test == 0.5


def test_the_shipped_recipe_needs_lite0_at_224(raw_params):
    raw = with_change(raw_params, "finetune.recipes", ["frozen", "shipped"])
    with pytest.raises(ConfigError, match="shipped"):
        parse_params(raw)   # the fixture's backbone is resnet50 at 32 px
    raw = with_change(raw, "backbones", [{"name": "efficientnet_lite0", "weights": "imagenet", "image_size": 224}])
    assert parse_params(raw).finetune.recipes == ("frozen", "shipped")


def test_evaluation_path_must_be_a_folder_of_a_photo_catalogue(raw_params, tmp_path):
    with pytest.raises(ConfigError, match="evaluation_path"):
        parse_params(with_change(raw_params, "data.evaluation_path", str(tmp_path / "missing")))
    with pytest.raises(ConfigError, match="evaluation_path"):
        parse_params(with_change(raw_params, "data.evaluation_path", str(tmp_path)))   # fashion_mnist source


def test_the_paper_config_runs_the_reports_backbones_at_their_native_sizes(farfetch_folder):
    from pathlib import Path

    with pytest.raises(ConfigError, match="data.path"):  # the Farfetch folder must be named
        load_params(Path("configs/paper.yaml"))
    params = load_params(Path("configs/paper.yaml"), [f"data.path={farfetch_folder}"])
    assert params.data.source == "farfetch" and params.evaluate.relevance == ("category",)
    sizes = {backbone.name: backbone.input_size for backbone in params.backbones}
    assert sizes == {"vgg16": 224, "resnet50": 224, "inceptionv3": 299, "efficientnet_lite0": 224}
    assert "softmax" in params.finetune.recipes and "euclidean" in params.evaluate.distances


@pytest.mark.parametrize("block, message", [
    ({"type": "annoy"}, "'index.type' must be one of auto, flat, hnsw, ivfpq"),
    ({"metric": "cosine"}, "'index.metric' must be one of inner_product, l2"),
    ({"hnsw_m": 0}, "index.hnsw_m"),
    ({"image_size": 8}, "index.image_size"),
    ({"memory_budget": 8}, "memory_budget"),
    ({"backend": "annoy"}, "'index.backend' must be one of faiss, milvus"),
    ({"runtime": "tflite"}, "'index.runtime' must be one of auto, onnx, tensorflow"),
    ({"backend": "milvus", "uri": "ftp://milvus:19530"}, "'index.uri' must start with http://, https:// or tcp://"),
    ({"backend": "milvus", "uri": 19530}, "'index.uri' must be a Milvus address"),
])
def test_a_bad_index_block_is_refused_by_key(raw_params, block, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_params({**raw_params, "index": block})


def test_a_milvus_backend_and_its_uri_are_read(raw_params):
    index = parse_params({**raw_params, "index": {"backend": "milvus", "uri": " http://milvus:19530 "}}).index
    assert (index.backend, index.uri) == ("milvus", "http://milvus:19530")
    assert parse_params(raw_params).index.backend == "faiss" and parse_params(raw_params).index.uri is None
