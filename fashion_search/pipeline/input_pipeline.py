"""tf.data input pipelines: stored images or photo files in, backbone-ready batches out.

Images stay at their stored size (28×28 grayscale for Fashion-MNIST); conversion to three
channels, resizing to the backbone's input and its ``preprocess_input`` happen per batch
inside the pipeline, overlapped with the model by ``prefetch``. Photo files take the search
engine's own path, :func:`fashion_search.images.read_photo` then
:func:`~fashion_search.images.fit_to_square` (padded to a white square: product photos have
white backgrounds, so the garment keeps its proportions), so a vector computed here equals the
one the engine computes for the same photo.
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np
import tensorflow as tf

from fashion_search.images import fit_to_square, read_photo

# On a small machine the model keeps every core busy, and input threads running beside it
# only preempt it: on 2 cores, AUTOTUNE made extraction from JPEG files reach 59% of the bare
# model's speed, and even one background thread sometimes halved ResNet50's. There, batches
# are prepared in turn with the model (preparing costs ~1.4 ms a photo, a few % of the model's
# time); machines with 8 or more cores prepare them in parallel, ahead of the model.
_CORES = os.cpu_count() or 1
PARALLEL_CALLS = _CORES // 4 if _CORES >= 8 else None
PREFETCH_BATCHES = 2 if _CORES >= 8 else 0


def _fixed_options() -> tf.data.Options:
    """Options with tf.data's autotuner off: the sizes above are fixed, and the autotuner's
    background thread, alive as long as an iterator is, slowed InceptionV3 on 2 cores to 63% of
    its speed on ready tensors (benchmarks/throughput.py)."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


def to_model_input(images: tf.Tensor, size: int, preprocess: Callable) -> tf.Tensor:
    """A batch ``(B, H, W)`` or ``(B, H, W, C)`` → float32 ``(B, size, size, 3)``, preprocessed."""
    images = tf.convert_to_tensor(images)
    if images.shape.rank == 3:
        images = images[..., tf.newaxis]
    images = tf.cast(images, tf.float32)
    if images.shape[-1] == 1:
        images = tf.image.grayscale_to_rgb(images)
    if tuple(images.shape[1:3]) != (size, size):
        images = tf.image.resize(images, (size, size), method="bilinear")
    return preprocess(images)


def load_photo(path: tf.Tensor, size: int) -> tf.Tensor:
    """A photo file → uint8 ``(size, size, 3)``: read and framed by the search engine's functions."""
    def frame(encoded_path) -> np.ndarray:
        return fit_to_square(read_photo(os.fsdecode(np.asarray(encoded_path).item())), size)

    return tf.ensure_shape(tf.numpy_function(frame, [path], tf.uint8, stateful=False), (size, size, 3))


def make_dataset(
    images: np.ndarray,
    size: int,
    preprocess: Callable,
    batch_size: int,
    labels: np.ndarray | None = None,
    shuffle_seed: int | None = None,
    accelerated: bool = False,
) -> tf.data.Dataset:
    """Batches of model input (and labels, when given); shuffled when ``shuffle_seed`` is set.

    ``images`` is a pixel array or a 1-D array of photo paths. ``accelerated``: the batches feed
    a GPU, so the CPU's cores decode in parallel and tf.data's autotuner keeps batches ready ahead.
    """
    calls, ahead = (tf.data.AUTOTUNE, tf.data.AUTOTUNE) if accelerated else (PARALLEL_CALLS, PREFETCH_BATCHES)
    tensors = images if labels is None else (images, labels)
    dataset = tf.data.Dataset.from_tensor_slices(tensors)
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(images), seed=shuffle_seed, reshuffle_each_iteration=True)
    if images.ndim == 1:  # file paths: decode each photo in parallel
        decode = (lambda p: load_photo(p, size)) if labels is None else (lambda p, y: (load_photo(p, size), y))
        dataset = dataset.map(decode, num_parallel_calls=calls)
    dataset = dataset.batch(batch_size)
    if labels is None:
        dataset = dataset.map(lambda x: to_model_input(x, size, preprocess), num_parallel_calls=calls)
    else:
        dataset = dataset.map(lambda x, y: (to_model_input(x, size, preprocess), y), num_parallel_calls=calls)
    if ahead:
        dataset = dataset.prefetch(ahead)
    return dataset if accelerated else dataset.with_options(_fixed_options())
