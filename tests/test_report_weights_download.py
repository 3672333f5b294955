"""02's report shows no Keras download chatter: a failed try prints nothing (the "left out" line
says it), a download that works prints one line of ours."""
import keras
import pytest

from fashion_search.backbone_specs import get_spec
from fashion_search.models import weights
from fashion_search.models.weights import WeightsUnavailableError, resolve_weights


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.delenv(weights.OFFLINE_VARIABLE, raising=False)
    monkeypatch.setattr(weights, "_FAILED_DOWNLOADS", set())
    return tmp_path / "keras-home" / "models"


def test_a_failed_download_prints_nothing(keras_home, monkeypatch, capsys):
    def offline(name, url, **kwargs):
        print(f"Downloading data from {url}")  # what Keras prints before it fails
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(WeightsUnavailableError):
        resolve_weights(get_spec("resnet50"))
    assert capsys.readouterr().out == ""


def test_a_download_that_works_says_so_in_one_line_of_ours(keras_home, monkeypatch, capsys):
    def online(name, url, **kwargs):
        print(f"Downloading data from {url}")
        print("94765736/94765736 ━━━━━━━━━━━━━━━━━━━━ 3s 0us/step")
        keras_home.mkdir(parents=True, exist_ok=True)
        (keras_home / name).write_bytes(b"\0" * 3 * 2**20)
        return str(keras_home / name)

    monkeypatch.setattr(keras.utils, "get_file", online)
    spec = get_spec("resnet50")
    assert resolve_weights(spec).kind == "download"
    out = capsys.readouterr().out
    assert out.splitlines() == [f"resnet50: downloaded its ImageNet weights (3 MB) into {keras_home / spec.weights_file}"]
