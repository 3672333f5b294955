"""Where fine-tuning runs: the devices, the precision of its arithmetic, and the batch each step takes.

``finetune.devices`` is ``auto`` (every GPU TensorFlow sees, else the CPU), ``cpu``, or a number
of GPUs; two or more train under ``tf.distribute.MirroredStrategy`` (one replica per GPU, the
gradients summed across them). ``finetune.precision`` is ``auto`` (``mixed_float16`` on GPUs,
``float32`` on a CPU, where half precision is slower), ``float32`` or ``mixed_float16``: float16
arithmetic with float32 weights, and float32 output layers (the recipes build them so). The
model that is saved afterwards computes in float32 again. ``finetune.batch_size`` is what each
device takes per step; a step over N devices takes N times as many photos. On a CPU all of
this is today's single-device float32 training.
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Iterator

import keras
import tensorflow as tf

MIXED = "mixed_float16"
CPU = "/cpu:0"


class DevicesError(ValueError):
    """``finetune.devices`` asks for GPUs TensorFlow does not see."""


@dataclass(frozen=True)
class TrainingDevices:
    """How fine-tuning runs: the strategy, its devices and the precision policy."""

    strategy: tf.distribute.Strategy
    devices: tuple[str, ...]
    precision: str

    @property
    def replicas(self) -> int:
        """Devices that each take a share of a step's batch."""
        return int(self.strategy.num_replicas_in_sync)

    @property
    def on_gpu(self) -> bool:
        return any("GPU" in device.upper() for device in self.devices)

    def global_batch(self, per_device: int) -> int:
        """Photos per training step: ``per_device`` on each replica."""
        return per_device * self.replicas

    def describe(self) -> str:
        """One phrase for the training log: where, how many, what precision."""
        where = f"{self.replicas} GPUs (mirrored)" if self.replicas > 1 else ("1 GPU" if self.on_gpu else "the CPU")
        return f"{where}, {self.precision}"


def choose_devices(devices: str | int, precision: str) -> TrainingDevices:
    """The strategy and precision ``finetune.devices`` / ``finetune.precision`` ask for, on the
    GPUs TensorFlow sees."""
    gpus = visible_gpus()
    names = device_names(devices, gpus)
    return TrainingDevices(strategy_for(names, bool(gpus)), tuple(names), precision_for(precision, names))


def visible_gpus() -> list[str]:
    """The GPUs TensorFlow sees, by name."""
    return [device.name for device in tf.config.list_logical_devices("GPU")]


def device_names(devices: str | int, gpus: list[str]) -> list[str]:
    """The devices to train on: ``devices`` (auto, cpu or a number of GPUs) among ``gpus``."""
    if devices == "cpu" or (devices == "auto" and not gpus):
        return [CPU]
    wanted = len(gpus) if devices == "auto" else int(devices)
    if wanted > len(gpus):
        raise DevicesError(f"'finetune.devices' asks for {wanted} GPU{'s' * (wanted > 1)}, but TensorFlow sees "
                           f"{len(gpus)}; set it to auto or cpu, or install tensorflow[and-cuda] on a GPU machine")
    return gpus[:wanted]


def precision_for(precision: str, names: list[str]) -> str:
    """The Keras policy: ``auto`` is mixed_float16 on GPUs and float32 on a CPU."""
    if precision != "auto":
        return precision
    return "float32" if names == [CPU] else MIXED


def strategy_for(names: list[str], gpus_seen: bool = False) -> tf.distribute.Strategy:
    """Several devices: mirrored across them. One: TensorFlow's default placement, as without
    a strategy (pinned to the CPU only where GPUs are there but not wanted)."""
    if len(names) > 1:
        return tf.distribute.MirroredStrategy(names)
    if names == [CPU] and gpus_seen:
        return tf.distribute.OneDeviceStrategy(CPU)
    return tf.distribute.get_strategy()


@contextlib.contextmanager
def training_on(chosen: TrainingDevices) -> Iterator[TrainingDevices]:
    """Build and train inside: the precision policy set and the strategy's scope entered; the
    policy before is restored on the way out."""
    before = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(chosen.precision)
    try:
        with chosen.strategy.scope():
            yield chosen
    finally:
        keras.mixed_precision.set_global_policy(before)


def float32_copy(model: keras.Model) -> keras.Model:
    """``model`` with every layer computing in float32 and the same weights (a model trained in
    mixed precision, made fit to save for feature extraction on any device)."""
    if all(layer.dtype_policy.name == "float32" for layer in model._flatten_layers()):
        return model
    config = json.loads(model.to_json())

    def plain(node):
        if isinstance(node, dict):
            if node.get("class_name") == "DTypePolicy":
                return {**node, "config": {**node["config"], "name": "float32"}}
            return {key: plain(value) for key, value in node.items()}
        return [plain(value) for value in node] if isinstance(node, list) else node

    copy = keras.models.model_from_json(json.dumps(plain(config)))
    copy.set_weights(model.get_weights())
    return copy
