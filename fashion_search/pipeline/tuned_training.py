"""Training the ``tuned`` recipe (:mod:`fashion_search.models.tuned`) on two CPU cores.

1. The frozen lower blocks run once over the training photos (:mod:`~fashion_search.models.tuned_photos`)
   and over ``copies - 1`` shopper-like views of each, and once over the dev validation half;
   their outputs are cached on disk as float16.
2. The heads train alone for ``head_epochs`` (the top frozen), then the top blocks from each
   candidate layer of ``--tops`` train with them for ``top_epochs`` (at a constant learning rate, or
   one falling along half a cosine), every photo seen as one of its cached views drawn at random each
   epoch; then, for ``paired_epochs``, with a loss that also pulls each photo's view to the photo
   itself (:class:`~fashion_search.models.tuned.PairedViewLoss`).
3. After every epoch each validation photo searches the dev validation half; the score is the
   best mean over colour weights of type and type+colour mAP@10 (both definitions). The best
   epoch of the best top (of the paired epochs, where there are any), and its colour weight, are kept.

    python -m fashion_search.pipeline.tuned_training --small ../shared/data/fashion-products-small \\
        --dev ../shared/data/fashion-products-dev --out outputs/tuned/model
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fashion_search.data.catalog import relevance_codes
from fashion_search.models.callbacks import gallery_map
from fashion_search.models.tuned_photos import COLOUR_COLUMN, LABEL_COLUMN, choosing_photos, training_photos

COLOUR_WEIGHTS = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0, 1.2)
BACKBONE = "efficientnet_lite0"   # the shipped model's; --backbone trains a larger Lite at its own size
MONITOR_K = 10


def codes_of(values: pd.Series, classes: list[str]) -> np.ndarray:
    """Each value's index in ``classes`` (a value not among them: -1)."""
    index = {name: i for i, name in enumerate(classes)}
    return np.array([index.get(str(v), -1) for v in values], np.int64)


