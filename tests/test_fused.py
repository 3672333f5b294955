"""The fused recipe: type and colour heads on frozen features, the colour weight chosen on
validation, and an index of its vectors whose colour part a query can turn down or up."""
import numpy as np
import pandas as pd
import pytest

from fashion_search.data import load_catalogue
from fashion_search.models import saved
from fashion_search.models.fused import COLOUR_DIM, colour_cells_of, takes_colour
from fashion_search.params import BackboneParams, DataParams, FinetuneParams, IndexParams, SplitFractions
from fashion_search.pipeline.finetune import COLOUR_WEIGHTS_FILE, HISTORY_FILE, prepare_embedding_model
from fashion_search.models.callbacks import gallery_map
from fashion_search.pipeline.fused_training import COLOUR_WEIGHTS, colour_column_of
from fashion_search.colour import ColourError
from fashion_search.colour_grid import HISTOGRAM_DIM
from fashion_search.search.engine import SearchEngine, build_index
from fashion_search.data.photo_folder import list_photo_folder

FINETUNE = FinetuneParams(recipes=("fused",), task_columns=("articleType", "baseColour"), batch_size=8,
                          head_epochs=4, embedding_dim=16)
# Candidates of the toy model's colour weight: none of them 0, which validation on six photos picks on
# some processors (training on a CPU differs between them), leaving a colour part of zeros to test.
CANDIDATE_WEIGHTS = (0.3, 0.6)


@pytest.fixture(scope="module")
def fused_model(photo_folder, tmp_path_factory):
    data = DataParams(source="photo_folder", path=str(photo_folder), label_column="articleType",
                      split=SplitFractions(validation=0.25, test=0.25))
    catalog = load_catalogue(data, seed=0)
    folder = tmp_path_factory.mktemp("fused")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("fashion_search.pipeline.fused_training.COLOUR_WEIGHTS", CANDIDATE_WEIGHTS)
        made = prepare_embedding_model(BackboneParams("efficientnet_lite0", "none", 32), "fused", catalog, FINETUNE,
                                       folder, seed=0, fingerprint="test")
    return made, folder, catalog


def test_the_colour_column_is_the_first_task_column_besides_the_label():
    assert colour_column_of("articleType", ("articleType", "baseColour")) == "baseColour"
    assert colour_column_of("articleType", ("baseColour", "gender")) == "baseColour"
    assert colour_column_of("category", ()) is None


def test_gallery_map_excludes_each_query_and_counts_only_queries_with_a_match():
    vectors = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [1, 1]], np.float32)
    codes = np.array([0, 0, 1, 1, 2])
    assert gallery_map(vectors, codes, np.array([0, 2]), 1) == (1.0, 1.0)
    assert gallery_map(vectors, codes, np.array([4]), 2) == (0.0, 0.0)  # no other item of its code


def test_fused_training_chooses_a_weight_on_validation_and_saves_a_two_input_model(fused_model):
    made, folder, catalog = fused_model
    manifest = made.manifest
    assert made.available and takes_colour(made.model)
    assert manifest["recipe"] == "fused" and manifest["colour_column"] == "baseColour"
    assert manifest["colour_weight"] in CANDIDATE_WEIGHTS and set(CANDIDATE_WEIGHTS) <= set(COLOUR_WEIGHTS)
    assert manifest["colour_dims"] == COLOUR_DIM
    assert manifest["feature_dim"] == FINETUNE.embedding_dim + COLOUR_DIM
    assert 1 <= manifest["type_epochs"] <= FINETUNE.head_epochs and manifest["refit_on"] == "train+validation"
    history = pd.read_csv(folder / HISTORY_FILE)
    assert sorted(set(history["head"])) == ["colour", "type"] and len(history) == 2 * FINETUNE.head_epochs
    weights = pd.read_csv(folder / COLOUR_WEIGHTS_FILE)
    assert weights["colour_weight"].tolist() == list(CANDIDATE_WEIGHTS)
    assert weights.loc[weights["mean"].idxmax(), "colour_weight"] == manifest["colour_weight"]
    assert saved.is_usable(folder) and not (folder / "checkpoint").exists()  # cached features dropped


