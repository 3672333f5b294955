"""Training speed of the report's experiment on whatever device is here: images/s of training
steps for each backbone and recipe of configs/paper.yaml at its native size.

    python benchmarks/train_speed.py [--params configs/paper.yaml] [--precisions auto] [--steps 3]

Each model is built with random weights (speed does not depend on them) the way stage 02 builds
it: on the devices ``finetune.devices`` chooses (every GPU TensorFlow sees, else the CPU), under
each precision asked for (``auto``: mixed_float16 on GPUs, float32 on a CPU; list several to
compare, e.g. ``float32,mixed_float16``), with ``finetune.batch_size`` photos per device a step.
Both phases are timed: the backbone frozen, then its top ``unfreeze_fraction`` unfrozen. Median
images/s of ``--steps`` timed steps after one warm-up step (which traces and compiles).
Writes benchmarks/results/train_speed.{json,md} (``--out`` names another stem).
"""
from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import numpy as np

from fashion_search.io import write_results  # first: quiets TensorFlow's start-up logs
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from fashion_search.models.backbones import build_feature_extractor  # noqa: E402
from fashion_search.models.recipes import build_recipe  # noqa: E402
from fashion_search.models.shipped import cpu_name  # noqa: E402
from fashion_search.params_file import parse_params, read_yaml  # noqa: E402
from fashion_search.pipeline.devices import choose_devices, training_on  # noqa: E402
from paper_cost import training_rates  # noqa: E402 - the same timed steps (benchmarks/ is on the path)

ROOT = Path(__file__).resolve().parent
CLASSES = 10


def measure(name: str, size: int, recipe: str, precision: str, params, steps: int) -> dict:
    """Training images/s of one backbone and recipe, both phases, on the chosen devices."""
    chosen = choose_devices(params.finetune.devices, precision)
    batch = chosen.global_batch(params.finetune.batch_size)
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (batch, size, size, 3)).astype("float32")
    labels = {"category": rng.integers(0, CLASSES, batch)}
    row = {"backbone": name, "size": size, "recipe": recipe, "devices": chosen.describe(), "batch": batch}
    with training_on(chosen):
        keras.utils.set_random_seed(0)
        extractor = build_feature_extractor(name, "none", size)[0]
        models = build_recipe(recipe, extractor, {"category": CLASSES}, params.finetune, 0)
        rates = training_rates(extractor, models, images, labels, params.finetune.unfreeze_fraction, steps)
        row.update({f"{phase}_images_per_s": round(value, 1) for phase, value in rates.items()},
                   xla=bool(models.training.jit_compile))
    keras.backend.clear_session()
    return row


def markdown(report: dict) -> str:
    lines = ["# Training speed of the report's experiment", "",
             f"`python benchmarks/train_speed.py --precisions {report['precisions']}` on {report['machine']} "
             f"(TensorFlow {report['tensorflow']}). Random weights, native sizes, "
             f"{report['batch_per_device']} photos per device a step, median of {report['steps']} timed steps "
             "after a warm-up step.", "",
             "| backbone | size | recipe | devices, precision | XLA | train, backbone frozen (img/s) | "
             "train, top unfrozen (img/s) |", "|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        lines.append(f"| {r['backbone']} | {r['size']} | {r['recipe']} | {r['devices']} | {'on' if r['xla'] else 'off'} | "
                     f"{r['frozen_images_per_s']} | {r['unfrozen_images_per_s']} |")
    return "\n".join(lines + [""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=str(ROOT.parent / "configs" / "paper.yaml"))
    parser.add_argument("--precisions", default="auto", help="comma-separated: auto, float32, mixed_float16")
    parser.add_argument("--backbones", help="comma-separated subset of the config's backbones")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "results" / "train_speed"), help="results stem (.json, .md)")
    args = parser.parse_args()
    raw = read_yaml(args.params)
    raw["data"] = {"source": "fashion_mnist", "path": None}  # only the models and training settings matter here
    params = parse_params(raw)
    wanted = set(args.backbones.split(",")) if args.backbones else None
    results = []
    for backbone in params.backbones:
        if wanted and backbone.name not in wanted:
            continue
        for recipe in [r for r in params.finetune.recipes if r in ("softmax", "cosface")]:  # multitask: more labels
            for precision in args.precisions.split(","):
                results.append(measure(backbone.name, backbone.input_size, recipe, precision, params, args.steps))
                print(results[-1], flush=True)
    gpus = tf.config.list_logical_devices("GPU")
    report = {"machine": f"{cpu_name()}, {os.cpu_count()} cores, {len(gpus)} GPU(s), Python "
                         f"{platform.python_version()}", "tensorflow": tf.__version__, "precisions": args.precisions,
              "steps": args.steps, "batch_per_device": params.finetune.batch_size, "results": results}
    write_results(args.out, report, markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
