"""What runs the engine's model: ONNX Runtime (converted, checked, cached) or TensorFlow."""
from __future__ import annotations

import json
import logging
import sys

import numpy as np
import pytest

from fashion_search.cli import main
from fashion_search.params import IndexParams
from fashion_search.search.embedding import runtime
from fashion_search.search.embedding.embedder import load_embedder


def _save_model(folder, seed: int = 0):
    """A small trained-model folder (conv, pooling, dense), laid out like the notebooks'."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 3))
    hidden = keras.layers.BatchNormalization()(keras.layers.Conv2D(6, 3, activation="relu")(inputs))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.DepthwiseConv2D(3)(hidden))
    keras.Model(inputs, keras.layers.Dense(8, name="embedding")(pooled)).save(folder / "embedding.keras")
    manifest = {"available": True, "backbone": "efficientnet_lite0", "recipe": "cosface", "weights": "imagenet",
                "image_size": 32, "preprocessing": "(x - 127) / 128 on RGB 0..255"}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FASHION_SEARCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "onnx"


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    return _save_model(tmp_path_factory.mktemp("cosface"))


def _embedder(folder, runtime_name: str = "auto"):
    return load_embedder(IndexParams(model=str(folder), normalise=False, runtime=runtime_name))


PHOTOS = np.random.default_rng(1).integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)


def test_onnx_runtime_gives_what_keras_gives_at_any_batch_size(model_folder, cache):
    embedder = _embedder(model_folder)
    assert embedder.ready() == "onnx"
    expected = embedder.model.predict_on_batch(embedder.preprocess(PHOTOS.astype(np.float32)))
    for size in (1, 2, 5):
        np.testing.assert_allclose(embedder.embed(PHOTOS[:size]), expected[:size], rtol=1e-4, atol=1e-5)
    tensorflow = _embedder(model_folder, "tensorflow")
    assert tensorflow.ready() == "tensorflow"
    np.testing.assert_allclose(tensorflow.embed(PHOTOS), expected, rtol=1e-5, atol=1e-6)


def test_a_conversion_is_cached_by_the_model_s_content(model_folder, cache, tmp_path, monkeypatch):
    _embedder(model_folder).ready()
    assert len(list(cache.glob("*.onnx"))) == 1
    monkeypatch.setattr(runtime, "_convert", lambda *a: pytest.fail("converted again instead of using the cache"))
    assert _embedder(model_folder).ready() == "onnx"
    monkeypatch.undo()
    monkeypatch.setenv("FASHION_SEARCH_CACHE", str(cache.parent))
    (tmp_path / "other").mkdir()
    other = _embedder(_save_model(tmp_path / "other", seed=1))
    assert other.ready() == "onnx"  # other weights, same architecture: a conversion of its own
    assert len(list(cache.glob("*.onnx"))) == 2
    expected = other.model.predict_on_batch(other.preprocess(PHOTOS.astype(np.float32)))
    np.testing.assert_allclose(other.embed(PHOTOS), expected, rtol=1e-4, atol=1e-5)


def test_a_damaged_cache_file_is_converted_again(model_folder, cache, caplog):
    _embedder(model_folder).ready()
    (cached,) = cache.glob("*.onnx")
    cached.write_bytes(b"not a model")
    embedder = _embedder(model_folder)
    with caplog.at_level(logging.WARNING, logger=runtime.__name__):
        assert embedder.ready() == "onnx"
    assert f"the cached {cached.name} cannot be read" in caplog.text
    expected = embedder.model.predict_on_batch(embedder.preprocess(PHOTOS.astype(np.float32)))
    np.testing.assert_allclose(embedder.embed(PHOTOS), expected, rtol=1e-4, atol=1e-5)
    assert cached.stat().st_size > 1000


def test_a_cache_that_cannot_be_written_costs_only_the_conversion(model_folder, tmp_path, monkeypatch, caplog):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("FASHION_SEARCH_CACHE", str(blocked))
    with caplog.at_level(logging.WARNING, logger=runtime.__name__):
        embedder = _embedder(model_folder)
        assert embedder.ready() == "onnx"
    assert "could not cache the ONNX model" in caplog.text
    expected = embedder.model.predict_on_batch(embedder.preprocess(PHOTOS.astype(np.float32)))
    np.testing.assert_allclose(embedder.embed(PHOTOS), expected, rtol=1e-4, atol=1e-5)


def test_a_conversion_that_disagrees_with_keras_is_never_used(model_folder, cache, monkeypatch, caplog):
    real_session = runtime._session

    class Skewed:  # a runtime whose output is off by 1%
        def __init__(self, session):
            self.session = session

        def get_inputs(self):
            return self.session.get_inputs()

        def run(self, names, feeds):
            return [output * 1.01 + 0.01 for output in self.session.run(names, feeds)]

    monkeypatch.setattr(runtime, "_session", lambda *a: Skewed(real_session(*a)))
    with caplog.at_level(logging.WARNING, logger=runtime.__name__):
        assert _embedder(model_folder).ready() == "tensorflow"
    assert "differs from the Keras model's" in caplog.text
    assert not list(cache.glob("*.onnx"))  # nothing cached: the next process checks again
    with pytest.raises(runtime.RuntimeUnavailableError, match="differs from the Keras model's"):
        _embedder(model_folder, "onnx").ready()


def test_without_onnx_runtime_auto_falls_back_and_onnx_is_refused_in_one_line(model_folder, cache, monkeypatch,
                                                                              capsys, caplog, tmp_path):
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    for i, pixels in enumerate(PHOTOS):
        Image.fromarray(pixels).save(photos / f"p{i}.png")
    index = str(tmp_path / "index")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    with caplog.at_level(logging.WARNING, logger=runtime.__name__):
        assert main(["index", str(photos), "--index", index, "--model", str(model_folder)]) == 0
    assert "running the model on TensorFlow: onnxruntime is not installed" in caplog.text
    capsys.readouterr()
    assert main(["query", str(photos / "p1.png"), "--index", index, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["id"] == "p1"
    assert main(["query", str(photos / "p1.png"), "--index", index, "--runtime", "onnx"]) == 2
    error = capsys.readouterr().err
    assert "onnxruntime is not installed" in error and "Traceback" not in error


def test_where_the_os_cannot_say_which_cores_the_process_may_use_all_are_used(model_folder, cache, monkeypatch):
    monkeypatch.delattr(runtime.os, "sched_getaffinity")  # as on macOS
    assert runtime._cores() == runtime.os.cpu_count()
    assert _embedder(model_folder).ready() == "onnx"


def test_a_model_that_is_not_keras_runs_through_its_own_predict_on_batch():
    class Doubling:
        def predict_on_batch(self, batch):
            return batch * 2

    call, runs_on = runtime.model_call(Doubling(), "onnx", [np.ones((1, 2), np.float32)])
    assert runs_on == "predict_on_batch"
    np.testing.assert_array_equal(call(np.ones((1, 2), np.float32)), np.full((1, 2), 2.0))


def test_the_service_converts_the_model_at_start_and_says_which_runtime_runs_it(model_folder, cache, tmp_path):
    import httpx
    from PIL import Image
    from test_server import serve

    from fashion_search.data.photo_folder import list_photo_folder
    from fashion_search.search.engine import SearchEngine, build_index
    from fashion_search.search.serving.server import create_app

    (tmp_path / "photos" / "images").mkdir(parents=True)
    for i, pixels in enumerate(PHOTOS):
        Image.fromarray(pixels).save(tmp_path / "photos" / "images" / f"p{i}.png")
    settings = IndexParams(model=str(model_folder), runtime="tensorflow")
    build_index(list_photo_folder(tmp_path / "photos"), tmp_path / "index", settings)
    engine = SearchEngine.open(tmp_path / "index", IndexParams(runtime="auto"))
    url, server = serve(create_app(engine))
    try:
        assert list(cache.glob("*.onnx"))  # converted before the first request
        with httpx.Client(base_url=url, timeout=30) as client:
            stats = client.get("/stats")
            assert stats.json()["model_runtime"] == "onnx"
            assert stats.json()["index"]["model"]["model"] == model_folder.name
            assert str(tmp_path) not in stats.text and str(model_folder) not in stats.text  # no server paths
            upload = (tmp_path / "photos" / "images" / "p3.png").read_bytes()
            results = client.post("/search", files={"photo": ("q.png", upload)}, data={"k": "5"}).json()["results"]
    finally:
        server.should_exit = True
    assert results[0]["id"] == "p3" and results[0]["distance"] < 1e-4  # indexed on TensorFlow, found on ONNX


def test_a_cold_query_finds_the_converted_model_without_tensorflow(photo_folder, cli_index):
    """Indexing converts the model and remembers it under its identity: a query by photo in a new
    process then loads neither TensorFlow nor Keras, and finds what the TensorFlow model finds."""
    import json
    import subprocess
    import sys

    index = cli_index("faiss")   # built by the CLI with efficientnet_lite0, no weights, 32 px
    photo = str(photo_folder / "images" / "110.jpg")
    script = ("import json, sys\nfrom fashion_search.cli import main\nmain(sys.argv[1:])\n"
              "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras'})))")
    found = {}
    for chosen in ("auto", "tensorflow"):
        done = subprocess.run([sys.executable, "-c", script, "query", photo, "--index", str(index), "--json",
                               "--runtime", chosen], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        *answer, loaded = done.stdout.strip().splitlines()
        found[chosen] = [(r["id"], r["distance"]) for r in json.loads("\n".join(answer))["results"]]
        assert json.loads(loaded) == ([] if chosen == "auto" else ["keras", "tensorflow"])
    assert [i for i, _ in found["auto"]] == [i for i, _ in found["tensorflow"]] and found["auto"][0][0] == "110"
    assert np.allclose([d for _, d in found["auto"]], [d for _, d in found["tensorflow"]], atol=2e-3)
