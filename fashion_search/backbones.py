"""Registry of pretrained backbones, each cut at the layer whose output is the image feature.

A backbone is described once (input size, preprocessing, feature layer, feature dimension)
and built on demand with ``weights="imagenet"`` (keras.applications' own loading: the Keras
cache, then a download) or ``weights="none"`` (random initialisation, for tests and offline
dry runs).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import keras

WEIGHT_CHOICES = ("imagenet", "none")


KERAS_CACHE_REMEDY = (
    "run once on a machine with internet (keras.applications downloads the file) and copy it into "
    "~/.keras/models/ (or $KERAS_HOME/models/)"
)


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights were asked for but could not be loaded; ``remedy`` says how to get them."""

    def __init__(self, message: str, remedy: str) -> None:
        super().__init__(f"{message}. To get them: {remedy}")
        self.remedy = remedy


@dataclass(frozen=True)
class BackboneSpec:
    """What the rest of the project needs to know about one backbone."""

    name: str
    application: str            # class name in keras.applications
    module: str                 # keras.applications submodule holding preprocess_input
    default_size: int           # input side the ImageNet weights were trained at
    min_size: int               # smallest side the architecture accepts
    feature_layer: str          # layer whose output is the feature vector (pooled output without top)
    feature_dim: int
    include_top: bool           # whether the feature layer sits in the classifier top
    fixed_size: bool = False    # True when dense layers tie ImageNet weights to default_size

    @property
    def preprocess(self) -> Callable:
        """The backbone's own ``preprocess_input`` (expects RGB values in 0..255)."""
        return getattr(keras.applications, self.module).preprocess_input


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec("vgg16", "VGG16", "vgg16", 224, 32, "fc2", 4096, include_top=True, fixed_size=True),
        BackboneSpec("resnet50", "ResNet50", "resnet50", 224, 32, "global_average_pool", 2048, include_top=False),
        BackboneSpec("inceptionv3", "InceptionV3", "inception_v3", 299, 75, "global_average_pool", 2048, include_top=False),
    )
}


def get_spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise KeyError(f"unknown backbone '{name}'; known: {', '.join(BACKBONES)}")
    return BACKBONES[name]


def build_feature_extractor(name: str, weights: str, image_size: int | None = None) -> keras.Model:
    """Return a model mapping preprocessed ``(size, size, 3)`` images to feature vectors.

    Raises :class:`WeightsUnavailableError` when ImageNet weights cannot be loaded.
    """
    spec = get_spec(name)
    size = image_size or spec.default_size
    constructor = getattr(keras.applications, spec.application)
    kwargs = dict(weights=None if weights == "none" else weights, input_shape=(size, size, 3))
    if not spec.include_top:
        kwargs.update(include_top=False, pooling="avg")
    try:
        full = constructor(**kwargs)
    except Exception as err:  # keras raises a bare Exception for a failed download
        if weights == "none":
            raise
        raise WeightsUnavailableError(
            f"{spec.application} ImageNet weights could not be loaded ({err})", KERAS_CACHE_REMEDY
        ) from err
    features = full.get_layer(spec.feature_layer).output if spec.include_top else full.output
    return keras.Model(full.inputs, features, name=f"{name}_features")