class CachedBatches:
    """Batches of one view per training photo, drawn from its first ``copies`` cached copies, with both
    labels; ``paired``: half a batch of photos, each as its catalogue photo (copy 0) and then as one of
    its views, with the target of the ``pair`` output."""

    def __new__(cls, *args, **kwargs):
        import keras

        class _Batches(keras.utils.PyDataset):
            def __init__(self, cache, type_codes, colour_codes, batch_size, rng, copies, paired=False):
                super().__init__()
                self.cache, self.paired = cache, paired
                self.batch_size = batch_size // 2 if paired else batch_size
                self.type_codes, self.colour_codes = type_codes, colour_codes
                self.order = rng.permutation(len(cache))
                self.copy = rng.integers(1, copies, len(cache)) if paired else rng.integers(0, copies, len(cache))

            def __len__(self):
                return -(-len(self.order) // self.batch_size)

            def __getitem__(self, batch):
                rows = np.sort(self.order[batch * self.batch_size:(batch + 1) * self.batch_size])
                copies = self.copy[rows]
                if self.paired:
                    copies, rows = np.concatenate([np.zeros_like(copies), copies]), np.concatenate([rows, rows])
                maps = np.stack([self.cache.maps[c, r] for c, r in zip(copies, rows)]).astype(np.float32)
                grids = np.stack([self.cache.grids[c, r] for c, r in zip(copies, rows)]).astype(np.float32)
                targets = {"type": self.type_codes[rows], "colour": self.colour_codes[rows]}
                if self.paired:
                    targets["pair"] = np.zeros(len(rows), np.float32)
                return (maps, grids), targets

        return _Batches(*args, **kwargs)


def cosine_rate(rate: float, steps: int):
    """A learning rate falling from ``rate`` to zero over ``steps`` batches along half a cosine."""
    import keras

    return keras.optimizers.schedules.CosineDecay(rate, decay_steps=steps)


def weight_table(type_part: np.ndarray, colour_part: np.ndarray, type_codes: np.ndarray, both_codes: np.ndarray,
                 queries: np.ndarray, k: int = MONITOR_K) -> pd.DataFrame:
    """Validation mAP@k per colour weight: type and type+colour, the report's and min(k, R), and their mean."""
    rows = []
    for weight in COLOUR_WEIGHTS:
        fused = np.hstack([type_part, weight * colour_part])
        scores = {}
        for name, codes in (("type", type_codes), ("type+colour", both_codes)):
            scores[f"{name} report"], scores[f"{name} min(k,R)"] = gallery_map(fused, codes, queries, k)
        rows.append({"colour_weight": weight, **scores, "mean": float(np.mean(list(scores.values())))})
    return pd.DataFrame(rows)


def train(args: argparse.Namespace) -> dict:
    """Cache, train, choose; the record of the run (see the module)."""
    from fashion_search.backbone_specs import get_spec
    from fashion_search.data.backgrounds import load_backgrounds
    from fashion_search.models import tuned
    from fashion_search.models.backbones import build_feature_extractor
    from fashion_search.models import saved
    from fashion_search.models.fused import build_heads, fused_embedding_model, grid_cells
    from fashion_search.params import FinetuneParams
    from fashion_search.pipeline.lower_cache import build_lower_cache

    started = time.time()
    spec = get_spec(args.backbone)
    size = spec.default_size
    extractor, source = build_feature_extractor(args.backbone, "imagenet", size)
    cache_block = tuned.CACHE_BLOCK[args.backbone]
    lower, upper = tuned.lower_part(extractor, cache_block), tuned.upper_part(extractor, cache_block)
    cells = grid_cells(extractor)
    photos = training_photos(args.small, args.dev, args.seed)
    choose, queries = choosing_photos(args.dev, args.seed)
    model_key = f"{args.backbone} {source.sha256} {cache_block}"
    choose_cache = build_lower_cache(lower, model_key, choose.paths, args.cache / "choose", 1, size, cells,
                                     spec.preprocess, [], args.seed, "validation photos")
    train_cache = build_lower_cache(lower, model_key, photos.paths, args.cache / "train", args.copies, size, cells,
                                    spec.preprocess, load_backgrounds("train"), args.seed, "training views")
    type_classes = sorted(photos.items[LABEL_COLUMN].astype(str).unique())
    colour_classes = sorted(photos.items[COLOUR_COLUMN].astype(str).unique())
    type_codes = codes_of(photos.items[LABEL_COLUMN], type_classes)
    colour_codes = codes_of(photos.items[COLOUR_COLUMN], colour_classes)
    eval_type = relevance_codes(choose.items, LABEL_COLUMN)
    eval_both = relevance_codes(choose.items, f"{LABEL_COLUMN}+{COLOUR_COLUMN}")
    params = FinetuneParams(embedding_dim=256, dropout=0.2, type_hidden=1024, learning_rate=args.learning_rate)
    history: list[dict] = []
    best: dict = {"score": -1.0}
    initial = [w.copy() for w in upper.get_weights()]

    def evaluate(models: tuned.TunedModels, heads, top: str, epoch: int, loss: float, rate: float,
                 candidate: bool) -> None:
        type_part, colour_part = models.embedding.predict(
            [np.asarray(choose_cache.maps[0], np.float32), np.asarray(choose_cache.grids[0], np.float32)],
            batch_size=128, verbose=0)
        table = weight_table(type_part, colour_part, eval_type, eval_both, queries)
        row = table.loc[table["mean"].idxmax()]
        colour_off = float(table.loc[table["colour_weight"] == 0, "type report"].iloc[0])
        history.append({"top": top, "epoch": epoch, "loss": loss, "learning_rate_at_end": float(f"{rate:.3g}"),
                        "seconds": round(time.time() - started, 1),
                        **{key: round(float(value), 4) for key, value in row.items()},
                        "type report, colour off": round(colour_off, 4)})
        print(json.dumps(history[-1]), flush=True)
        if candidate and row["mean"] > best["score"]:
            best.update(score=float(row["mean"]), top=top, epoch=epoch, colour_weight=float(row["colour_weight"]),
                        table=table, models=models, heads=heads,
                        weights=[w.copy() for w in models.training.get_weights()])

    rng = np.random.default_rng(args.seed)
    for top in args.tops:
        upper.set_weights(initial)
        heads = build_heads(int(upper.outputs[0].shape[-1]), tuple(upper.outputs[1].shape[1:]), len(type_classes),
                            len(colour_classes), params, args.seed)
        models = tuned.build_tuned(upper, heads, len(type_classes), len(colour_classes),
                                   args.pair_temperature if args.paired_epochs else None)
        first_top = tuned.TOP_FROM[args.backbone][top]
        stages = [(None, args.head_epochs, args.learning_rate, False),
                  (first_top, args.top_epochs, args.top_learning_rate, False),
                  (first_top, args.paired_epochs, args.top_learning_rate, True)]
        epoch = 0
        for first, epochs, rate, paired in stages:
            if not epochs:
                continue
            tuned.set_trainable(upper, first)
            training = models.paired if paired else models.training
            photos_a_batch = args.batch_size // 2 if paired else args.batch_size
            if first is not None and args.top_schedule == "cosine":
                rate = cosine_rate(rate, epochs * -(-len(train_cache) // photos_a_batch))
            tuned.compile_tuned(training, rate, params.scale, params.margin, args.pair_weight if paired else 0.0)
            for _ in range(epochs):
                epoch += 1
                batches = CachedBatches(train_cache, type_codes, colour_codes, args.batch_size, rng,
                                        args.train_copies or args.copies, paired=paired)
                fit = training.fit(batches, epochs=1, verbose=0)
                evaluate(models, heads, top, epoch, float(fit.history["loss"][-1]),
                         float(training.optimizer.learning_rate), paired or not args.paired_epochs)
    best["models"].training.set_weights(best["weights"])
    model = fused_embedding_model(extractor, best["heads"], best["colour_weight"])
    top_layers = [layer.name for layer in tuned.trained_layers(upper, tuned.TOP_FROM[args.backbone][best["top"]])]
    manifest = {
        "backbone": args.backbone, "recipe": "tuned", "image_size": size, "preprocessing": spec.preprocessing,
        "weights": "imagenet", "weights_sha256": source.sha256, "colour_weight": best["colour_weight"],
        "colour_column": COLOUR_COLUMN, "label_column": LABEL_COLUMN, "colour_dims": int(model.output_shape[-1])
        - params.embedding_dim, "top": best["top"], "top_layers": top_layers, "cache_block": cache_block,
        "type_classes": type_classes, "colour_classes": colour_classes,
        "heads": {"feature_dim": int(upper.outputs[0].shape[-1]), "map_shape": list(upper.outputs[1].shape[1:]),
                  "embedding_dim": params.embedding_dim, "dropout": params.dropout, "type_hidden": params.type_hidden,
                  "type_classes": len(type_classes), "colour_classes": len(colour_classes)},
        "choices": {"top": best["top"], "epoch": best["epoch"], "colour_weight": best["colour_weight"],
                    "validation_mean": round(best["score"], 4)},
        "validation": {"k": MONITOR_K, **{key: round(float(value), 4) for key, value in
                                          best["table"].set_index("colour_weight").loc[best["colour_weight"]].items()}},
        "data": {"training": f"{args.small.name} + {args.dev.name} (train part)", "evaluation": args.dev.name,
                 "training_photos": len(photos.items), "validation_photos": len(queries),
                 "seed": args.seed, "copies": args.copies},
        "finetune": {key: value for key, value in vars(args).items() if key not in ("small", "dev", "out", "cache")},
        "train_seconds": round(time.time() - started, 1),
    }
    saved.save_model(model, manifest, args.out)
    best["table"].to_csv(args.out / "colour_weights.csv", index=False)
    return {"manifest": manifest, "history": pd.DataFrame(history)}


def main(argv: list[str] | None = None) -> int:
    from fashion_search.models.tuned import CACHE_BLOCK, TOP_FROM

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=Path, default=Path("../shared/data/fashion-products-small"))
    parser.add_argument("--dev", type=Path, default=Path("../shared/data/fashion-products-dev"))
    parser.add_argument("--out", type=Path, default=Path("outputs/tuned/model"), help="the model folder written")
    parser.add_argument("--cache", type=Path, default=Path("outputs/tuned/cache"),
                        help="where the lower blocks' outputs are kept (about 7 GB with 3 copies)")
    parser.add_argument("--copies", type=int, default=3)
    parser.add_argument("--train-copies", type=int, default=0,
                        help="draw views from the first N cached copies only (1: the photos alone; 0: all)")
    parser.add_argument("--backbone", choices=sorted(CACHE_BLOCK), default=BACKBONE,
                        help="the EfficientNet-Lite to train, at its own input size")
    parser.add_argument("--tops", nargs="+", help="where training starts, each tried (Lite0: last-block, "
                        "last-5-blocks; Lite1, Lite2: last-block, last-6-blocks, the same two stages); default: all")
    parser.add_argument("--head-epochs", type=int, default=2)
    parser.add_argument("--top-epochs", type=int, default=5)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--top-learning-rate", type=float, default=1e-4)
    parser.add_argument("--top-schedule", choices=["constant", "cosine"], default="constant",
                        help="the top stage's learning rate: constant, or falling to zero along half a cosine")
    parser.add_argument("--paired-epochs", type=int, default=0,
                        help="top epochs after --top-epochs that add a loss pulling each photo's view to the photo "
                        "itself; such an epoch sees every photo twice, as itself and as a view")
    parser.add_argument("--pair-weight", type=float, default=1.0, help="that loss's weight")
    parser.add_argument("--pair-temperature", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    args.tops = args.tops or list(TOP_FROM[args.backbone])
    if args.paired_epochs and (args.copies < 2 or args.train_copies == 1):
        parser.error("--paired-epochs needs views: --copies 2 or more, and --train-copies not 1")
    if min(args.head_epochs, args.top_epochs, args.paired_epochs) < 0 or args.pair_weight <= 0 \
            or args.pair_temperature <= 0:
        parser.error("epochs must be 0 or more, --pair-weight and --pair-temperature above 0")
    if not args.head_epochs + args.top_epochs + args.paired_epochs:
        parser.error("nothing to train: --head-epochs, --top-epochs and --paired-epochs are all 0")
    unknown = [top for top in args.tops if top not in TOP_FROM[args.backbone]]
    if unknown:   # said now, not after the cache and a first top's training
        parser.error(f"{args.backbone} has no top {', '.join(unknown)}; its tops: {', '.join(TOP_FROM[args.backbone])}")
    try:
        result = train(args)
    except FileExistsError as err:
        print(f"fashion-search: {err}", file=sys.stderr)
        return 2
    result["history"].to_csv(args.out / "history.csv", index=False)
    print(result["history"].to_string(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
