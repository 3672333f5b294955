import keras
import numpy as np
import pytest

from fashion_search.pipeline.features import FeatureStore, extract_features, load_feature_store, save_feature_store


class CountingModel:
    """Stands in for a Keras model: the mean of each image, and a count of batches seen."""

    def __init__(self):
        self.batches = 0

    def predict_on_batch(self, batch):
        self.batches += 1
        return np.asarray(batch).mean(axis=(1, 2))


def test_extraction_matches_the_model_and_resumes_from_saved_chunks(tmp_path):
    images = np.random.default_rng(0).integers(0, 255, (50, 28, 28), dtype=np.uint8)
    model = CountingModel()
    first = extract_features(model, images, 28, lambda x: x, batch_size=10, work_dir=tmp_path, chunk_size=20)
    assert first.shape == (50, 3) and model.batches == 5
    np.testing.assert_allclose(first[:, 0], images.reshape(50, -1).mean(axis=1), rtol=1e-5)
    # Simulate an interruption: the last chunk is lost; only it is computed again.
    sorted(tmp_path.glob("chunk_*.npz"))[-1].unlink()
    again = extract_features(model, images, 28, lambda x: x, batch_size=10, work_dir=tmp_path, chunk_size=20)
    assert model.batches == 5 + 1
    np.testing.assert_array_equal(first, again)


def test_extraction_with_a_real_keras_model(tmp_path):
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.GlobalAveragePooling2D()])
    images = np.full((3, 28, 28), 10, np.uint8)
    features = extract_features(model, images, 16, lambda x: x, batch_size=2, work_dir=tmp_path)
    np.testing.assert_allclose(features, 10.0)


def test_store_round_trip_and_manifest_check(tmp_path):
    store = FeatureStore(np.eye(3, dtype=np.float32), ["a", "b", "c"], {"backbone": "resnet50", "weights": "none"})
    save_feature_store(store, tmp_path)
    loaded = load_feature_store(tmp_path, {"backbone": "resnet50"})
    assert loaded.ids == ["a", "b", "c"]
    np.testing.assert_array_equal(loaded.features, store.features)
    with pytest.raises(ValueError, match="weights"):
        load_feature_store(tmp_path, {"weights": "imagenet"})


def test_missing_store_says_which_stage_makes_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="03"):
        load_feature_store(tmp_path / "nothing")


def test_rows_and_ids_must_align():
    with pytest.raises(ValueError):
        FeatureStore(np.zeros((2, 3)), ["only-one"], {})
