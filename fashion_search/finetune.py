"""Transfer learning on the catalogue's labels, the report's recipe.

A softmax classification head is trained on top of the frozen backbone, then the top share
of the backbone's layers is unfrozen and trained at a lower learning rate. Early stopping
watches the validation loss; the best checkpoint (validation accuracy) is kept and its
backbone part, the embedding model, is what feature extraction uses.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import keras
import pandas as pd

from fashion_search.backbones import get_spec
from fashion_search.catalog import Catalog
from fashion_search.config import BackboneParams, FinetuneParams, Params
from fashion_search.input_pipeline import make_dataset
from fashion_search.io import atomic_path, read_json, write_json
from fashion_search.layout import RunLayout
from fashion_search.weights import WeightsUnavailableError, build_feature_extractor

EMBEDDING_FILE = "embedding.keras"
MANIFEST_FILE = "manifest.json"
HISTORY_FILE = "history.csv"


@dataclass
class EmbeddingModel:
    """A saved model that maps preprocessed images to feature vectors, or why there is none."""

    backbone: BackboneParams
    manifest: dict
    model: keras.Model | None

    @property
    def available(self) -> bool:
        return self.model is not None


def build_classifier(extractor: keras.Model, num_classes: int, dropout: float) -> keras.Model:
    """Backbone features → dropout → softmax over the classes."""
    inputs = keras.Input(extractor.input_shape[1:])
    features = extractor(inputs, training=False)  # BatchNorm keeps its statistics
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="classifier")(
        keras.layers.Dropout(dropout)(features)
    )
    return keras.Model(inputs, outputs, name=f"{extractor.name}_classifier")


def unfreeze_top(extractor: keras.Model, fraction: float) -> int:
    """Make the top ``fraction`` of the backbone's layers trainable (BatchNorm stays frozen).

    Returns the number of layers made trainable.
    """
    extractor.trainable = True
    layers = extractor.layers
    first = len(layers) - math.ceil(fraction * len(layers))
    count = 0
    for i, layer in enumerate(layers):
        layer.trainable = i >= first and not isinstance(layer, keras.layers.BatchNormalization)
        count += layer.trainable and bool(layer.weights)
    return count


class KeepBestWeights(keras.callbacks.Callback):
    """Remember the weights of the epoch with the highest ``monitor`` value, across fit calls."""

    def __init__(self, monitor: str = "val_accuracy") -> None:
        super().__init__()
        self.monitor = monitor
        self.best = -math.inf
        self.best_weights: list | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is not None and value > self.best:
            self.best, self.best_weights = value, self.model.get_weights()


def _fit_phase(model: keras.Model, train, val, learning_rate: float, first_epoch: int, epochs: int,
               callbacks: list) -> None:
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(train, validation_data=val, initial_epoch=first_epoch, epochs=first_epoch + epochs,
              callbacks=callbacks, shuffle=False, verbose=2)  # tf.data already shuffles


def finetune_backbone(extractor: keras.Model, catalog: Catalog, size: int, preprocess, params: FinetuneParams,
                      folder: Path, seed: int) -> pd.DataFrame:
    """Train ``extractor`` in place on the catalogue's train split; return the per-epoch history.

    The extractor ends with the weights of the epoch with the best validation accuracy.
    """
    train_part, val_part = catalog.subset("train"), catalog.subset("validation")
    num_classes = int(catalog.items["label"].max()) + 1
    train = make_dataset(train_part.images, size, preprocess, params.batch_size,
                         train_part.items["label"].to_numpy(), shuffle_seed=seed)
    val = make_dataset(val_part.images, size, preprocess, params.batch_size, val_part.items["label"].to_numpy())
    classifier = build_classifier(extractor, num_classes, params.dropout)
    history_path = folder / HISTORY_FILE
    history_path.unlink(missing_ok=True)
    best = KeepBestWeights("val_accuracy")
    logger = keras.callbacks.CSVLogger(history_path, append=True)

    def stopper() -> keras.callbacks.Callback:
        return keras.callbacks.EarlyStopping(monitor="val_loss", patience=params.patience)

    extractor.trainable = False
    if params.frozen_epochs:
        _fit_phase(classifier, train, val, params.learning_rate, 0, params.frozen_epochs,
                   [best, logger, stopper()])
    done = len(pd.read_csv(history_path)) if history_path.exists() else 0
    if params.unfrozen_epochs and params.unfreeze_fraction > 0:
        unfreeze_top(extractor, params.unfreeze_fraction)
        _fit_phase(classifier, train, val, params.unfrozen_learning_rate, done, params.unfrozen_epochs,
                   [best, logger, stopper()])
    if best.best_weights is not None:
        classifier.set_weights(best.best_weights)
    history = pd.read_csv(history_path)
    history["phase"] = ["frozen" if e < done else "unfrozen" for e in history["epoch"]]
    return history


def model_fingerprint(backbone: BackboneParams, params: Params) -> str:
    """Hash of everything that determines a backbone's embedding model."""
    inputs = {"backbone": dataclasses.asdict(backbone), "finetune": dataclasses.asdict(params.finetune),
              "data": dataclasses.asdict(params.data), "seed": params.seed}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def prepare_embedding_model(backbone: BackboneParams, catalog: Catalog, params: FinetuneParams, folder: Path,
                            seed: int, fingerprint: str = "") -> EmbeddingModel:
    """Build (and, if enabled, fine-tune) one backbone; save the embedding model and its manifest.

    Where ImageNet weights cannot be loaded, the manifest records why and no model is saved.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spec = get_spec(backbone.name)
    manifest = {"backbone": backbone.name, "weights": backbone.weights, "image_size": backbone.input_size,
                "preprocessing": spec.preprocessing,
                "feature_layer": spec.feature_layer, "feature_dim": spec.feature_dim,
                "finetuned": params.enabled, "fingerprint": fingerprint}
    keras.utils.set_random_seed(seed)
    try:
        extractor, source = build_feature_extractor(backbone.name, backbone.weights, backbone.input_size,
                                                    backbone.weights_path)
    except WeightsUnavailableError as err:
        manifest.update(available=False, reason=str(err), remedy=err.remedy, hint=err.hint)
        write_json(folder / MANIFEST_FILE, manifest)
        (folder / EMBEDDING_FILE).unlink(missing_ok=True)
        return EmbeddingModel(backbone, manifest, None)
    manifest.update(weights_source=source.kind, weights_file=source.path, weights_sha256=source.sha256,
                    weights_loaded=source.load_path,
                    weights_used=source.describe())
    if params.enabled:
        history = finetune_backbone(extractor, catalog, backbone.input_size, spec.preprocess, params, folder, seed)
        best = history.loc[history["val_accuracy"].idxmax()]
        manifest.update(epochs=len(history), best_epoch=int(best["epoch"]),
                        best_val_accuracy=round(float(best["val_accuracy"]), 4))
        history.to_csv(folder / HISTORY_FILE, index=False)
    else:
        (folder / HISTORY_FILE).unlink(missing_ok=True)
    extractor.trainable = False
    with atomic_path(folder / EMBEDDING_FILE) as tmp:
        extractor.save(tmp)
    manifest.update(available=True)
    write_json(folder / MANIFEST_FILE, manifest)
    return EmbeddingModel(backbone, manifest, extractor)


def load_embedding_model(folder: str | Path, backbone: BackboneParams) -> EmbeddingModel:
    """Load what :func:`prepare_embedding_model` saved, refusing one made with other settings."""
    folder = Path(folder)
    if not (folder / MANIFEST_FILE).is_file():
        raise FileNotFoundError(f"no model for {backbone.name} in {folder}; run the fine-tune stage (02) first")
    manifest = read_json(folder / MANIFEST_FILE)
    expected = {"backbone": backbone.name, "weights": backbone.weights, "image_size": backbone.input_size}
    found = {key: manifest.get(key) for key in expected}
    if found != expected:
        raise ValueError(f"the model in {folder} was made with {found}, but the parameters ask for {expected}; "
                         "re-run the fine-tune stage")
    if not manifest.get("available"):
        return EmbeddingModel(backbone, manifest, None)
    return EmbeddingModel(backbone, manifest, keras.models.load_model(folder / EMBEDDING_FILE, compile=False))


def prepare_all(params: Params, catalog: Catalog, layout: RunLayout) -> dict[str, EmbeddingModel]:
    """Prepare every backbone in ``params``; one already made with the same inputs is reused.

    Reuse makes an interrupted stage resume at the first backbone it had not finished.
    """
    models = {}
    for backbone in params.backbones:
        folder = layout.model(backbone.name)
        fingerprint = model_fingerprint(backbone, params)
        manifest_path = folder / MANIFEST_FILE
        if manifest_path.is_file() and read_json(manifest_path).get("fingerprint") == fingerprint:
            print(f"{backbone.name}: reusing the model already prepared with these parameters")
            models[backbone.name] = load_embedding_model(folder, backbone)
        else:
            print(f"{backbone.name}: preparing ({'fine-tuning' if params.finetune.enabled else 'frozen'})")
            models[backbone.name] = prepare_embedding_model(backbone, catalog, params.finetune, folder, params.seed,
                                                            fingerprint)
    return models


def load_histories(params: Params, layout: RunLayout) -> dict[str, pd.DataFrame]:
    """Per-epoch training logs of the backbones that were fine-tuned."""
    paths = {b.name: layout.model(b.name) / HISTORY_FILE for b in params.backbones}
    return {name: pd.read_csv(path) for name, path in paths.items() if path.is_file()}
