"""What the report's experiment (configs/paper.yaml) costs on this machine, extrapolated from
measured training and inference speeds.

    python benchmarks/paper_cost.py [--params configs/paper.yaml] [--photos 187620] [--steps 3]

For each backbone of the config at its input size: images/s of one softmax training step with
the backbone frozen (phase 1) and with its top layers unfrozen (phase 2), and of inference
(validation after each epoch, feature extraction). Weights do not change speed, so models are
built with random weights. The hours follow from the config's epochs and split shares over
``--photos`` items (the report's Farfetch photos by default); early stopping can only shorten
them. Writes benchmarks/results/paper_cost.json and .md.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from fashion_search.io import write_json, write_text_atomic  # first: quiets TensorFlow's start-up logs
import keras  # noqa: E402
from fashion_search.models.backbones import build_feature_extractor
from fashion_search.models.recipes import build_recipe
from fashion_search.params_file import parse_params, read_yaml
from fashion_search.pipeline.finetune import unfreeze_top

ROOT = Path(__file__).resolve().parent
REPORT_PHOTOS = 187_620
BATCH = 16


def rate(step, images: int, steps: int) -> float:
    """Median images/s of ``step`` over ``steps`` timed calls after one warm-up call."""
    step()
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return images / statistics.median(times)


def measure(name: str, size: int, params, steps: int) -> dict:
    extractor = build_feature_extractor(name, "none", size)[0]
    models = build_recipe("softmax", extractor, {"category": 10}, params.finetune, 0)
    images = np.random.default_rng(0).uniform(-1, 1, (BATCH, size, size, 3)).astype("float32")
    labels = {"category": np.zeros(BATCH, np.int64)}
    result = {"backbone": name, "size": size,
              "inference": rate(lambda: models.embedding.predict_on_batch(images), BATCH, steps)}
    rates = training_rates(extractor, models, images, labels, params.finetune.unfreeze_fraction, steps)
    return {**result, **{f"train_{phase}": value for phase, value in rates.items()}}


def training_rates(extractor, models, images, labels, unfreeze_fraction: float, steps: int) -> dict[str, float]:
    """Images/s of training steps with the backbone frozen, then with its top layers unfrozen."""
    rates = {}
    for phase in ("frozen", "unfrozen"):
        if phase == "frozen":
            extractor.trainable = False
        else:
            unfreeze_top(extractor, unfreeze_fraction)
        models.training.compile(optimizer=keras.optimizers.Adam(1e-4), loss=models.losses)
        rates[phase] = rate(lambda: models.training.train_on_batch(images, labels), len(images), steps)
    return rates


def hours(result: dict, params, photos: int) -> float:
    """Hours for one trained recipe of this backbone: every epoch of both phases over the train
    split, validation search after each epoch, then extracting the test split."""
    shares = params.data.split
    test, validation = photos * shares.test, photos * shares.validation
    train = photos - test - validation
    f = params.finetune
    seconds = (f.frozen_epochs * train / result["train_frozen"] + f.unfrozen_epochs * train / result["train_unfrozen"]
               + (f.frozen_epochs + f.unfrozen_epochs) * validation / result["inference"]
               + test / result["inference"])
    return seconds / 3600


def markdown(results: list[dict], machine: str, photos: int, params) -> str:
    f = params.finetune
    lines = ["# The report's experiment: what it costs", "",
             f"Machine: {machine}. Batch {BATCH}, random weights (speed does not depend on them), median of the "
             f"timed steps. Hours per trained recipe for {photos:,} photos split "
             f"{1 - params.data.split.validation - params.data.split.test:.0%} / {params.data.split.validation:.0%} / "
             f"{params.data.split.test:.0%}, {f.frozen_epochs} frozen + {f.unfrozen_epochs} unfrozen epochs "
             "(early stopping can only shorten it), validation after each epoch, then test extraction.", "",
             "| backbone | size | inference (img/s) | train, backbone frozen (img/s) | train, top unfrozen (img/s) "
             "| hours per recipe |", "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['backbone']} | {r['size']} | {r['inference']:.1f} | {r['train_frozen']:.1f} | "
                     f"{r['train_unfrozen']:.1f} | {r['hours_per_recipe']:.0f} |")
    total = sum(r["hours_per_recipe"] for r in results) * len(params.finetune.recipes)
    lines += ["", f"All {len(results)} backbones × {len(params.finetune.recipes)} recipes: about {total:,.0f} hours "
              "on this machine.", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=str(ROOT.parent / "configs" / "paper.yaml"))
    parser.add_argument("--photos", type=int, default=REPORT_PHOTOS)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "results"))
    args = parser.parse_args()
    raw = read_yaml(args.params)
    raw["data"]["path"] = None  # only the model and training settings matter here
    raw["data"]["source"] = "fashion_mnist"
    params = parse_params(raw)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    results = []
    for backbone in params.backbones:
        result = measure(backbone.name, backbone.input_size, params, args.steps)
        result["hours_per_recipe"] = hours(result, params, args.photos)
        results.append(result)
        print(result, flush=True)
    out = Path(args.out)
    write_json(out / "paper_cost.json", {"machine": machine, "photos": args.photos, "results": results})
    write_text_atomic(out / "paper_cost.md", markdown(results, machine, args.photos, params))
    print(markdown(results, machine, args.photos, params))
    return 0


if __name__ == "__main__":
    sys.exit(main())
