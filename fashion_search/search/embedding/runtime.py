"""How the search engine runs its Keras model: ONNX Runtime or TensorFlow.

The model is always a Keras model; for serving and indexing it can be converted once to ONNX
(tf2onnx) and run by ONNX Runtime, which runs the EfficientNet-Lite models 2–3× as fast as
TensorFlow on a 2-core CPU (``benchmarks/model_runtime.py``). A conversion is used only after its output has
been checked against the Keras model's on probe inputs, and is cached by the model's content
(architecture and weights), so later processes skip the conversion.

``index.runtime``: ``auto`` (ONNX Runtime when it is installed and the check passes, else
TensorFlow, saying why once), ``onnx`` (refuse to start without it) or ``tensorflow``.

A conversion is also remembered under the model's identity (what the index's manifest records),
so that a process querying an index finds the converted model without importing TensorFlow or
building the Keras model: a cold query by photo costs about what one without a model does.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np

from fashion_search.io import atomic_path

RUNTIME_NAMES = {"onnx": "ONNX Runtime", "tensorflow": "TensorFlow", "predict_on_batch": "its own predict_on_batch"}
OPSET = 17
TOLERANCE = 1e-3  # largest difference allowed from the Keras model, relative to its largest output
log = logging.getLogger(__name__)


class RuntimeUnavailableError(ValueError):
    """``index.runtime: onnx`` was asked for, but the model cannot run on ONNX Runtime."""


def cache_dir() -> Path:
    """Where converted models are kept: ``$FASHION_SEARCH_CACHE``, else ``$XDG_CACHE_HOME`` or
    ``~/.cache``, under ``fashion-search``."""
    if os.environ.get("FASHION_SEARCH_CACHE"):
        return Path(os.environ["FASHION_SEARCH_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "fashion-search"


def model_call(model: object, runtime: str, probe: list[np.ndarray], identity_key: str | None = None
               ) -> tuple[Callable, str]:
    """How to run ``model`` on a batch of prepared inputs, and the runtime that will: ``probe``
    (model inputs of a few photos) checks a conversion before it is used. With ``identity_key``
    (:func:`identity_key` of the model's identity), a model on ONNX Runtime is remembered under
    it, so a later process finds it without building the Keras model (:func:`remembered_call`)."""
    keras = sys.modules.get("keras")  # not imported: the model cannot be a Keras one
    if keras is None or not isinstance(model, keras.Model):
        return model.predict_on_batch, "predict_on_batch"
    traced, signature = _traced(model)

    def tensorflow_call(inputs) -> np.ndarray:
        return traced(*_as_list(inputs)).numpy()

    if runtime == "tensorflow":
        return tensorflow_call, "tensorflow"
    try:
        return onnx_call(model, (traced, signature), tensorflow_call, probe, identity_key), "onnx"
    except RuntimeUnavailableError as err:
        if runtime == "onnx":
            raise
        log.warning("running the model on TensorFlow: %s", err)
        return tensorflow_call, "tensorflow"


def _traced(model: object) -> tuple[Callable, list]:
    """The model in inference mode as one ``tf.function`` of its inputs (any batch size, no
    retracing; faster than ``predict_on_batch``), and their signature: what TensorFlow runs,
    and what tf2onnx converts."""
    import tensorflow as tf

    signature = [tf.TensorSpec(tensor.shape, tensor.dtype, name=f"input_{i}") for i, tensor in enumerate(model.inputs)]
    call = tf.function(lambda *inputs: model(list(inputs) if len(inputs) > 1 else inputs[0], training=False),
                       input_signature=signature, autograph=False)
    return call, signature


def onnx_call(model: object, traced: tuple[Callable, list], tensorflow_call: Callable,
              probe: list[np.ndarray], identity_key: str | None = None) -> Callable:
    """``model`` on ONNX Runtime: converted from its ``traced`` function (or read from the cache)
    and checked against ``tensorflow_call`` on ``probe`` when converted; remembered under
    ``identity_key`` when given."""
    try:
        import onnxruntime
        import tf2onnx
    except ImportError as err:
        raise RuntimeUnavailableError(f"{err.name} is not installed; pip install -r requirements.txt") from None
    path = cache_dir() / "onnx" / f"{model_key(model, tf2onnx.__version__)}.onnx"
    session = _cached_session(onnxruntime, path)
    if session is None:
        converted = _convert(traced, tf2onnx)
        try:
            session = _session(onnxruntime, converted)
        except Exception as err:  # noqa: BLE001 - an operator it lacks: run on TensorFlow
            raise RuntimeUnavailableError(f"ONNX Runtime cannot run the converted model ({err})") from None
        _check(session, tensorflow_call, probe)
        _save(path, converted)
    if identity_key is not None:
        _save(_alias(identity_key), path.name.encode())
    return _session_call(session)


def _session_call(session) -> Callable:
    names = [node.name for node in session.get_inputs()]
    return lambda inputs: session.run(None, dict(zip(names, _as_list(inputs))))[0]


def identity_key(identity: dict, keys: tuple[str, ...]) -> str:
    """A name for what a model computes, from its identity (``keys`` of it, the converter's
    version and the opset) without building it: under it, a converted model is found again."""
    try:
        converter = metadata.version("tf2onnx")
    except metadata.PackageNotFoundError:
        converter = "none"
    described = json.dumps({key: identity.get(key) for key in keys}, sort_keys=True, default=str)
    return hashlib.sha256(f"{described}|tf2onnx {converter}|opset {OPSET}".encode()).hexdigest()[:32]


def _alias(key: str) -> Path:
    return cache_dir() / "onnx" / f"identity-{key}.txt"


def remembered_call(key: str) -> Callable | None:
    """The model remembered under ``key`` on ONNX Runtime, loaded without TensorFlow or Keras
    (a model converted and checked by an earlier process); None when there is none to use."""
    model_bytes = remembered_model(key)
    if model_bytes is None:
        return None
    try:
        import onnxruntime

        return _session_call(_session(onnxruntime, model_bytes))
    except Exception as err:  # noqa: BLE001 - damaged or truncated: convert again
        log.warning("converting the model again: the cached one for %s cannot be read (%s)", key, err)
        return None


def remembered_model(key: str) -> bytes | None:
    """The ONNX model remembered under ``key``, as bytes (to send to other processes), or None."""
    alias = _alias(key)
    try:
        name = alias.read_text().strip() if alias.is_file() else ""
        if not name or Path(name).name != name or not (alias.parent / name).is_file():
            return None
        return (alias.parent / name).read_bytes()
    except (OSError, UnicodeDecodeError):
        return None


def onnx_model_call(model_bytes: bytes, threads: int | None = None) -> Callable:
    """An ONNX model (bytes, as :func:`remembered_model` gives) on ONNX Runtime with ``threads``
    threads (None: this process's cores)."""
    import onnxruntime

    return _session_call(_session(onnxruntime, model_bytes, threads))


def model_key(model: object, converter_version: str) -> str:
    """A name for ``model``'s content: architecture, weights and the converter's version."""
    digest = hashlib.sha256(f"{model.to_json()}|tf2onnx {converter_version}|opset {OPSET}".encode())
    for weights in model.get_weights():
        digest.update(np.ascontiguousarray(weights).tobytes())
    return digest.hexdigest()[:32]


def _cached_session(onnxruntime, path: Path):
    """The session of a model converted earlier, or None (not converted yet, or unreadable)."""
    if not path.is_file():
        return None
    try:
        return _session(onnxruntime, path.read_bytes())
    except Exception as err:  # noqa: BLE001 - damaged or truncated: convert again
        log.warning("converting the model again: the cached %s cannot be read (%s)", path.name, err)
        return None


def _convert(traced: tuple[Callable, list], tf2onnx) -> bytes:
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    function, signature = traced
    try:
        proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=OPSET)
    except Exception as err:  # noqa: BLE001 - any converter failure means: run on TensorFlow
        raise RuntimeUnavailableError(f"the model could not be converted to ONNX ({type(err).__name__}: {err})") from None
    return proto.SerializeToString()


def _session(onnxruntime, model_bytes: bytes, threads: int | None = None):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or _cores()
    options.log_severity_level = 3
    # no busy-waiting between calls: a server's request threads need those cores
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def _check(session, tensorflow_call: Callable, probe: list[np.ndarray]) -> None:
    names = [node.name for node in session.get_inputs()]
    expected = np.asarray(tensorflow_call(probe if len(probe) > 1 else probe[0]), np.float32)
    got = session.run(None, dict(zip(names, probe)))[0]
    difference = float(np.max(np.abs(expected - got))) if got.shape == expected.shape else np.inf
    if not difference <= TOLERANCE * max(1.0, float(np.max(np.abs(expected)))):
        raise RuntimeUnavailableError(f"ONNX Runtime's output differs from the Keras model's by {difference:.3g}")


def _save(path: Path, model_bytes: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as temporary:
            temporary.write_bytes(model_bytes)
    except OSError as err:  # a read-only home: convert again next time
        log.warning("could not cache the ONNX model in %s (%s)", path.parent, err)


def _cores() -> int:
    """The cores this process may use (all of the machine's where the OS cannot say, as on macOS)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _as_list(inputs) -> list:
    return inputs if isinstance(inputs, list) else [inputs]
