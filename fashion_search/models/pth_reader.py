"""Read a PyTorch state dict saved in torch's legacy format into numpy arrays, without torch.

The legacy ``.pth`` layout is: a magic-number pickle, a protocol-version pickle, a system-info
pickle, the state-dict pickle (tensors refer to storages by key), a pickle listing the storage
keys in file order, then each storage as an 8-byte element count followed by its raw bytes.
The unpickler here rebuilds only ordered dicts and tensors, and refuses every other object, so
a malicious file cannot run code.
"""
from __future__ import annotations

import collections
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class UnsafePickleError(pickle.UnpicklingError):
    """The file asks to build an object other than a state dict of tensors."""


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: type


@dataclass(frozen=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage: _StorageRef, offset: int, shape: tuple, stride: tuple, *_ignored) -> _TensorRef:
    return _TensorRef(storage, offset, tuple(shape), tuple(stride))


class _StateDictUnpickler(pickle.Unpickler):
    """Builds OrderedDicts and tensor references; anything else is refused."""

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return STORAGE_DTYPES[name]
        raise UnsafePickleError(f"refusing to unpickle {module}.{name}: only tensors are allowed")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage" and len(pid) >= 5):
            raise UnsafePickleError(f"unexpected persistent id {pid!r}")
        _, dtype, key, _location, _size = pid[:5]
        if dtype not in STORAGE_DTYPES.values():
            raise UnsafePickleError(f"unsupported storage type {dtype!r}")
        return _StorageRef(str(key), dtype)


def _load(handle: BinaryIO):
    return _StateDictUnpickler(handle).load()


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a legacy-format ``.pth`` state dict, by name, as numpy arrays."""
    with open(path, "rb") as handle:
        if _load(handle) != MAGIC_NUMBER:
            raise ValueError(f"{path} is not a legacy PyTorch file (bad magic number)")
        if _load(handle) != PROTOCOL_VERSION:
            raise ValueError(f"{path} has an unsupported PyTorch protocol version")
        system = _load(handle)
        if not system.get("little_endian", False):
            raise ValueError(f"{path} was written on a big-endian machine")
        state = _load(handle)
        keys = _load(handle)
        storages = {}
        for key in keys:
            (count,) = np.frombuffer(handle.read(8), "<i8")
            dtype = np.dtype(_storage_dtype(state, key))
            data = handle.read(int(count) * dtype.itemsize)
            if len(data) != int(count) * dtype.itemsize:
                raise ValueError(f"{path} is truncated (storage {key})")
            storages[key] = np.frombuffer(data, dtype)
    return {name: _materialise(ref, storages) for name, ref in state.items()}


def _storage_dtype(state: dict, key: str) -> type:
    for ref in state.values():
        if ref.storage.key == key:
            return ref.storage.dtype
    raise ValueError(f"storage {key} is not used by any tensor")


def _materialise(ref: _TensorRef, storages: dict[str, np.ndarray]) -> np.ndarray:
    flat = storages[ref.storage.key]
    strides = tuple(s * flat.itemsize for s in ref.stride)
    return np.lib.stride_tricks.as_strided(flat[ref.offset:], ref.shape, strides).copy()
