"""The model folder: one trained (or frozen) embedding model on disk, and what made it.

``outputs/<run>/models/<backbone>/<recipe>/`` holds ``embedding.keras`` (the model mapping
preprocessed images to features) and ``manifest.json`` (backbone, recipe, weights and their
checksum, input size, preprocessing, training summary). Where ImageNet weights could not be
had, the manifest says why (``available: false``) and there is no model file. The notebooks
write these folders; the search engine reads them (``--model <folder>``).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fashion_search.io import atomic_path, read_json, write_json

if TYPE_CHECKING:
    import keras

MODEL_FILE = "embedding.keras"
MANIFEST_FILE = "manifest.json"


def read_manifest(folder: str | Path) -> dict | None:
    """The folder's manifest, or None when it holds none."""
    path = Path(folder) / MANIFEST_FILE
    return read_json(path) if path.is_file() else None


def is_model_folder(folder: str | Path) -> bool:
    """Whether ``folder`` is a model folder (usable or not)."""
    return (Path(folder) / MANIFEST_FILE).is_file()


def is_usable(folder: str | Path) -> bool:
    """Whether ``folder`` holds a model that can be loaded."""
    manifest = read_manifest(folder)
    return bool(manifest and manifest.get("available")) and (Path(folder) / MODEL_FILE).is_file()


def save_model(model: "keras.Model", manifest: dict, folder: str | Path) -> None:
    """Write the model, then its manifest marked available (each atomically)."""
    folder = Path(folder)
    with atomic_path(folder / MODEL_FILE) as tmp:
        model.save(tmp)
    write_json(folder / MANIFEST_FILE, {**manifest, "available": True})


def save_unavailable(manifest: dict, folder: str | Path) -> None:
    """Record that no model could be made (the manifest says why); drop any older model file."""
    folder = Path(folder)
    write_json(folder / MANIFEST_FILE, {**manifest, "available": False})
    (folder / MODEL_FILE).unlink(missing_ok=True)


def load_model(folder: str | Path) -> "keras.Model":
    """The folder's embedding model, for inference."""
    import keras

    import fashion_search.models.fused  # noqa: F401  (registers the fused model's layers for loading)

    return keras.models.load_model(Path(folder) / MODEL_FILE, compile=False)
