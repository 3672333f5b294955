"""Photos in, embeddings and colour descriptors out, for the search engine.

The model is the one that ships with the package (:mod:`fashion_search.models.shipped`, the
default), a backbone used frozen (by name, ImageNet or random weights) or a model trained by
the notebooks (its folder under ``outputs/<run>/models/``). Its *identity* (what made it,
with a checksum of its weights) is written into every index, so an index is never queried
with vectors from another model. Catalogue embedding runs in chunks saved as they finish, so
an interrupted indexing job resumes where it stopped.
"""
from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from fashion_search.images import MAX_PIXELS, UnusableImageError, as_rgb, fit_to_square, read_photo
from fashion_search.io import file_sha256, resumable_chunks
from fashion_search.models import saved, shipped
from fashion_search.models.shipped import SHIPPED_NAME
from fashion_search.backbone_specs import BACKBONES, get_spec
from fashion_search.params import IndexParams
from fashion_search.progress import Counter, progress_bar
from fashion_search.search.embedding.batching import ModelBatcher, prefetched
from fashion_search.colour import DESCRIPTOR_DIM, colour_descriptors
from fashion_search.colour_grid import colour_grids
from fashion_search.search.embedding.runtime import identity_key, model_call, remembered_call

RANDOM_WEIGHTS_SEED = 0
PROBE_PHOTOS = 2  # random photos a model conversion is checked on
PREPARE_WORKERS = 2  # threads decoding and describing photos while the model embeds (numpy and PIL release the GIL)
# What must agree between an index and the model that queries it.
IDENTITY_KEYS = ("backbone", "recipe", "weights_sha256", "image_size", "preprocessing", "dim", "normalised")
# What a converted model is remembered under: the identity, and a fused model's colour input.
REMEMBERED_KEYS = (*IDENTITY_KEYS, "weights", "colour_dims", "colour_cells", "colour_weight")


class ModelError(ValueError):
    """The model cannot be loaded, or is not the one an index was built with."""


@dataclass
class Embedder:
    """A model mapping photos to (optionally L2-normalised) vectors, and what it is. With a
    ``batcher`` (a server's), :meth:`embed` shares model calls with concurrent requests.
    ``runtime`` says what runs the model (``index.runtime``)."""

    model: object
    image_size: int
    preprocess: Callable
    identity: dict
    batcher: ModelBatcher | None = None
    runtime: str = "auto"
    _call: Callable | None = field(default=None, init=False, repr=False)
    _runs_on: str = field(default="", init=False, repr=False)

    @property
    def colour_dims(self) -> int:
        """Trailing dimensions of each vector that describe colour (a fused model; else 0)."""
        return int(self.identity.get("colour_dims", 0))

    def model_inputs(self, squares: np.ndarray) -> list[np.ndarray]:
        """Square RGB uint8 photos ``(B, size, size, 3)`` → the model's inputs: the preprocessed
        photos and, for a fused model, each photo's colour grid."""
        inputs = [np.asarray(self.preprocess(squares.astype(np.float32)), np.float32)]
        if self.colour_dims:
            inputs.append(colour_grids(squares, int(self.identity.get("colour_cells", 1))))
        return inputs

    def ready(self) -> str:
        """Make the model ready to embed (converted for ONNX Runtime, or traced); what runs it."""
        if self._call is None:
            squares = np.random.default_rng(0).integers(0, 256, (PROBE_PHOTOS, self.image_size, self.image_size, 3),
                                                        dtype=np.uint8)
            self._call, self._runs_on = model_call(self.model, self.runtime, self.model_inputs(squares),
                                                   identity_key(self.identity, REMEMBERED_KEYS))
        return self._runs_on

    def predict(self, inputs: list[np.ndarray]) -> np.ndarray:
        """The model on prepared inputs → float32 vectors ``(B, dim)``, normalised if the identity says."""
        self.ready()
        vectors = np.asarray(self._call(inputs if len(inputs) > 1 else inputs[0]), np.float32)
        if self.identity["normalised"]:
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors

    def embed(self, squares: np.ndarray) -> np.ndarray:
        """Square RGB uint8 photos ``(B, size, size, 3)`` → float32 vectors ``(B, dim)``."""
        return self.embed_inputs(self.model_inputs(squares))

    def embed_inputs(self, inputs: list[np.ndarray]) -> np.ndarray:
        """Vectors of prepared inputs (:meth:`model_inputs`), through the batcher if there is one."""
        return self.batcher.run(inputs) if self.batcher is not None else self.predict(inputs)


