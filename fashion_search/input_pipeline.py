"""tf.data input pipelines: stored images in, backbone-ready batches out.

Images stay at their stored size (28×28 grayscale for Fashion-MNIST); conversion to three
channels, resizing to the backbone's input and its ``preprocess_input`` happen per batch
inside the pipeline, overlapped with the model by ``prefetch``.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import tensorflow as tf


def to_model_input(images: tf.Tensor, size: int, preprocess: Callable) -> tf.Tensor:
    """uint8 ``(B, H, W)`` or ``(B, H, W, C)`` → float32 ``(B, size, size, 3)``, preprocessed."""
    images = tf.convert_to_tensor(images)
    if images.shape.rank == 3:
        images = images[..., tf.newaxis]
    images = tf.cast(images, tf.float32)
    if images.shape[-1] == 1:
        images = tf.image.grayscale_to_rgb(images)
    images = tf.image.resize(images, (size, size), method="bilinear")
    return preprocess(images)


def make_dataset(
    images: np.ndarray,
    size: int,
    preprocess: Callable,
    batch_size: int,
    labels: np.ndarray | None = None,
    shuffle_seed: int | None = None,
) -> tf.data.Dataset:
    """Batches of model input (and labels, when given); shuffled when ``shuffle_seed`` is set."""
    tensors = images if labels is None else (images, labels)
    dataset = tf.data.Dataset.from_tensor_slices(tensors)
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(images), seed=shuffle_seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if labels is None:
        dataset = dataset.map(lambda x: to_model_input(x, size, preprocess), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        dataset = dataset.map(lambda x, y: (to_model_input(x, size, preprocess), y), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)
