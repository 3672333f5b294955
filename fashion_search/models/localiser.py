"""The garment localiser's network: which pixels of a photo belong to which group of garment.

A small head on the frozen EfficientNet-Lite0 (ImageNet weights) reads its feature maps at
strides 4, 8, 16 and 32 (like a feature pyramid: the coarse maps say *what*, the fine ones *where*)
and gives, for each cell of a 56 × 56 grid over the 224-pixel square, the probability of
background and of each garment group (:data:`fashion_search.data.cutouts.GROUPS`). Several such
heads, trained alike from different seeds, are averaged: one head's answer depends on the chance
of its training, their mean much less. The heads alone are trained and shipped
(``shipped/garment_localiser.npz``); the backbone's weights are the ones every Lite0 model here uses.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fashion_search.data.cutouts import GROUPS

SIZE = 224
BACKBONE = "efficientnet_lite0"
# Where the backbone's stride-4, -8, -16 and -32 maps are: the inputs of the blocks that shrink them next.
FEATURE_LAYERS = ("blocks_2_0_conv_pw_conv2d", "blocks_3_0_conv_pw_conv2d", "blocks_5_0_conv_pw_conv2d",
                  "blocks_6_0_conv_pwl_bn")
HEAD_WIDTH = 64
FINE_WIDTH = 32  # channels at stride 4
CELLS = SIZE // 4  # the grid the head answers on
CLASSES = len(GROUPS) + 1  # background, then each group
SHIPPED_HEAD = Path(__file__).with_name("shipped") / "garment_localiser.npz"
MIN_GARMENT_SHARE = 0.01  # smaller regions of a photo are not taken for products
JOIN_CELLS = 1  # regions of one group at most this many grid cells apart are one garment (a shoe pair, a split top)
MASK_SIDE = 256  # garment masks are kept at most this large


def feature_extractor(weights: str = "imagenet") -> "keras.Model":
    """The frozen Lite0 cut at its stride-4, -8, -16 and -32 feature maps (56, 28, 14 and 7 cells at 224 px)."""
    import keras

    from fashion_search.models.backbones import build_full_model

    full, _ = build_full_model(BACKBONE, weights, SIZE)
    maps = [*(full.get_layer(name).input for name in FEATURE_LAYERS[:-1]), full.get_layer(FEATURE_LAYERS[-1]).output]
    extractor = keras.Model(full.inputs, maps, name="localiser_features")
    extractor.trainable = False
    return extractor


def build_head(map_shapes: list[tuple], seed: int = 0, name: str | None = None, width: int = HEAD_WIDTH,
               fine_width: int = FINE_WIDTH) -> "keras.Model":
    """Feature maps → per-cell class logits ``(56, 56, CLASSES)``: the coarse maps upsampled and
    added to the finer ones, one 3 × 3 convolution at each step, ``width`` channels down to stride 8
    and ``fine_width`` at stride 4 (``name``: unique unless given)."""
    import keras
    from keras import layers

    init = keras.initializers.GlorotUniform(seed)
    finest, fine, middle, coarse = (keras.Input(shape[1:]) for shape in map_shapes)

    def lateral(x, name, channels=width):
        return layers.Conv2D(channels, 1, activation="relu", kernel_initializer=init, name=name)(x)

    x = layers.UpSampling2D(2, interpolation="bilinear")(lateral(coarse, "lateral_32"))
    x = layers.Conv2D(width, 3, padding="same", activation="relu", kernel_initializer=init,
                      name="merge_16")(layers.Add()([x, lateral(middle, "lateral_16")]))
    x = layers.UpSampling2D(2, interpolation="bilinear")(x)
    x = layers.Conv2D(width, 3, padding="same", activation="relu", kernel_initializer=init,
                      name="merge_8")(layers.Add()([x, lateral(fine, "lateral_8")]))
    x = layers.UpSampling2D(2, interpolation="bilinear")(lateral(x, "narrow_8", fine_width))
    x = layers.Conv2D(fine_width, 3, padding="same", activation="relu", kernel_initializer=init,
                      name="merge_4")(layers.Add()([x, lateral(finest, "lateral_4", fine_width)]))
    logits = layers.Conv2D(CLASSES, 1, kernel_initializer=init, name="classes")(x)
    return keras.Model([finest, fine, middle, coarse], logits, name=name)


def build_localiser(extractor: "keras.Model", heads: list["keras.Model"]) -> "keras.Model":
    """Preprocessed photos ``(B, 224, 224, 3)`` → class probabilities ``(B, 56, 56, CLASSES)``,
    the mean of the heads' (the backbone runs once)."""
    import keras

    maps = extractor(extractor.inputs)
    answers = [keras.layers.Softmax(name=f"probabilities_{k}")(head(maps)) for k, head in enumerate(heads)]
    mean = keras.layers.Average(name="probabilities")(answers) if len(answers) > 1 else answers[0]
    return keras.Model(extractor.inputs, mean, name="garment_localiser")


