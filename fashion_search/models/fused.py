"""The ``fused`` recipe's models: what a product looks like and what colour it is, in one vector.

On top of a frozen ImageNet backbone sit two small heads:

- the **type head**: pooled features → dropout → dense → L2-normalised embedding, trained with
  CosFace on the label column (articleType), which pulls each type together on the sphere;
- the **colour head**: pooled features ⊕ the garment's colour histogram
  (:func:`~fashion_search.search.colour.colour_histogram`) → dense → L2-normalised embedding,
  trained with CosFace on the colour column (baseColour). Without a colour column, the colour
  part is the histogram itself.

The retrieval vector is ``[type embedding, w · colour embedding]``: its inner product is
type similarity + w² × colour similarity, so any index (flat, HNSW, IVF-PQ) searches by both at
once. The weight ``w`` is chosen on validation and recorded in the model's manifest; a search
scales the query's colour part to turn colour down, off or up.
"""
from __future__ import annotations

from dataclasses import dataclass

import keras

from fashion_search.models.recipes import CosFaceLoss, CosineClassifier
from fashion_search.params import FinetuneParams
from fashion_search.search.colour import HISTOGRAM_DIM

COLOUR_DIM = 64          # size of the learned colour embedding
IMAGE_INPUT = "image"
COLOUR_INPUT = "colour"


@dataclass
class Heads:
    """The layers trained on cached features, and the models that train them."""

    type_embedding: keras.Sequential
    colour_embedding: keras.Sequential | None   # None: the colour histogram is the colour part
    type_training: keras.Model
    colour_training: keras.Model | None


def build_heads(feature_dim: int, type_classes: int, colour_classes: int | None, params: FinetuneParams,
                seed: int) -> Heads:
    """Fresh type and colour heads for features of ``feature_dim`` (colour head only with ``colour_classes``)."""
    keras.utils.set_random_seed(seed)
    type_embedding = keras.Sequential([keras.layers.Dropout(params.dropout, seed=seed),
                                       keras.layers.Dense(params.embedding_dim, name="type_projection"),
                                       keras.layers.UnitNormalization()], name="type_head")
    features = keras.Input((feature_dim,), name="features")
    type_training = keras.Model(features, CosineClassifier(type_classes, name="type")(type_embedding(features)))
    type_training.compile(keras.optimizers.Adam(params.learning_rate), loss=CosFaceLoss(params.scale, params.margin))
    if colour_classes is None:
        return Heads(type_embedding, None, type_training, None)
    colour_embedding = keras.Sequential([keras.layers.Dense(COLOUR_DIM, name="colour_projection"),
                                         keras.layers.UnitNormalization()], name="colour_head")
    histogram = keras.Input((HISTOGRAM_DIM,), name="histogram")
    joined = keras.layers.Concatenate()([keras.layers.Dropout(params.dropout, seed=seed + 1)(features), histogram])
    colour_training = keras.Model([features, histogram],
                                  CosineClassifier(colour_classes, name="colour")(colour_embedding(joined)))
    colour_training.compile(keras.optimizers.Adam(params.learning_rate), loss=CosFaceLoss(params.scale, params.margin))
    return Heads(type_embedding, colour_embedding, type_training, colour_training)


def fused_embedding_model(extractor: keras.Model, heads: Heads, colour_weight: float) -> keras.Model:
    """Preprocessed image and colour histogram → ``[type embedding, colour_weight · colour embedding]``."""
    image = keras.Input(extractor.input_shape[1:], name=IMAGE_INPUT)
    histogram = keras.Input((HISTOGRAM_DIM,), name=COLOUR_INPUT)
    features = extractor(image, training=False)
    type_part = heads.type_embedding(features, training=False)
    if heads.colour_embedding is None:
        colour_part = histogram
    else:
        colour_part = heads.colour_embedding(keras.layers.Concatenate()([features, histogram]), training=False)
    weighted = keras.layers.Rescaling(colour_weight, name="colour_weight")(colour_part)
    return keras.Model([image, histogram], keras.layers.Concatenate(name="fused")([type_part, weighted]),
                       name=f"{extractor.name}_fused_embedding")


def takes_colour(model: keras.Model) -> bool:
    """Whether an embedding model wants a colour histogram beside the image (a fused model)."""
    return len(getattr(model, "inputs", None) or ()) == 2
