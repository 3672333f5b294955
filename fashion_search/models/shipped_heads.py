"""The model shipped before the tuned one, kept for comparison: the recipe ``shipped_heads``.

``fashion_lite0`` as released on 2026-12-04 (commit bc03809) was two heads, type and colour, on
the frozen ImageNet EfficientNet-Lite0, trained on the 60 × 80 photos of ``fashion-products-small``.
The reports of ``configs/fashion-products-dev.yaml`` put it beside frozen features, today's shipped
model and a model fused on the catalogue's own photos, so they show the step each made.

- ``shipped/fashion_lite0_heads.npz``: the release's head weights, unchanged (int8 kernels with a
  scale per column), repackaged as an LZMA ``.npz``: its arrays hash as the release's did
  (:func:`arrays_sha256`; ``released_as`` keeps both checksums of the release);
- ``shipped/fashion_lite0_heads.json``: the release's provenance, its name, file and checksum made
  its own, and no trained backbone layers.

Both are checked when read, as the shipped model's are.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fashion_search.models.shipped import SHIPPED_DIR, build_shipped, checked_bytes

if TYPE_CHECKING:
    import keras

NAME = "fashion_lite0_heads"
WEIGHTS_FILE = SHIPPED_DIR / f"{NAME}.npz"
PROVENANCE_FILE = SHIPPED_DIR / f"{NAME}.json"
PROVENANCE_SHA256 = "e132fa925e97e6dd409a94f75e50d5811552fb313f7afdccf82383eaed3b5aff"
REMEDY = "git checkout -- fashion_search/models/shipped in a clone"   # kept as released, not rebuilt


def arrays_sha256(path: Path) -> str:
    """The SHA-256 of an ``.npz`` file's arrays (keys, dtypes, shapes and values), whatever its packaging."""
    digest = hashlib.sha256()
    with np.load(path) as arrays:
        for key in sorted(arrays.files):
            array = np.ascontiguousarray(arrays[key])
            digest.update(f"{key}:{array.dtype.str}:{array.shape}".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()


def provenance() -> dict:
    """The earlier model's provenance record, checked against the SHA-256 recorded here."""
    return json.loads(checked_bytes(PROVENANCE_FILE, PROVENANCE_SHA256, REMEDY))


def build_shipped_heads(record: dict | None = None) -> "keras.Model":
    """The earlier shipped model: its heads on the frozen ImageNet Lite0."""
    return build_shipped(WEIGHTS_FILE, record or provenance(), REMEDY)