def describe(identity: dict) -> str:
    """A model identity in one phrase, for messages: the name a user gives with ``--model`` (the
    shipped model's, a backbone's or a model folder's), then what it is."""
    name = identity.get("model") or identity.get("backbone")
    return (f"{name} ({identity.get('backbone')}, {identity.get('recipe')}, {identity.get('image_size')} px, "
            f"weights sha256 {str(identity.get('weights_sha256'))[:12]})")


def check_identity(index_identity: dict, model_identity: dict, where: str) -> None:
    """Refuse a model whose identity differs from the one the index at ``where`` was built with."""
    differ = [k for k in IDENTITY_KEYS if index_identity.get(k) != model_identity.get(k)]
    upgraded = index_identity.get("model") == model_identity.get("model") == SHIPPED_NAME   # another shipped model
    if differ:
        remedy = (f"{SHIPPED_NAME} changed with this fashion-search: index the photos again with --overwrite (--like "
                  "works meanwhile)" if upgraded else "query with the index's own model, or build a new index")
        raise ModelError(f"the index at {where} was built with {describe(index_identity)}, but the model given is "
                         f"{describe(model_identity)} ({', '.join(differ)} differ); {remedy}")


def _load_trained(folder: Path, normalise: bool) -> Embedder:
    manifest = saved.read_manifest(folder)
    if not saved.is_usable(folder):
        raise ModelError(f"{folder} holds no usable model ({manifest.get('reason', f'{saved.MODEL_FILE} missing')})")
    model = saved.load_model(folder)
    if manifest.get("colour_dims") and len(model.inputs[1].shape) != 4:
        raise ModelError(f"{folder} is a fused model from an earlier version (it takes a colour histogram, not a "
                         "colour grid); train it again with the fused recipe")
    identity = {"backbone": manifest["backbone"], "recipe": manifest["recipe"], "weights": manifest["weights"],
                "weights_sha256": file_sha256(folder / saved.MODEL_FILE), "image_size": manifest["image_size"],
                "preprocessing": manifest["preprocessing"], "dim": int(model.output_shape[-1]),
                "normalised": normalise, "model": str(folder.resolve())}
    if manifest.get("colour_dims"):
        identity.update(colour_dims=int(manifest["colour_dims"]), colour_weight=float(manifest["colour_weight"]),
                        colour_cells=int(model.inputs[1].shape[1]))
    return Embedder(model, manifest["image_size"], get_spec(manifest["backbone"]).preprocess, identity)


def _load_shipped(normalise: bool) -> Embedder:
    if not shipped.WEIGHTS_FILE.is_file():
        raise ModelError(f"the shipped model's weights are missing from {shipped.SHIPPED_DIR}; reinstall "
                         f"fashion-search, or rebuild them with `{shipped.COMMAND}`")
    record = shipped.provenance()
    identity = {"backbone": record["backbone"], "recipe": record["recipe"], "weights": "imagenet",
                "weights_sha256": record["weights_sha256"], "image_size": record["image_size"],
                "preprocessing": record["preprocessing"], "dim": record["dim"], "normalised": normalise,
                "model": SHIPPED_NAME, "description": shipped.description(record),
                "colour_dims": record["colour_dims"], "colour_weight": float(record["colour_weight"]),
                "colour_cells": int(record["heads"]["map_shape"][0])}
    return Embedder(shipped.build_shipped(record=record), record["image_size"],
                    get_spec(record["backbone"]).preprocess, identity)


