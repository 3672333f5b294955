"""The model shipped before the tuned one, kept for comparison: the recipe ``shipped_heads``.

``fashion_lite0`` as released on 2026-12-04 (commit bc03809) was two heads, type and colour, on
the frozen ImageNet EfficientNet-Lite0, trained on the 60 × 80 photos of ``fashion-products-small``.
The reports of ``configs/fashion-products-dev.yaml`` put it beside frozen features, today's shipped
model and a model fused on the catalogue's own photos, so they show the step each made.

- ``shipped/fashion_lite0_heads.npz``: the release's head weights, unchanged (int8 kernels with a
  scale per column), in an LZMA ``.npz``;
- ``shipped/fashion_lite0_heads.json``: the release's provenance, its name, file and checksum made
  its own (``released_as`` keeps the release's), and no trained backbone layers.

Both are checked when read, as the shipped model's are.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

from fashion_search.models.shipped import SHIPPED_DIR, build_shipped, checked_bytes

if TYPE_CHECKING:
    import keras

NAME = "fashion_lite0_heads"
WEIGHTS_FILE = SHIPPED_DIR / f"{NAME}.npz"
PROVENANCE_FILE = SHIPPED_DIR / f"{NAME}.json"
PROVENANCE_SHA256 = "56acb928aed950db6fe88b9adfa992bdd2215e7817067af9864db6e6395cbbbd"
REMEDY = "git checkout -- fashion_search/models/shipped"   # the files are kept as released, not rebuilt


def provenance() -> dict:
    """The earlier model's provenance record, checked against the SHA-256 recorded here."""
    return json.loads(checked_bytes(PROVENANCE_FILE, PROVENANCE_SHA256, REMEDY))


def build_shipped_heads(record: dict | None = None) -> "keras.Model":
    """The earlier shipped model: its heads on the frozen ImageNet Lite0."""
    return build_shipped(WEIGHTS_FILE, record or provenance(), REMEDY)