def head_arrays(heads: list["keras.Model"]) -> dict[str, np.ndarray]:
    """The heads' weights by head and layer (``head0/merge_4/0``…), for an ``.npz`` file."""
    return {f"head{k}/{layer.name}/{i}": np.asarray(w) for k, head in enumerate(heads)
            for layer in head.layers for i, w in enumerate(layer.get_weights())}


def heads_from_arrays(arrays: dict[str, np.ndarray], map_shapes: list[tuple]) -> list["keras.Model"]:
    """As many heads as :func:`head_arrays`' output holds, each as wide as its arrays say, their
    weights set (a file of one head saved before heads were averaged is read as one); arrays of
    another head are refused."""
    if not any(re.match(r"head\d+/", name) for name in arrays):
        arrays = {f"head0/{name}": values for name, values in arrays.items()}
    count = len({name.split("/")[0] for name in arrays})
    def width(k: int, layer: str, default: int) -> int:   # a layer's channels: the length of its saved bias
        bias = arrays.get(f"head{k}/{layer}/1")
        return default if bias is None else len(bias)

    heads = [build_head(map_shapes, name=f"localiser_head_{k}", width=width(k, "merge_16", HEAD_WIDTH),
                        fine_width=width(k, "merge_4", FINE_WIDTH)) for k in range(count)]
    wanted = set(head_arrays(heads))
    if not count or set(arrays) != wanted:
        raise ValueError(f"these weights are of another localiser head ({len(arrays)} arrays, not the "
                         f"{len(wanted)} its {count} heads have); retrain it with `make localiser`")
    for k, head in enumerate(heads):
        for layer in head.layers:
            weights = len(layer.get_weights())
            if weights:
                layer.set_weights([arrays[f"head{k}/{layer.name}/{i}"] for i in range(weights)])
    return heads


def save_heads(heads: list["keras.Model"], path: Path) -> None:
    """The heads' weights to ``path`` (``.npz``), written atomically."""
    from fashion_search.io import atomic_path

    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            np.savez(handle, **head_arrays(heads))


@dataclass
class Garment:
    """One product found in a photo: its box ``(x0, y0, x1, y1)`` in the photo's pixels (end
    exclusive), its group, a score (larger: more surely a product, and larger), and the mask it is
    cut out by (within its box) over the photo at a reduced size (same aspect)."""

    box: tuple[int, int, int, int]
    group: str
    score: float
    mask: np.ndarray

    def describe(self) -> dict:
        """The garment for JSON: box, group and score."""
        return {"box": list(self.box), "group": self.group, "score": round(self.score, 3)}

    def on(self, found_on: tuple[int, int], told_on: tuple[int, int]) -> "Garment":
        """The same garment, its box moved from an image of ``found_on`` (width, height) onto one of
        ``told_on`` (:func:`box_on`; the mask covers the whole photo, so it stays); itself when they agree."""
        if tuple(found_on) == tuple(told_on):
            return self
        return Garment(box_on(self.box, found_on, told_on), self.group, self.score, self.mask)


