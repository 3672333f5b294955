"""The ``tuned`` recipe's models: the fused recipe's heads (:mod:`fashion_search.models.fused`) on a
backbone whose top blocks learned fashion too.

The backbone is cut in two after a cache block: the **lower** part (ImageNet, frozen) maps a photo to
a feature map that is computed once and cached (:mod:`fashion_search.pipeline.lower_cache`); the
**upper** part maps that feature map to the pooled features and the last feature map, and its
blocks from a chosen layer on train with the heads. Batch normalisation keeps its ImageNet
statistics throughout (a CPU's small batches would estimate them badly).

For retrieval nothing is cut: the trained layers are the backbone's own, so the fused embedding
model around the whole backbone is the tuned model.
"""
from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import ops

from fashion_search.models.fused import Heads, feature_map_of
from fashion_search.models.recipes import CosFaceLoss, CosineClassifier

# Per backbone: the block whose output is cached (its residual sum: Keras numbers ``add_<n>`` layers
# by how many were built before in the process, so the sum is found after the block's last layer),
# and where training may start (the first layer trained)
# (the end of stage 5; Lite1 and Lite2 have four blocks there and five in stage 6, Lite0 three and four)
CACHE_BLOCK = {"efficientnet_lite0": "blocks_4_2", "efficientnet_lite1": "blocks_4_3",
               "efficientnet_lite2": "blocks_4_3"}
TOP_FROM = {"efficientnet_lite0": {"last-block": "blocks_6_0_conv_pw_conv2d",
                                   "last-5-blocks": "blocks_5_0_conv_pw_conv2d"},
            **{f"efficientnet_lite{v}": {"last-block": "blocks_6_0_conv_pw_conv2d",
                                        "last-6-blocks": "blocks_5_0_conv_pw_conv2d"} for v in (1, 2)}}


def block_output(extractor: keras.Model, block: str):
    """The output of ``block`` (e.g. ``blocks_4_2``): the residual sum after its projection's batch norm."""
    names = [layer.name for layer in extractor.layers]
    last = f"{block}_conv_pwl_bn"
    if last not in names:
        raise ValueError(f"{extractor.name} has no block {block!r}")
    after = extractor.layers[names.index(last) + 1]
    if not isinstance(after, keras.layers.Add):
        raise ValueError(f"block {block!r} of {extractor.name} ends in no residual sum")
    return after.output


def lower_part(extractor: keras.Model, cache_block: str) -> keras.Model:
    """Preprocessed image → the cache block's output."""
    return keras.Model(extractor.inputs, block_output(extractor, cache_block), name=f"{extractor.name}_lower")


def upper_part(extractor: keras.Model, cache_block: str) -> keras.Model:
    """The cache block's output → ``[pooled features, last feature map]``, sharing the backbone's layers."""
    return keras.Model(block_output(extractor, cache_block), [extractor.output, feature_map_of(extractor)],
                       name=f"{extractor.name}_upper")


def trained_layers(upper: keras.Model, first: str) -> list[keras.layers.Layer]:
    """The upper part's layers with weights from ``first`` on (batch normalisation left out)."""
    names = [layer.name for layer in upper.layers]
    if first not in names:
        raise ValueError(f"{upper.name} has no layer {first!r}")
    return [layer for layer in upper.layers[names.index(first):]
            if layer.weights and not isinstance(layer, keras.layers.BatchNormalization)]


def set_trainable(upper: keras.Model, first: str | None) -> None:
    """Train the upper part's layers from ``first`` on (None: none); batch normalisation never."""
    trained = {id(layer) for layer in trained_layers(upper, first)} if first else set()
    for layer in upper.layers:
        layer.trainable = id(layer) in trained


@dataclass
class TunedModels:
    """The model that trains (cached map and colour grid → type and colour cosines), the one that
    embeds for validation (→ type embedding and colour embedding) and, where asked for, the training
    model that also gives the paired views' loss (output ``pair``; the same layers)."""

    training: keras.Model
    embedding: keras.Model
    paired: keras.Model | None = None


class PairedViewLoss(keras.layers.Layer):
    """Each row's InfoNCE loss for a batch whose first half are catalogue photos and second half
    shopper-like views of them, in the same order: a view must find its own photo among the
    batch's photos, and a photo its own view, by the cosine of the fused vectors (colour weight 1)."""

    def __init__(self, temperature: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.temperature = temperature

    def call(self, parts):
        fused = ops.concatenate(parts, axis=-1)
        fused = fused / ops.maximum(ops.norm(fused, axis=-1, keepdims=True), 1e-12)
        half = ops.shape(fused)[0] // 2
        photos, views = fused[:half], fused[half:]
        logits = ops.matmul(photos, ops.transpose(views)) / self.temperature
        own = ops.arange(half)
        return ops.concatenate([
            keras.losses.sparse_categorical_crossentropy(own, logits, from_logits=True),
            keras.losses.sparse_categorical_crossentropy(own, ops.transpose(logits), from_logits=True)])

    def get_config(self) -> dict:
        return {**super().get_config(), "temperature": self.temperature}


def row_losses(_, losses):
    """A loss that is the model's own output (``PairedViewLoss``): its mean is minimised."""
    return losses


def build_tuned(upper: keras.Model, heads: Heads, type_classes: int, colour_classes: int,
                pair_temperature: float | None = None) -> TunedModels:
    """The models around ``upper`` and the fused ``heads``; with ``pair_temperature``, also the paired
    training model, whose output ``pair`` is the ``PairedViewLoss`` of its batch."""
    cached = keras.Input(upper.input_shape[1:], name="cached_map")
    grid = keras.Input(heads.colour_embedding.inputs[1].shape[1:], name="colour_grid")
    pooled, maps = upper(cached)
    type_part = heads.type_embedding(pooled)
    colour_part = heads.colour_embedding([maps, grid])
    outputs = {"type": CosineClassifier(type_classes, name="type")(type_part),
               "colour": CosineClassifier(colour_classes, name="colour")(colour_part)}
    paired = None
    if pair_temperature:
        pair = PairedViewLoss(pair_temperature, name="pair")([type_part, colour_part])
        paired = keras.Model([cached, grid], {**outputs, "pair": pair}, name="tuned_paired_training")
    return TunedModels(keras.Model([cached, grid], outputs, name="tuned_training"),
                       keras.Model([cached, grid], [type_part, colour_part], name="tuned_embedding"), paired)


def compile_tuned(training: keras.Model, learning_rate, scale: float, margin: float, pair_weight: float = 0.0) -> None:
    """Adam on both CosFace losses, summed, plus ``pair_weight`` × the paired views' loss where the model has one."""
    losses = {"type": CosFaceLoss(scale, margin), "colour": CosFaceLoss(scale, margin)}
    weights = {"type": 1.0, "colour": 1.0}
    if "pair" in training.output_names:
        losses["pair"], weights["pair"] = row_losses, pair_weight
    training.compile(keras.optimizers.Adam(learning_rate), loss=losses, loss_weights=weights)
