"""The ``fused`` recipe's models: what a product looks like and what colour it is, in one vector.

On top of a frozen ImageNet backbone sit two small heads:

- the **type head**: pooled features → dropout → (dense ReLU of ``type_hidden`` → dropout →) dense →
  L2-normalised embedding, trained with CosFace on the label column (articleType), which pulls
  each type together on the sphere;
- the **colour head**: the garment's colours read where the garment is. The photo's colour grid
  (:func:`~fashion_search.colour_grid.colour_grid`: colour shares per region) is weighed by a
  small scorer on the backbone's feature map (:class:`AttendedColours`), so the trousers under a
  T-shirt or a model's hair count less; then dense → L2-normalised embedding, trained with CosFace
  on the colour column (baseColour). Without a colour column, the colour part is the whole
  garment's histogram (:class:`GridHistogram`).

The retrieval vector is ``[type embedding, w · colour embedding]``: its inner product is
type similarity + w² × colour similarity, so any index (flat, HNSW, IVF-PQ) searches by both at
once. The weight ``w`` is chosen on validation and recorded in the model's manifest; a search
scales the query's colour part to turn colour down, off or up.
"""
from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import ops

from fashion_search.models.recipes import CosFaceLoss, CosineClassifier
from fashion_search.params import FinetuneParams
from fashion_search.colour_grid import HISTOGRAM_DIM

COLOUR_DIM = 64          # size of the learned colour embedding
COLOUR_HIDDEN = 256      # width of the colour head's hidden layer
SCORER_HIDDEN = 64       # width of the region scorer's hidden layer
IMAGE_INPUT = "image"
COLOUR_INPUT = "colour"


def feature_map_of(extractor: keras.Model):
    """The backbone's last spatial feature map ``(h, w, channels)``: the output of its last 4-D layer."""
    for layer in reversed(extractor.layers):
        if len(layer.output.shape) == 4:
            return layer.output
    raise ValueError(f"{extractor.name} has no spatial feature map for the colour head")


def grid_cells(extractor: keras.Model) -> int:
    """How many cells per side the colour grid has: as many as the feature map."""
    return int(feature_map_of(extractor).shape[1])


@keras.saving.register_keras_serializable(package="fashion_search")
class AttendedColours(keras.layers.Layer):
    """The garment's colour histogram, read where the garment is: a learnt score per cell of the
    feature map weighs that cell's colour shares (softmax over cells); the weighted shares are
    renormalised and square-rooted like :func:`~fashion_search.colour_grid.colour_histogram`."""

    def __init__(self, hidden: int = SCORER_HIDDEN, **kwargs) -> None:
        super().__init__(**kwargs)
        self.hidden = hidden
        self.scorer_hidden = keras.layers.Dense(hidden, activation="relu", name="scorer_hidden")
        self.scorer = keras.layers.Dense(1, name="scorer")

    def build(self, input_shapes) -> None:
        maps_shape, _ = input_shapes
        self.scorer_hidden.build(maps_shape)
        self.scorer.build((*maps_shape[:-1], self.hidden))

    def call(self, inputs):
        maps, grid = inputs
        cells = ops.shape(grid)[1] * ops.shape(grid)[2]
        scores = ops.reshape(self.scorer(self.scorer_hidden(maps)), (-1, cells))
        weights = ops.exp(scores - ops.max(scores, axis=-1, keepdims=True))   # softmax over the cells
        shares = ops.einsum("bn,bnk->bk", weights / ops.sum(weights, axis=-1, keepdims=True),
                            ops.reshape(grid, (-1, cells, ops.shape(grid)[-1])))
        return ops.sqrt(shares / ops.maximum(ops.sum(shares, axis=-1, keepdims=True), 1e-6) + 1e-8)

    def get_config(self) -> dict:
        return {**super().get_config(), "hidden": self.hidden}


@keras.saving.register_keras_serializable(package="fashion_search")
class GridHistogram(keras.layers.Layer):
    """The colour grid summed over its cells and square-rooted: the whole garment's histogram."""

    def call(self, grid):
        shares = ops.sum(grid, axis=(1, 2))
        return ops.sqrt(shares / ops.maximum(ops.sum(shares, axis=-1, keepdims=True), 1e-6))


