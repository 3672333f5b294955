"""Trained weights stored small, for the package: each kernel as int8 multiples of a step (a fixed
fraction of its own standard deviation, per output channel), in an LZMA-compressed ``.npz`` that
:func:`numpy.load` reads as any other.

Where the weights started from known ones (a backbone's ImageNet layers), only the change is
stored: fine-tuning moves them by about a tenth of their spread, so the same step size costs far
fewer bits than the weights themselves would.
"""
from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from fashion_search.io import atomic_path

SCALE = "scale"   # suffix of the key holding a kernel's step per output channel


def output_axis(kernel: np.ndarray) -> int:
    """The axis of a kernel's output channels: a depthwise kernel ``(k, k, C, 1)`` has them on ``C``."""
    return kernel.ndim - 2 if kernel.ndim == 4 and kernel.shape[-1] == 1 else kernel.ndim - 1


def quantised(kernel: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """``kernel`` as int8 multiples of ``step`` standard deviations of each output channel, and the
    step of each channel (float32): ``multiples * steps`` is within half a step of the kernel. A
    channel whose largest value is over 127 such steps from zero (a constant one) gets a larger step."""
    axis = output_axis(kernel)
    others = tuple(i for i in range(kernel.ndim) if i != axis)
    steps = np.maximum(np.maximum(kernel.std(axis=others, keepdims=True), 1e-12) * step,
                       np.abs(kernel).max(axis=others, keepdims=True) / 127)
    multiples = np.round(kernel / steps).astype(np.int8)
    return multiples, steps.ravel().astype(np.float32)


def encoded(kernel: np.ndarray, key: str, step: float, start: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The arrays that store ``kernel`` under ``key`` (its change from ``start`` where one is given);
    a vector (a bias) is stored as float16."""
    change = kernel - start if start is not None else kernel
    if change.ndim == 1:
        return {key: change.astype(np.float16)}
    multiples, steps = quantised(change, step)
    return {key: multiples, f"{key}/{SCALE}": steps}


def decoded(arrays: Mapping[str, np.ndarray], key: str, start: np.ndarray | None = None) -> np.ndarray:
    """The float32 weight :func:`encoded` stored under ``key`` (plus ``start``, which it was the change from)."""
    weight = arrays[key].astype(np.float32)
    if f"{key}/{SCALE}" in arrays:
        shape = [1] * weight.ndim
        shape[output_axis(weight)] = -1
        weight = weight * arrays[f"{key}/{SCALE}"].reshape(shape)
    return weight + start if start is not None else weight


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as an LZMA-compressed ``.npz`` (atomically); the same arrays give the same
    bytes (no file times), so the same model ships with the same checksum."""
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_LZMA) as archive:
        for key, value in arrays.items():
            buffer = io.BytesIO()
            np.save(buffer, value)
            entry = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_LZMA
            archive.writestr(entry, buffer.getvalue())
