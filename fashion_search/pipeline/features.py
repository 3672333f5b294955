"""Stage 03: batched, resumable feature extraction into a feature store.

A store is a folder holding ``features.npy`` (float32, one row per item), ``ids.json`` (the
item ids in row order) and ``manifest.json`` (which model and preprocessing made them).
Extraction writes its work in chunks, so an interrupted run continues where it stopped.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fashion_search.data.catalog import Catalog
from fashion_search.io import read_json, save_npy, work_key, write_json
from fashion_search.layout import RunLayout, variants
from fashion_search.backbone_specs import get_spec
from fashion_search.params import Params
from fashion_search.pipeline.finetune import load_embedding_model
from fashion_search.pipeline.extraction import extract_features

FEATURES_FILE = "features.npy"
IDS_FILE = "ids.json"
MANIFEST_FILE = "manifest.json"
PARTS_DIR = "parts"


@dataclass
class FeatureStore:
    """Feature vectors and the ids of the items they describe, row-aligned."""

    features: np.ndarray
    ids: list[str]
    manifest: dict

    def __post_init__(self) -> None:
        if len(self.features) != len(self.ids):
            raise ValueError(f"{len(self.features)} feature rows but {len(self.ids)} ids")


def save_feature_store(store: FeatureStore, folder: str | Path) -> None:
    """Write the store's three files (each atomically) and drop the extraction chunks."""
    folder = Path(folder)
    save_npy(folder / FEATURES_FILE, store.features.astype(np.float32))
    write_json(folder / IDS_FILE, list(store.ids))
    write_json(folder / MANIFEST_FILE, store.manifest)
    shutil.rmtree(folder / PARTS_DIR, ignore_errors=True)


def load_feature_store(folder: str | Path, expect: dict | None = None) -> FeatureStore:
    """Read a store; refuse it if its manifest disagrees with ``expect`` on any key given."""
    folder = Path(folder)
    if not (folder / MANIFEST_FILE).is_file():
        raise FileNotFoundError(f"no feature store in {folder}; run the feature stage (03) first")
    manifest = read_json(folder / MANIFEST_FILE)
    for key, value in (expect or {}).items():
        if manifest.get(key) != value:
            raise ValueError(f"the feature store in {folder} has {key}={manifest.get(key)!r} but "
                             f"{value!r} was expected; re-run feature extraction")
    if not manifest.get("available", True):
        return FeatureStore(np.zeros((0, 0), np.float32), [], manifest)
    return FeatureStore(np.load(folder / FEATURES_FILE), read_json(folder / IDS_FILE), manifest)


def extract_all(params: Params, catalog: Catalog, layout: RunLayout) -> dict[str, FeatureStore]:
    """Extract the features of every catalogue item (all splits: 04's catalogue protocol searches
    them all) with every embedding model (each backbone with each recipe) into its store; keyed
    ``<backbone>-<recipe>``."""
    stores = {}
    said: set[str] = set()  # backbones already reported as having no model
    for variant in variants(params):
        backbone = variant.backbone
        embedding = load_embedding_model(layout.model(variant), backbone, variant.recipe)
        manifest = {**embedding.manifest, "split": "all", "items": len(catalog)}
        folder = layout.features(variant)
        if not embedding.available:
            if backbone.name not in said:
                said.add(backbone.name)
                print(f"{backbone.name}: no model (no ImageNet weights, see 02), no features", flush=True)
            store = FeatureStore(np.zeros((0, 0), np.float32), [], manifest)
        else:
            started = time.perf_counter()
            key = work_key(manifest["fingerprint"], catalog.items["id"].tolist(), images=catalog.images)
            matrix = extract_features(embedding.model, catalog.images, backbone.input_size,
                                      get_spec(backbone.name).preprocess, params.features.batch_size,
                                      folder / PARTS_DIR / key, params.features.chunk_size, description=f"extracting with {variant.name}")
            seconds = time.perf_counter() - started
            manifest.update(seconds=round(seconds, 2), dim=int(matrix.shape[1]))
            store = FeatureStore(matrix, catalog.items["id"].tolist(), manifest)
        save_feature_store(store, folder)
        stores[variant.name] = store
    return stores


def load_all(params: Params, layout: RunLayout) -> dict[str, FeatureStore]:
    """The feature store of every backbone and recipe in ``params``, checked against its parameters."""
    return {variant.name: load_feature_store(
                layout.features(variant),
                {"backbone": variant.backbone.name, "recipe": variant.recipe, "weights": variant.backbone.weights,
                 "image_size": variant.backbone.input_size, "split": "all"})
            for variant in variants(params)}
