"""Building a backbone: the one entry point, :func:`build_feature_extractor`.

The registry says what a backbone is, :mod:`~fashion_search.models.weights` where its ImageNet
weights are; this module builds the Keras model once, loads those weights into it (converting
a PyTorch state dict into the Keras cache the first time) and cuts it at its feature layer.
"""
from __future__ import annotations

import keras

from fashion_search.backbone_specs import BackboneSpec, get_spec
from fashion_search.models.weights import WeightsSource, resolve_weights


def build_architecture(spec: BackboneSpec, size: int, weights_path: str | None = None) -> keras.Model:
    """The backbone's full Keras model (with its ImageNet head where the family has one there).

    ``weights_path`` is a Keras weights file, or None for random initialisation.
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


def build_full_model(name: str, weights: str, image_size: int | None = None,
                     weights_path: str | None = None) -> tuple[keras.Model, WeightsSource]:
    """The backbone's full model with its weights (``weights``: ``imagenet`` or ``none``), and their source.

    Raises :class:`~fashion_search.models.weights.WeightsUnavailableError` when ImageNet weights
    cannot be resolved.
    """
    spec = get_spec(name)
    size = image_size or spec.default_size
    if weights == "none":
        return build_architecture(spec, size), WeightsSource("random")
    source = resolve_weights(spec, weights_path)
    if not source.convert:
        return build_architecture(spec, size, source.load_path), source
    from fashion_search.models.convert import convert_pth

    model = build_architecture(spec, size)
    convert_pth(source.path, model, source.load_path)
    return model, source


def build_feature_extractor(name: str, weights: str, image_size: int | None = None,
                            weights_path: str | None = None) -> tuple[keras.Model, WeightsSource]:
    """A model mapping preprocessed ``(size, size, 3)`` images to features, and its weights' source."""
    full, source = build_full_model(name, weights, image_size, weights_path)
    return feature_model(get_spec(name), full), source
