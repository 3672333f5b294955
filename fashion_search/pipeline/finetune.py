"""Stage 02: fine-tuning on the catalogue's labels with one of the recipes in :mod:`fashion_search.models.recipes`.

Training runs in two phases, both through ``model.fit``: the backbone frozen (head only), then
the top share of its layers unfrozen at a lower learning rate. After each epoch the
validation split is searched with the embedding model; its mAP@k picks the best epoch and
stops a phase that no longer improves. Every epoch is checkpointed, so an interrupted
training continues from its last finished epoch. What feature extraction uses afterwards
is the embedding model with the best epoch's weights.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from fashion_search.data.catalog import Catalog, relevance_codes
from fashion_search.layout import RunLayout, Variant, variants
from fashion_search.models import saved, shipped, shipped_heads
from fashion_search.models.backbones import build_feature_extractor
from fashion_search.models.callbacks import (BEST_WEIGHTS, EpochProgress, ResumableCheckpoint, RetrievalValidation,
                                             TrainingState, trim_history)
from fashion_search.models.recipes import build_recipe, training_columns
from fashion_search.backbone_specs import get_spec
from fashion_search.models.weights import WeightsUnavailableError
from fashion_search.params import BACKBONE_RECIPES, BackboneParams, FinetuneParams, Params
from fashion_search.pipeline.devices import TrainingDevices, choose_devices, float32_copy, training_on
from fashion_search.pipeline.fused_training import train_fused
from fashion_search.pipeline.input_pipeline import make_dataset

HISTORY_FILE = "history.csv"
COLOUR_WEIGHTS_FILE = "colour_weights.csv"  # fused recipe: validation scores per colour weight
CHECKPOINT_DIR = "checkpoint"
SHIPPED_MODELS = {  # recipe: (its provenance, its model), models shipped in the package, not trained here
    "shipped": (shipped.provenance, shipped.build_shipped),
    "shipped_heads": (shipped_heads.provenance, shipped_heads.build_shipped_heads),
}


@dataclass
class EmbeddingModel:
    """A saved model that maps preprocessed images to feature vectors, or why there is none."""

    backbone: BackboneParams
    recipe: str
    manifest: dict
    model: keras.Model | None

    @property
    def available(self) -> bool:
        return self.model is not None


def unfreeze_top(extractor: keras.Model, fraction: float) -> int:
    """Make the top ``fraction`` of the backbone's layers trainable (BatchNorm stays frozen).

    Returns the number of layers with weights made trainable.
    """
    extractor.trainable = True
    layers = extractor.layers
    first = len(layers) - math.ceil(fraction * len(layers))
    count = 0
    for i, layer in enumerate(layers):
        layer.trainable = i >= first and not isinstance(layer, keras.layers.BatchNormalization)
        count += layer.trainable and bool(layer.weights)
    return count


def class_codes(items: pd.DataFrame, columns: list[str]) -> dict[str, np.ndarray]:
    """Integer classes 0..n-1 per label column, numbered in sorted order of the values."""
    return {column: pd.Categorical(items[column].astype(str)).codes.astype(np.int64) for column in columns}


def train_recipe(recipe: str, extractor: keras.Model, catalog: Catalog, size: int, preprocess,
                 params: FinetuneParams, folder: Path, seed: int, fingerprint: str = "",
                 title: str = "", devices: TrainingDevices | None = None) -> tuple[keras.Model, pd.DataFrame, float]:
    """Train ``extractor`` with ``recipe`` on the train split; return the embedding model with the
    best epoch's weights, the per-epoch history and the training seconds (over all sessions).

    Progress is checkpointed in ``folder``; a call with the same ``fingerprint`` resumes it.
    One line per epoch, headed ``title``, says how it goes. ``devices`` (entered with
    :func:`~fashion_search.pipeline.devices.training_on`) sets the batch of a step; None: one device.
    """
    columns = training_columns(recipe, catalog.label_column, params)
    codes = class_codes(catalog.items, columns)
    train_mask = (catalog.items["split"] == "train").to_numpy()
    val_mask = (catalog.items["split"] == "validation").to_numpy()
    models = build_recipe(recipe, extractor, {c: int(codes[c].max()) + 1 for c in columns}, params, seed)
    batch, accelerated = (devices.global_batch(params.batch_size), devices.on_gpu) if devices else (params.batch_size,
                                                                                                    False)
    train = make_dataset(catalog.images[train_mask], size, preprocess, batch, {c: codes[c][train_mask] for c in columns},
                         shuffle_seed=seed, accelerated=accelerated)
    validation_images = make_dataset(catalog.images[val_mask], size, preprocess, batch, accelerated=accelerated)
    validation_codes = relevance_codes(catalog.items[val_mask], "+".join(columns))
    validation = RetrievalValidation(models.embedding, validation_images, validation_codes, params.monitor_k)

    state = TrainingState(folder / CHECKPOINT_DIR, fingerprint)
    history_path = folder / HISTORY_FILE
    if state.epochs_done == 0:
        history_path.unlink(missing_ok=True)
    trim_history(history_path, state.epochs_done)
    logger = keras.callbacks.CSVLogger(history_path, append=True)
    phases = [("frozen", params.frozen_epochs, params.learning_rate),
              ("unfrozen", params.unfrozen_epochs if params.unfreeze_fraction > 0 else 0,
               params.unfrozen_learning_rate)]
    total_epochs = sum(epochs for _, epochs, _ in phases)
    title = title or recipe
    print(f"{title}: training up to {total_epochs} epochs on {int(train_mask.sum())} items "
          f"(validation: {int(val_mask.sum())}) on {devices.describe() if devices else 'one device'}"
          + (f", resuming after epoch {state.epochs_done}" if state.epochs_done else ""), flush=True)
    first = 0
    for phase, epochs, learning_rate in phases:
        last = first + epochs
        if epochs and state.epochs_done < last and phase not in state.stopped_phases:
            if phase == "frozen":
                extractor.trainable = False
            else:
                unfreeze_top(extractor, params.unfreeze_fraction)
            models.training.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=models.losses,
                                    metrics=models.metrics)
            if state.has_weights:  # resuming: mid-phase, the optimizer's moments too
                state.restore(models.training, with_optimizer=state.epochs_done > first)
            checkpoint = ResumableCheckpoint(state, validation.key, params.patience, phase)
            epoch_lines = EpochProgress(f"{title} ({phase} backbone)", total_epochs, validation.key, params.monitor_k, state)
            started = time.perf_counter()
            models.training.fit(train, initial_epoch=max(first, state.epochs_done), epochs=last, verbose=0,
                                shuffle=False,  # the dataset shuffles itself; Keras would warn and ignore it
                                callbacks=[validation, logger, checkpoint, epoch_lines])
            state.seconds += time.perf_counter() - started
            state.save()
        first = last
    if (state.folder / BEST_WEIGHTS).is_file():
        models.training.load_weights(state.folder / BEST_WEIGHTS)
    history = pd.read_csv(history_path)
    history["phase"] = np.where(history["epoch"] < params.frozen_epochs, "frozen", "unfrozen")
    return models.embedding, history, state.seconds


def model_fingerprint(variant: Variant, params: Params) -> str:
    """Hash of everything that determines one backbone and recipe's embedding model."""
    training = None if variant.recipe in ("frozen", *SHIPPED_MODELS) else dataclasses.asdict(params.finetune)
    if training:
        training.pop("recipes")  # adding a recipe to the list changes no other recipe's model
        if variant.recipe not in BACKBONE_RECIPES:  # devices and precision apply to backbone training only
            training.pop("devices"), training.pop("precision")
    if variant.recipe in SHIPPED_MODELS:
        training = {"shipped_sha256": SHIPPED_MODELS[variant.recipe][0]()["weights_sha256"]}
    inputs = {"backbone": dataclasses.asdict(variant.backbone), "recipe": variant.recipe, "data": dataclasses.asdict(params.data),
              "seed": params.seed, "finetune": training}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def prepare_embedding_model(backbone: BackboneParams, recipe: str, catalog: Catalog, params: FinetuneParams,
                            folder: Path, seed: int, fingerprint: str = "",
                            devices: TrainingDevices | None = None) -> EmbeddingModel:
    """Build one backbone and train it with ``recipe`` (``frozen``: no training) on ``devices``
    (entered by the caller); save the embedding model, in float32, and its manifest.

    Where ImageNet weights cannot be loaded, the manifest records why and no model is saved.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spec = get_spec(backbone.name)
    manifest = {"backbone": backbone.name, "recipe": recipe, "weights": backbone.weights,
                "image_size": backbone.input_size, "preprocessing": spec.preprocessing,
                "feature_layer": spec.feature_layer if recipe in ("frozen", "softmax") else "embedding",
                "feature_dim": spec.feature_dim if recipe in ("frozen", "softmax") else params.embedding_dim,
                "finetuned": recipe != "frozen", "fingerprint": fingerprint}
    keras.utils.set_random_seed(seed)
    try:
        extractor, source = build_feature_extractor(backbone.name, backbone.weights, backbone.input_size,
                                                    backbone.weights_path)
    except WeightsUnavailableError as err:
        manifest.update(available=False, reason=str(err), remedy=err.remedy, hint=err.hint, cache_file=err.cache_file)
        saved.save_unavailable(manifest, folder)
        return EmbeddingModel(backbone, recipe, manifest, None)
    manifest.update(weights_source=source.kind, weights_file=source.path, weights_sha256=source.sha256,
                    weights_loaded=source.load_path, weights_used=source.describe())
    embedding = extractor
    if recipe == "fused":
        fused = train_fused(extractor, catalog, backbone.input_size, spec.preprocess, params, folder / CHECKPOINT_DIR,
                            seed, fingerprint,
                            f"{backbone.name} fused")
        embedding = fused.model
        manifest.update(feature_layer="fused", feature_dim=int(embedding.output_shape[-1]),
                        colour_dims=int(embedding.output_shape[-1]) - params.embedding_dim, **fused.choices,
                        monitor=f"val_map_at_{params.monitor_k}",
                        trained_on=[catalog.label_column, *([fused.choices["colour_column"]]
                                                            if fused.choices["colour_column"] else [])])
        fused.history.to_csv(folder / HISTORY_FILE, index=False)
        fused.weights.to_csv(folder / COLOUR_WEIGHTS_FILE, index=False)
    elif recipe in SHIPPED_MODELS:
        read_provenance, build = SHIPPED_MODELS[recipe]
        record = read_provenance()
        embedding = build(record=record)
        manifest.update(feature_layer="fused", feature_dim=record["dim"], colour_dims=record["colour_dims"],
                        colour_weight=record["colour_weight"], colour_column=record["colour_column"],
                        shipped_sha256=record["weights_sha256"], trained_on=[record["label_column"],
                                                                             record["colour_column"]])
    elif recipe != "frozen":
        embedding, history, seconds = train_recipe(recipe, extractor, catalog, backbone.input_size, spec.preprocess,
                                                   params, folder, seed, fingerprint, f"{backbone.name} {recipe}",
                                                   devices)
        embedding = float32_copy(embedding)
        best = history.loc[history[f"val_map_at_{params.monitor_k}"].idxmax()]
        manifest.update(epochs=len(history), best_epoch=int(best["epoch"]) + 1, train_seconds=round(seconds, 1),
                        monitor=f"val_map_at_{params.monitor_k}",
                        best_val_map=round(float(best[f"val_map_at_{params.monitor_k}"]), 4),
                        trained_on=training_columns(recipe, catalog.label_column, params))
        history.to_csv(folder / HISTORY_FILE, index=False)
    else:
        (folder / HISTORY_FILE).unlink(missing_ok=True)
    embedding.trainable = False
    saved.save_model(embedding, manifest, folder)
    manifest.update(available=True)
    shutil.rmtree(folder / CHECKPOINT_DIR, ignore_errors=True)
    return EmbeddingModel(backbone, recipe, manifest, embedding)


def load_embedding_model(folder: str | Path, backbone: BackboneParams, recipe: str) -> EmbeddingModel:
    """Load what :func:`prepare_embedding_model` saved, refusing one made with other settings."""
    folder = Path(folder)
    manifest = saved.read_manifest(folder)
    if manifest is None:
        raise FileNotFoundError(f"no {recipe} model for {backbone.name} in {folder}; run the fine-tune stage (02) first")
    expected = {"backbone": backbone.name, "recipe": recipe, "weights": backbone.weights,
                "image_size": backbone.input_size}
    found = {key: manifest.get(key) for key in expected}
    if found != expected:
        raise ValueError(f"the model in {folder} was made with {found}, but the parameters ask for {expected}; "
                         "re-run the fine-tune stage")
    if not manifest.get("available"):
        return EmbeddingModel(backbone, recipe, manifest, None)
    return EmbeddingModel(backbone, recipe, manifest, saved.load_model(folder))


def prepare_all(params: Params, catalog: Catalog, layout: RunLayout) -> dict[str, EmbeddingModel]:
    """Prepare every backbone with every recipe, keyed ``<backbone>-<recipe>``; a model already
    made with the same inputs is reused, and an interrupted training resumes."""
    models = {}
    missing: set[str] = set()  # backbones whose weights were not found: said once
    trains = any(recipe in BACKBONE_RECIPES for recipe in params.finetune.recipes)
    devices = choose_devices(params.finetune.devices, params.finetune.precision) if trains else None
    for variant in variants(params):
        folder = layout.model(variant)
        fingerprint = model_fingerprint(variant, params)
        manifest = saved.read_manifest(folder) or {}
        if manifest.get("fingerprint") == fingerprint and manifest.get("available"):
            print(f"{variant.name}: reusing the model already prepared with these parameters")
            models[variant.name] = load_embedding_model(folder, variant.backbone, variant.recipe)
        else:
            name = variant.backbone.name
            if name not in missing:
                print(f"{variant.name}: preparing", flush=True)
            on = devices if variant.recipe in BACKBONE_RECIPES else None
            with training_on(on) if on else contextlib.nullcontext():
                models[variant.name] = prepare_embedding_model(variant.backbone, variant.recipe, catalog,
                                                               params.finetune, folder, params.seed, fingerprint, on)
            if not models[variant.name].available and name not in missing:
                missing.add(name)
                print(f"{name}: left out, no ImageNet weights ({models[variant.name].manifest['hint']})", flush=True)
    return models


def load_colour_weights(params: Params, layout: RunLayout) -> dict[str, tuple[pd.DataFrame, float]]:
    """The fused models' validation scores per colour weight, with the weight chosen; keyed ``<backbone>-fused``."""
    tables = {}
    for variant in variants(params):
        path = layout.model(variant) / COLOUR_WEIGHTS_FILE
        manifest = saved.read_manifest(layout.model(variant)) or {}
        if path.is_file() and "colour_weight" in manifest:
            tables[variant.name] = (pd.read_csv(path), float(manifest["colour_weight"]))
    return tables


def load_histories(params: Params, layout: RunLayout) -> dict[str, pd.DataFrame]:
    """Per-epoch training logs of the models that were trained, keyed ``<backbone>-<recipe>``."""
    paths = {variant.name: layout.model(variant) / HISTORY_FILE for variant in variants(params)}
    return {name: pd.read_csv(path) for name, path in paths.items() if path.is_file()}