def box_on(box: tuple[int, int, int, int], from_size: tuple[int, int], to_size: tuple[int, int]
           ) -> tuple[int, int, int, int]:
    """A box ``(x0, y0, x1, y1)`` on an image of ``from_size`` (width, height) moved onto one of
    ``to_size``, each side by its own ratio (a reduced decode rounds each side on its own); it grows
    outwards to whole pixels and stays inside the image."""
    scale_x, scale_y = to_size[0] / from_size[0], to_size[1] / from_size[1]
    x0, y0, x1, y1 = box
    return (max(0, int(x0 * scale_x)), max(0, int(y0 * scale_y)), min(to_size[0], int(np.ceil(x1 * scale_x))),
            min(to_size[1], int(np.ceil(y1 * scale_y))))


def square_frame(height: int, width: int, size: int = SIZE) -> tuple[float, int, int]:
    """How :func:`~fashion_search.images.fit_to_square` places a photo: its scale, left and top offsets."""
    scale = size / max(height, width)
    fitted = (max(1, round(width * scale)), max(1, round(height * scale)))
    return scale, (size - fitted[0]) // 2, (size - fitted[1]) // 2


def class_planes(probabilities: np.ndarray, height: int, width: int) -> np.ndarray:
    """The localiser's cell probabilities ``(CELLS, CELLS, CLASSES)`` over a photo of ``height`` ×
    ``width`` framed as a query is (:func:`~fashion_search.images.fit_to_square`), back on the photo at a
    reduced size: ``(h, w, CLASSES)`` with the longer side at most :data:`MASK_SIDE`."""
    from PIL import Image

    scale, left, top = square_frame(height, width)
    fitted = (max(1, round(width * scale)), max(1, round(height * scale)))
    shrink = min(1.0, MASK_SIDE / max(height, width))
    side = (max(1, round(width * shrink)), max(1, round(height * shrink)))
    planes = []
    for c in range(probabilities.shape[-1]):
        square = Image.fromarray(probabilities[..., c].astype(np.float32)).resize((SIZE, SIZE), Image.BILINEAR)
        shown = square.crop((left, top, left + fitted[0], top + fitted[1]))
        planes.append(np.asarray(shown.resize(side, Image.BILINEAR)))
    return np.stack(planes, axis=-1)


def garments_from(probabilities: np.ndarray, height: int, width: int, min_share: float = MIN_GARMENT_SHARE
                  ) -> list[Garment]:
    """The garments in a photo of ``height`` × ``width`` pixels, best first: each connected region
    of one group where a product is likelier than background (regions of one group at most
    :data:`JOIN_CELLS` grid cells apart are joined), of at least ``min_share`` of the photo. Each is
    boxed by its region; its mask is every pixel where a product is likelier than background (a
    region's own pixels miss the parts of a product taken for another group)."""
    from scipy import ndimage

    planes = class_planes(probabilities, height, width)
    labels, foreground = planes.argmax(axis=-1), 1.0 - planes[..., 0]
    products = foreground > 0.5   # the mask each garment is cut out by: a product split between groups stays whole
    products.setflags(write=False)   # one array, shared by every garment found
    found = []
    reach = max(1, round(max(planes.shape[:2]) / CELLS * JOIN_CELLS))   # JOIN_CELLS in the planes' pixels
    for group in range(1, planes.shape[-1]):
        own = (labels == group) & products
        regions, _ = ndimage.label(ndimage.binary_dilation(own, iterations=reach))
        regions[~own] = 0   # pieces of one group that nearly touch are one garment (of their own pixels)
        for region, (rows, cols) in enumerate(ndimage.find_objects(regions), start=1):
            mask = regions[rows, cols] == region
            share = mask.sum() / labels.size
            if share >= min_share:
                full = np.zeros(labels.shape, bool)
                full[rows, cols] = mask
                box = box_on((cols.start, rows.start, cols.stop, rows.stop), (planes.shape[1], planes.shape[0]),
                             (width, height))
                found.append(Garment(box, GROUPS[group - 1], float(foreground[full].mean() * np.sqrt(share)), products))
    return sorted(found, key=lambda g: -g.score)