def _load_backbone(name: str, weights: str, image_size: int | None, normalise: bool) -> Embedder:
    import keras

    from fashion_search.models.backbones import build_feature_extractor
    from fashion_search.models.weights import WeightsUnavailableError

    if name not in BACKBONES:
        raise ModelError(f"'{name}' is neither a model folder (with {saved.MANIFEST_FILE} and {saved.MODEL_FILE}) nor a "
                         f"backbone ({', '.join(BACKBONES)})")
    spec = get_spec(name)
    keras.utils.set_random_seed(RANDOM_WEIGHTS_SEED)  # weights: none gives the same model in every process
    try:
        model, source = build_feature_extractor(name, weights, image_size)
    except WeightsUnavailableError as err:
        raise ModelError(f"{err} ({err.remedy})") from None
    size = image_size or spec.default_size
    identity = {"backbone": name, "recipe": "frozen", "weights": weights,
                "weights_sha256": source.sha256 or f"random-seed-{RANDOM_WEIGHTS_SEED}", "image_size": size,
                "preprocessing": spec.preprocessing, "dim": int(model.output_shape[-1]), "normalised": normalise,
                "model": name}
    return Embedder(model, size, spec.preprocess, identity)


def remembered_embedder(identity: dict, runtime: str) -> Embedder | None:
    """The model of an index's ``identity`` on ONNX Runtime as an earlier process converted and
    checked it, without TensorFlow (None: none remembered, or ``runtime`` is tensorflow)."""
    call = remembered_call(identity_key(identity, REMEMBERED_KEYS)) if runtime != "tensorflow" else None
    return onnx_embedder(identity, call, runtime) if call is not None else None


def onnx_embedder(identity: dict, call: Callable, runtime: str = "onnx") -> Embedder:
    """The model of ``identity`` as an ONNX Runtime ``call`` (no TensorFlow or Keras)."""
    embedder = Embedder(None, int(identity["image_size"]), get_spec(identity["backbone"]).preprocess, dict(identity),
                        runtime=runtime)
    embedder._call, embedder._runs_on = call, "onnx"
    return embedder


def load_embedder(settings: IndexParams) -> Embedder:
    """The model ``settings.model`` names: the shipped model (:data:`SHIPPED_NAME`), a trained
    model folder, or a backbone used frozen."""
    folder = Path(settings.model).expanduser()
    if settings.model == SHIPPED_NAME:
        if settings.weights != "imagenet" or settings.image_size not in (None, shipped.provenance()["image_size"]):
            raise ModelError(f"{SHIPPED_NAME} is fixed (ImageNet weights, {shipped.provenance()['image_size']} px); "
                             "--weights and --image-size apply to a backbone named with --model")
        embedder = _load_shipped(settings.normalise)
    elif saved.is_model_folder(folder):
        embedder = _load_trained(folder, settings.normalise)
    else:
        embedder = _load_backbone(settings.model, settings.weights, settings.image_size, settings.normalise)
    embedder.runtime = settings.runtime
    return embedder


# ----------------------------------------------------------------------------- catalogues
@dataclass
class Embedded:
    """Vectors and colour descriptors of the items that could be read; the others' reasons."""

    vectors: np.ndarray       # (usable items, dim)
    colours: np.ndarray       # (usable items, DESCRIPTOR_DIM)
    usable: np.ndarray        # bool per input item
    reasons: list[str | None]  # per input item: why it was skipped, or None