@dataclass
class Heads:
    """The layers trained on cached features, and the models that train them."""

    type_embedding: keras.Sequential
    colour_embedding: keras.Model | None   # None: the whole garment's histogram is the colour part
    type_training: keras.Model
    colour_training: keras.Model | None


def _colour_head(map_shape: tuple, cells: int, params: FinetuneParams, seed: int) -> keras.Model:
    """Feature map and colour grid → L2-normalised colour embedding."""
    maps = keras.Input(map_shape, name="feature_map")
    grid = keras.Input((cells, cells, HISTOGRAM_DIM), name="colour_grid")
    hidden = keras.layers.Dense(COLOUR_HIDDEN, activation="relu", name="colour_hidden")(
        AttendedColours(name="attended_colours")([maps, grid]))
    projected = keras.layers.Dense(COLOUR_DIM, name="colour_projection")(
        keras.layers.Dropout(params.dropout, seed=seed + 1)(hidden))
    return keras.Model([maps, grid], keras.layers.UnitNormalization()(projected), name="colour_head")


def build_heads(feature_dim: int, map_shape: tuple, type_classes: int, colour_classes: int | None,
                params: FinetuneParams, seed: int) -> Heads:
    """Fresh type and colour heads for pooled features of ``feature_dim`` and feature maps of
    ``map_shape`` (colour head only with ``colour_classes``)."""
    keras.utils.set_random_seed(seed)
    hidden = ([keras.layers.Dense(params.type_hidden, activation="relu", name="type_hidden"),
               keras.layers.Dropout(params.dropout, seed=seed + 2)] if params.type_hidden else [])
    type_embedding = keras.Sequential([keras.layers.Dropout(params.dropout, seed=seed), *hidden,
                                       keras.layers.Dense(params.embedding_dim, name="type_projection"),
                                       keras.layers.UnitNormalization()], name="type_head")
    features = keras.Input((feature_dim,), name="features")
    type_training = keras.Model(features, CosineClassifier(type_classes, name="type")(type_embedding(features)))
    type_training.compile(keras.optimizers.Adam(params.learning_rate), loss=CosFaceLoss(params.scale, params.margin))
    if colour_classes is None:
        return Heads(type_embedding, None, type_training, None)
    colour_embedding = _colour_head(tuple(map_shape), int(map_shape[0]), params, seed)
    colour_training = keras.Model(colour_embedding.inputs,
                                  CosineClassifier(colour_classes, name="colour")(colour_embedding.output))
    colour_training.compile(keras.optimizers.Adam(params.learning_rate), loss=CosFaceLoss(params.scale, params.margin))
    return Heads(type_embedding, colour_embedding, type_training, colour_training)


def fused_embedding_model(extractor: keras.Model, heads: Heads, colour_weight: float) -> keras.Model:
    """Preprocessed image and colour grid → ``[type embedding, colour_weight · colour embedding]``."""
    image = keras.Input(extractor.input_shape[1:], name=IMAGE_INPUT)
    cells = grid_cells(extractor)
    grid = keras.Input((cells, cells, HISTOGRAM_DIM), name=COLOUR_INPUT)
    backbone = keras.Model(extractor.inputs, [extractor.output, feature_map_of(extractor)], name=extractor.name)
    features, maps = backbone(image, training=False)
    type_part = heads.type_embedding(features, training=False)
    if heads.colour_embedding is None:
        colour_part = GridHistogram(name="garment_histogram")(grid)
    else:
        colour_part = heads.colour_embedding([maps, grid], training=False)
    weighted = keras.layers.Rescaling(colour_weight, name="colour_weight")(colour_part)
    return keras.Model([image, grid], keras.layers.Concatenate(name="fused")([type_part, weighted]),
                       name=f"{extractor.name}_fused_embedding")


def takes_colour(model: keras.Model) -> bool:
    """Whether an embedding model wants a colour grid beside the image (a fused model)."""
    return len(getattr(model, "inputs", None) or ()) == 2


def colour_cells_of(model: keras.Model) -> int:
    """Cells per side of the colour grid a fused model takes."""
    return int(model.inputs[1].shape[1])
