"""Fine-tuning recipes: the training model built around a backbone, its losses, and the
embedding model that retrieval uses afterwards.

- ``softmax`` (the report's): pooled features → dropout → softmax over the classes; retrieval
  uses the pooled features.
- ``cosface``: pooled features → dense → L2-normalised embedding; a cosine classifier trained
  with CosFace's loss, softmax over s·(cos θ − m·[true class]), which pulls each class together
  on the unit sphere with a margin; retrieval uses the embedding.
- ``multitask``: the cosface embedding with one cosine classifier per label column (e.g.
  articleType and baseColour), losses summed, so the embedding keeps every column.

Augmentation (horizontal flip, small zoom and shift, edges filled with the photo's own white
border) changes no colour, since colour may be what relevance depends on.
"""
from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import ops

from fashion_search.params import FinetuneParams


@keras.saving.register_keras_serializable(package="fashion_search")
class CosineClassifier(keras.layers.Layer):
    """Cosine similarity of an embedding with one learnt, normalised direction per class."""

    def __init__(self, num_classes: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes

    def build(self, input_shape) -> None:
        self.directions = self.add_weight(shape=(input_shape[-1], self.num_classes), name="directions",
                                          initializer="glorot_uniform")

    def call(self, embeddings):
        directions = self.directions / ops.maximum(ops.norm(self.directions, axis=0, keepdims=True), 1e-12)
        embeddings = embeddings / ops.maximum(ops.norm(embeddings, axis=-1, keepdims=True), 1e-12)
        return ops.matmul(embeddings, directions)

    def get_config(self) -> dict:
        return {**super().get_config(), "num_classes": self.num_classes}


@keras.saving.register_keras_serializable(package="fashion_search")
class CosFaceLoss(keras.losses.Loss):
    """Cross-entropy of s·(cos θ − m·onehot(y)): the large-margin cosine loss (CosFace)."""

    def __init__(self, scale: float = 30.0, margin: float = 0.2, **kwargs) -> None:
        super().__init__(**kwargs)
        self.scale, self.margin = scale, margin

    def call(self, y_true, cosines):
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        logits = self.scale * (cosines - self.margin * ops.one_hot(labels, ops.shape(cosines)[-1]))
        return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)

    def get_config(self) -> dict:
        return {**super().get_config(), "scale": self.scale, "margin": self.margin}


@dataclass
class RecipeModels:
    """What one recipe trains, and what retrieval keeps."""

    training: keras.Model        # images → one output per label column, named after it
    embedding: keras.Model       # images → retrieval features (no augmentation, no dropout)
    losses: dict[str, keras.losses.Loss]
    metrics: dict[str, list[str]]


def augmentation(seed: int) -> keras.Sequential:
    """Geometric augmentation only: flip, ±10% zoom, ±5% shift, border pixels repeated."""
    return keras.Sequential([
        keras.layers.RandomFlip("horizontal", seed=seed),
        keras.layers.RandomZoom(0.1, fill_mode="nearest", seed=seed + 1),
        keras.layers.RandomTranslation(0.05, 0.05, fill_mode="nearest", seed=seed + 2),
    ], name="augmentation")


def build_recipe(recipe: str, extractor: keras.Model, classes: dict[str, int], params: FinetuneParams,
                 seed: int) -> RecipeModels:
    """The training and embedding models of ``recipe`` around ``extractor``.

    ``classes`` maps each label column to train on to its number of classes.
    """
    if recipe not in ("softmax", "cosface", "multitask"):
        raise ValueError(f"recipe {recipe!r} trains nothing")
    inputs = keras.Input(extractor.input_shape[1:], name="image")
    augmented = augmentation(seed)(inputs) if params.augment else inputs
    dropout = keras.layers.Dropout(params.dropout, name="dropout")
    pooled = extractor(augmented, training=False)  # BatchNorm keeps its ImageNet statistics
    if recipe == "softmax":
        outputs = {column: keras.layers.Dense(n, activation="softmax", name=column, dtype="float32")(dropout(pooled))
                   for column, n in classes.items()}  # float32 outputs: the loss stays exact in mixed precision
        return RecipeModels(keras.Model(inputs, outputs, name=f"{extractor.name}_softmax"), extractor,
                            {c: keras.losses.SparseCategoricalCrossentropy() for c in classes},
                            {c: ["accuracy"] for c in classes})
    projection = keras.layers.Dense(params.embedding_dim, name="projection")
    normalise = keras.layers.UnitNormalization(name="embedding", dtype="float32")
    embedded = normalise(projection(dropout(pooled)))
    outputs = {column: CosineClassifier(n, name=column, dtype="float32")(embedded) for column, n in classes.items()}
    plain = keras.Input(extractor.input_shape[1:], name="image")
    embedding = keras.Model(plain, normalise(projection(extractor(plain, training=False))),
                            name=f"{extractor.name}_{recipe}_embedding")
    return RecipeModels(keras.Model(inputs, outputs, name=f"{extractor.name}_{recipe}"), embedding,
                        {c: CosFaceLoss(params.scale, params.margin) for c in classes},
                        {c: [] for c in classes})


def training_columns(recipe: str, label_column: str, params: FinetuneParams) -> list[str]:
    """The label columns a recipe trains on."""
    return list(params.task_columns) if recipe == "multitask" else [label_column]