def load_item(image: np.ndarray | str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """One catalogue image (pixels, or a photo path) as RGB uint8."""
    return as_rgb(image) if isinstance(image, np.ndarray) else read_photo(image, max_pixels)


@dataclass
class PreparedBatch:
    """A batch of photos made ready for the model: its inputs, colours, and every photo's reason."""

    inputs: list[np.ndarray] | None
    colours: list[np.ndarray]
    reasons: list[str | None]


def prepare_batch(embedder: Embedder, images: list, max_pixels: int) -> PreparedBatch:
    """Decode, frame and colour-describe a batch of photos and compute the model's inputs."""
    squares, colours, reasons = frame_photos(images, embedder.image_size, max_pixels)
    return PreparedBatch(embedder.model_inputs(squares) if len(squares) else None, list(colours), reasons)


def frame_photos(images: list, image_size: int, max_pixels: int) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    """Decode photos (paths or pixels) → the usable ones framed square ``(n, size, size, 3)`` and
    their colour descriptors ``(n, DESCRIPTOR_DIM)``, and every photo's reason to be skipped (or None)."""
    photos, reasons = [], []
    for image in images:
        try:
            photos.append(load_item(image, max_pixels))
            reasons.append(None)
        except UnusableImageError as err:
            reasons.append(str(err))
    squares = np.stack([fit_to_square(pixels, image_size) for pixels in photos]) if photos else \
        np.zeros((0, image_size, image_size, 3), np.uint8)
    return squares, colour_descriptors(photos), reasons


def embed_photos(embedder: Embedder, images: list, batch_size: int, progress: Counter | None = None,
                 max_pixels: int = MAX_PIXELS, workers: int = PREPARE_WORKERS) -> Embedded:
    """Embed photos (paths or pixel arrays); unusable ones are skipped with their reason. While
    the model embeds one batch, ``workers`` threads decode and describe the next ones (0: one
    after the other, in this thread)."""
    dim = embedder.identity["dim"]
    vectors, colours, reasons = [], [], []
    batches = [images[start:start + batch_size] for start in range(0, len(images), batch_size)]
    with ThreadPoolExecutor(max(workers, 1), thread_name_prefix="prepare") as pool:
        prepare = functools.partial(prepare_batch, embedder, max_pixels=max_pixels)
        ready = prefetched(pool, prepare, batches, ahead=workers + 1) if workers else map(prepare, batches)
        for prepared in ready:
            if prepared.inputs is not None:
                vectors.append(embedder.embed_inputs(prepared.inputs))
            colours += prepared.colours
            reasons += prepared.reasons
            if progress is not None:
                progress.update(len(prepared.reasons))
    return Embedded(np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32),
                    np.array(colours, np.float32).reshape(-1, DESCRIPTOR_DIM),
                    np.array([r is None for r in reasons], bool), reasons)


def embed_catalog(embedder: Embedder, ids: list[str], images: np.ndarray, work_dir: Path, chunk_size: int,
                  batch_size: int, description: str = "embedding", max_pixels: int = MAX_PIXELS) -> Embedded:
    """Embed a catalogue in chunks of ``chunk_size`` items, each saved to ``work_dir`` when done;
    chunks already there (from an interrupted run) are reused."""
    with progress_bar(len(ids), description, unit="photo") as bar:
        def compute(start: int, stop: int) -> dict[str, np.ndarray]:
            return chunk_arrays(embed_photos(embedder, list(images[start:stop]), batch_size, bar, max_pixels))

        chunks = resumable_chunks(work_dir, len(ids), chunk_size, compute)
        bar.update(len(ids) - bar.n)
    return joined(chunks, embedder.identity["dim"])


def chunk_arrays(done: Embedded) -> dict[str, np.ndarray]:
    """One embedded chunk as the arrays saved for it."""
    return {"vectors": done.vectors, "colours": done.colours, "usable": done.usable,
            "reasons": np.array([r or "" for r in done.reasons], dtype=str)}


def joined(chunks: list[dict[str, np.ndarray]], dim: int) -> Embedded:
    """Saved chunks (in catalogue order) as one :class:`Embedded`."""
    if not chunks:
        return Embedded(np.zeros((0, dim), np.float32), np.zeros((0, DESCRIPTOR_DIM), np.float32), np.zeros(0, bool), [])
    return Embedded(np.concatenate([c["vectors"] for c in chunks]), np.concatenate([c["colours"] for c in chunks]),
                    np.concatenate([c["usable"] for c in chunks]),
                    [r or None for c in chunks for r in c["reasons"].tolist()])