def test_a_fused_index_lets_a_query_turn_colour_off_or_up(fused_model, photo_folder, tmp_path):
    made, folder, _ = fused_model
    settings = IndexParams(model=str(folder), chunk_size=8, batch_size=4)
    index = build_index(list_photo_folder(photo_folder), tmp_path / "index", settings)
    engine = SearchEngine(index, settings)
    assert engine.colour_dims == COLOUR_DIM and index.identity["colour_weight"] == made.manifest["colour_weight"]
    query = engine.product_query("100")  # a red T-shirt
    off = engine.with_colour_match(query, 0.0).vector
    assert np.all(off[-COLOUR_DIM:] == 0) and np.linalg.norm(off) == pytest.approx(np.linalg.norm(query.vector))
    type_part = query.vector[:-COLOUR_DIM]
    assert np.allclose(off[:-COLOUR_DIM] / np.linalg.norm(off), type_part / np.linalg.norm(type_part), atol=1e-5)
    doubled = engine.search(query, k=5, match_colour=2.0)
    assert (doubled["distance"] >= 0).all()  # a longer colour part does not push distances below zero
    same_colour, colour_closeness = {}, {}
    own_colour = query.vector[-COLOUR_DIM:] / np.linalg.norm(query.vector[-COLOUR_DIM:])
    for factor in (0.0, 5.0):
        results = engine.search(query, k=5, match_colour=factor)
        same_colour[factor] = (results["baseColour"] == "Red").mean()
        parts = np.asarray(engine.index.vectors.vectors)[[int(engine.index.rows_of(i)[0]) for i in results["id"]],
                                                         -COLOUR_DIM:]
        colour_closeness[factor] = float(np.mean(parts @ own_colour / np.linalg.norm(parts, axis=1)))
    assert colour_closeness[5.0] > colour_closeness[0.0] and same_colour[5.0] >= same_colour[0.0]
    with pytest.raises(ColourError, match="0..5"):
        engine.search(query, k=5, match_colour=9.0)


def test_a_fresh_process_loads_the_fused_model_without_importing_its_layers_first(fused_model):
    import subprocess
    import sys

    _, folder, _ = fused_model
    code = ("from fashion_search.models import saved; import sys; "
            "print(len(saved.load_model(sys.argv[1]).inputs))")
    done = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("2")


def test_the_colour_grid_input_matches_the_backbone_feature_map(fused_model):
    made, folder, _ = fused_model
    assert made.model.inputs[1].shape[1:] == (1, 1, HISTOGRAM_DIM)  # Lite0 at 32 px: a 1 × 1 feature map
    assert colour_cells_of(saved.load_model(folder)) == 1


def test_the_colour_head_weighs_regions_by_what_the_backbone_sees_there():
    import keras

    from fashion_search.models.fused import AttendedColours, GridHistogram

    grid = np.zeros((1, 2, 2, HISTOGRAM_DIM), np.float32)
    grid[0, 0, 0, 3] = grid[0, 1, 1, 7] = 0.5  # two colours, each in one corner
    maps = np.zeros((1, 2, 2, 4), np.float32)
    maps[0, 0, 0] = 1.0                        # the backbone sees something in the first corner only
    attended = AttendedColours(hidden=4)
    attended([maps, grid])
    attended.scorer_hidden.set_weights([np.eye(4, dtype=np.float32), np.zeros(4, np.float32)])
    attended.scorer.set_weights([np.full((4, 1), 20.0, np.float32), np.zeros(1, np.float32)])
    histogram = keras.ops.convert_to_numpy(attended([maps, grid]))[0]
    assert histogram[3] > 0.99 > 0.01 > histogram[7]         # the first corner's colour dominates
    assert np.linalg.norm(histogram) == pytest.approx(1.0, abs=1e-3)
    whole = keras.ops.convert_to_numpy(GridHistogram()(grid))[0]
    assert whole[3] == pytest.approx(whole[7]) == pytest.approx(np.sqrt(0.5))


