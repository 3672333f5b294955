"""Training the ``fused`` recipe (:mod:`fashion_search.models.fused`): heads on frozen features.

1. The backbone's pooled features and feature map of the train and validation photos are
   computed once, in one pass (maps kept as float16), and the pooled features of the photos
   mirrored (the type head's augmentation, with ``augment``: a flip changes no colour), and
   the colour grid of each photo as it is (the colour head's inputs; mirroring them did not
   help on validation).
2. The type head and the colour head train for ``head_epochs`` epochs each. After every epoch,
   each validation photo searches the train + validation catalogue (itself excluded; with
   ``data.evaluation_path``, the validation photos only, the catalogue the model is judged on): the epoch
   with the best validation mAP@k is kept (type head: by the label column; colour head: by
   the colour column).
3. The colour weight is the one of :data:`COLOUR_WEIGHTS` whose fused vectors score best on
   validation, averaged over both relevance definitions (label, label+colour) and both mAP
   definitions (the report's and min(k, R)).
4. Both heads are trained again on train + validation for their chosen epochs: the model that
   goes into an index has seen every labelled photo but the test split. With
   ``data.evaluation_path`` the selected heads are kept: evaluation photos are never trained on.

Nothing here looks at the test split.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import pandas as pd

from fashion_search.data.catalog import Catalog, relevance_codes
from fashion_search.io import work_key
from fashion_search.models.callbacks import gallery_map
from fashion_search.models.fused import Heads, build_heads, feature_map_of, fused_embedding_model, grid_cells
from fashion_search.params import FinetuneParams
from fashion_search.pipeline.extraction import catalogue_colour_grids, extract_features, extract_outputs

COLOUR_WEIGHTS = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0, 1.2)
FEATURES_DIR = "features"


@dataclass
class FusedTraining:
    """What the fused recipe made: the embedding model, the per-epoch history, the weight table
    (validation scores per colour weight) and the choices taken."""

    model: keras.Model
    history: pd.DataFrame
    weights: pd.DataFrame
    choices: dict


def colour_column_of(label_column: str, task_columns: tuple[str, ...]) -> str | None:
    """The column the colour head learns: the first task column that is not the label column."""
    return next((column for column in task_columns if column != label_column), None)


@dataclass
class RowsOf:
    """Rows ``rows`` of ``array``, read a batch at a time (a feature map is never copied whole)."""

    array: np.ndarray
    rows: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: np.ndarray) -> np.ndarray:
        return self.array[self.rows[index]]


class ShuffledBatches(keras.utils.PyDataset):
    """Batches of ``inputs`` (arrays or :class:`RowsOf`, cast to float32 a batch at a time) and
    their ``targets``, in an order drawn from ``rng``: memory holds one batch, not a float32 copy."""

    def __init__(self, inputs: list, targets: np.ndarray, batch_size: int, rng: np.random.Generator) -> None:
        super().__init__()
        self.inputs, self.targets, self.batch_size = inputs, targets, batch_size
        self.order = rng.permutation(len(targets))

    def __len__(self) -> int:
        return -(-len(self.order) // self.batch_size)

    def __getitem__(self, batch: int) -> tuple:
        index = np.sort(self.order[batch * self.batch_size:(batch + 1) * self.batch_size])
        arrays = tuple(np.asarray(part[index], np.float32) for part in self.inputs)
        return (arrays[0] if len(arrays) == 1 else arrays), self.targets[index]


def _fit_epochs(model: keras.Model, inputs: Callable[[np.random.Generator], list], targets: np.ndarray, epochs: int,
                batch_size: int, seed: int, after_epoch: Callable[[int, float], None] | None = None) -> None:
    """Train ``model`` one epoch at a time on freshly drawn inputs (each photo plain or mirrored)."""
    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        drawn = inputs(rng)
        fit = model.fit(ShuffledBatches(drawn if isinstance(drawn, list) else [drawn], targets, batch_size, rng),
                        epochs=1, verbose=0)
        if after_epoch is not None:
            after_epoch(epoch, float(fit.history["loss"][-1]))


def _embed(head: keras.Model, inputs: list) -> np.ndarray:
    return np.asarray(head.predict(inputs[0] if len(inputs) == 1 else inputs, verbose=0, batch_size=256))


def train_fused(extractor: keras.Model, catalog: Catalog, size: int, preprocess: Callable, params: FinetuneParams,
                folder: Path, seed: int, fingerprint: str = "", title: str = "fused") -> FusedTraining:
    """Train and select the fused recipe's heads on ``extractor``'s frozen features (see the module)."""
    started = time.perf_counter()
    labelled = catalog.items["split"].isin(["train", "validation"]).to_numpy()
    items = catalog.items[labelled].reset_index(drop=True)
    images = catalog.images[labelled]
    train = (items["split"] == "train").to_numpy()
    validation = np.flatnonzero(~train)
    colour_column = colour_column_of(catalog.label_column, params.task_columns)
    searched = (items["in_catalogue"].to_numpy(bool) if "in_catalogue" in items.columns
                else np.ones(len(items), bool))
    held_out = not searched.all()   # evaluation photos apart: validated on, never trained on
    gallery = np.flatnonzero(searched)                       # what a validation photo searches
    queries = np.flatnonzero(~train[gallery])                # the validation photos' places in it
    key = work_key(fingerprint, items["id"].tolist(), images=images)
    print(f"{title}: features of {len(items)} train and validation photos"
          + (", plain and mirrored" if params.augment else ""), flush=True)
    if colour_column:   # one pass gives the pooled features and the feature map the colour head reads
        plain, maps = extract_outputs(keras.Model(extractor.inputs, [extractor.output, feature_map_of(extractor)]),
                                      images, size, preprocess, params.batch_size,
                                      folder / FEATURES_DIR / key / "plain_and_maps",
                                      description=f"{title}: features and feature maps", dtypes=("float32", "float16"))
    else:
        plain, maps = extract_features(extractor, images, size, preprocess, params.batch_size,
                                       folder / FEATURES_DIR / key / "plain", description=f"{title}: features"), None
    mirrored = (extract_features(extractor, images, size, preprocess, params.batch_size,
                                 folder / FEATURES_DIR / key / "mirrored", description=f"{title}: mirrored features",
                                 flip=True) if params.augment else plain)
    grids = catalogue_colour_grids(images, size, grid_cells(extractor), f"{title}: colour grids")
    type_codes = relevance_codes(items, catalog.label_column)
    colour_codes = relevance_codes(items, colour_column) if colour_column else None
    both_codes = relevance_codes(items, f"{catalog.label_column}+{colour_column}") if colour_column else None

    def features_of(rows: np.ndarray) -> Callable[[np.random.Generator], np.ndarray]:
        def inputs(rng: np.random.Generator) -> np.ndarray:
            flipped = rng.random(len(rows)) < 0.5 if params.augment else np.zeros(len(rows), bool)
            return np.where(flipped[:, None], mirrored[rows], plain[rows])
        return inputs

    def colours_of(rows: np.ndarray) -> Callable[[np.random.Generator], list]:
        return lambda rng: [RowsOf(maps, rows), RowsOf(grids, rows)]

    def new_heads() -> Heads:
        return build_heads(plain.shape[1], maps.shape[1:] if colour_column else (), int(type_codes.max()) + 1,
                           int(colour_codes.max()) + 1 if colour_column else None, params, seed)

    # 2. select epochs on validation
    history: list[dict] = []
    selecting = new_heads()
    train_rows = np.flatnonzero(train)
    best = {"type": (-1.0, 0), "colour": (-1.0, 0)}
    snapshots: dict[str, list] = {}

    def watch(part: str, model_head: keras.Model, inputs: list, codes: np.ndarray) -> Callable[[int, float], None]:
        def after_epoch(epoch: int, loss: float) -> None:
            score = gallery_map(_embed(model_head, [x[gallery] for x in inputs]), codes[gallery], queries,
                                params.monitor_k)[0]
            history.append({"head": part, "epoch": epoch, "loss": loss, f"val_map_at_{params.monitor_k}": score})
            if score > best[part][0]:
                best[part] = (score, epoch + 1)
                snapshots[part] = [w.copy() for w in model_head.get_weights()]
            print(f"{title} ({part} head): epoch {epoch + 1}/{params.head_epochs}, loss {loss:.4f}, validation "
                  f"mAP@{params.monitor_k} {score:.4f} (best {best[part][0]:.4f})", flush=True)
        return after_epoch

    _fit_epochs(selecting.type_training, features_of(train_rows), type_codes[train_rows], params.head_epochs,
                params.batch_size, seed, watch("type", selecting.type_embedding, [plain], type_codes))
    selecting.type_embedding.set_weights(snapshots["type"])
    if colour_column:
        _fit_epochs(selecting.colour_training, colours_of(train_rows), colour_codes[train_rows], params.head_epochs,
                    params.batch_size, seed, watch("colour", selecting.colour_embedding, [maps, grids], colour_codes))
        selecting.colour_embedding.set_weights(snapshots["colour"])

    # 3. the colour weight
    type_part = _embed(selecting.type_embedding, [plain[gallery]])
    colour_part = (_embed(selecting.colour_embedding, [maps[gallery], grids[gallery]]) if colour_column
                   else np.sqrt(grids[gallery].sum(axis=(1, 2))))
    rows = []
    for weight in COLOUR_WEIGHTS:
        fused = np.hstack([type_part, weight * colour_part])
        scores = {}
        for name, codes in (("type", type_codes), ("type+colour", both_codes)):
            if codes is not None:
                scores[f"{name} report"], scores[f"{name} min(k,R)"] = gallery_map(fused, codes[gallery], queries,
                                                                                   params.monitor_k)
        rows.append({"colour_weight": weight, **scores, "mean": float(np.mean(list(scores.values())))})
    weights = pd.DataFrame(rows)
    chosen = float(weights.loc[weights["mean"].idxmax(), "colour_weight"])
    print(f"{title}: colour weight {chosen} (validation mAP@{params.monitor_k} averaged over the relevance "
          "definitions, from " + ", ".join(f"{w:g}" for w in COLOUR_WEIGHTS) + ")", flush=True)

    # 4. refit on train + validation (not where the validation photos are held out)
    if held_out:
        final = selecting
        print(f"{title}: heads kept as selected; the {len(validation)} validation photos are never trained on",
              flush=True)
    else:
        every = np.arange(len(items))
        final = new_heads()
        _fit_epochs(final.type_training, features_of(every), type_codes, best["type"][1], params.batch_size, seed)
        if colour_column:
            _fit_epochs(final.colour_training, colours_of(every), colour_codes, best["colour"][1], params.batch_size,
                        seed)
        print(f"{title}: heads trained again on all {len(items)} train and validation photos "
              f"({best['type'][1]} and {best['colour'][1] if colour_column else 0} epochs)", flush=True)
    choices = {"colour_weight": chosen, "colour_column": colour_column, "type_epochs": best["type"][1],
               "colour_epochs": best["colour"][1] if colour_column else 0,
               "best_val_map": round(best["type"][0], 4), "train_seconds": round(time.perf_counter() - started, 1),
               "refit_on": "train" if held_out else "train+validation"}
    return FusedTraining(fused_embedding_model(extractor, final, chosen), pd.DataFrame(history), weights, choices)