def test_without_a_colour_column_the_garment_histogram_is_the_colour_part(photo_folder, tmp_path):
    data = DataParams(source="photo_folder", path=str(photo_folder), label_column="articleType",
                      split=SplitFractions(validation=0.25, test=0.25))
    catalog = load_catalogue(data, seed=0)
    plain = FinetuneParams(recipes=("fused",), batch_size=8, head_epochs=2, embedding_dim=16)
    made = prepare_embedding_model(BackboneParams("efficientnet_lite0", "none", 32), "fused", catalog, plain,
                                   tmp_path, seed=0)
    assert made.manifest["colour_column"] is None and made.manifest["colour_dims"] == HISTOGRAM_DIM
    assert made.manifest["colour_epochs"] == 0
    weights = pd.read_csv(tmp_path / COLOUR_WEIGHTS_FILE)
    assert [c for c in weights.columns if "colour" in c and c != "colour_weight"] == []  # type relevance only
    assert set(pd.read_csv(tmp_path / HISTORY_FILE)["head"]) == {"type"}


def test_a_fused_model_of_the_earlier_histogram_design_is_refused_with_a_remedy(tmp_path):
    import keras

    from fashion_search.search.embedding.embedder import ModelError, load_embedder

    image, histogram = keras.Input((32, 32, 3)), keras.Input((HISTOGRAM_DIM,))
    pooled = keras.layers.GlobalAveragePooling2D()(image)
    old = keras.Model([image, histogram], keras.layers.Concatenate()([pooled, histogram]))
    saved.save_model(old, {"backbone": "efficientnet_lite0", "recipe": "fused", "weights": "none", "image_size": 32,
                           "preprocessing": "x", "colour_dims": HISTOGRAM_DIM, "colour_weight": 0.7}, tmp_path)
    with pytest.raises(ModelError, match="train it again"):
        load_embedder(IndexParams(model=str(tmp_path)))


def test_type_hidden_puts_a_relu_layer_in_the_type_head():
    from fashion_search.models.fused import build_heads

    plain = build_heads(32, (2, 2, 8), 3, 2, FINETUNE, seed=0)
    deeper = build_heads(32, (2, 2, 8), 3, 2, FinetuneParams(embedding_dim=16, type_hidden=24), seed=0)
    assert [w.shape for w in plain.type_embedding.get_weights()] == [(32, 16), (16,)]
    assert [w.shape for w in deeper.type_embedding.get_weights()] == [(32, 24), (24,), (24, 16), (16,)]
    assert deeper.type_embedding.get_layer("type_hidden").activation.__name__ == "relu"


def test_head_batches_cover_every_row_once_as_float32_beside_their_targets():
    from fashion_search.pipeline.fused_training import RowsOf, ShuffledBatches

    maps = np.arange(40, dtype=np.float16).reshape(10, 2, 2)
    rows = np.array([9, 7, 5, 3, 1])
    batches = ShuffledBatches([RowsOf(maps, rows)], np.array([90, 70, 50, 30, 10]), 2, np.random.default_rng(0))
    seen = [batches[i] for i in range(len(batches))]
    assert len(batches) == 3 and all(x.dtype == np.float32 for x, _ in seen)
    firsts = np.concatenate([x[:, 0, 0] for x, _ in seen])
    assert sorted(firsts.tolist()) == sorted(maps[rows][:, 0, 0].tolist())
    assert all((x[:, 0, 0] / 4 * 10 == y).all() for x, y in seen)   # row r holds 4r; its target is 10r
