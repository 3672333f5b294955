"""Which labelled photos train, choose and test the tuned model (:mod:`fashion_search.models.tuned`).

- **train**: every photo of ``fashion-products-small`` (60×80) and two thirds of the dev photos'
  validation half (225×300), the same two thirds the garment localiser trains on;
- **validation**: the last third of that half: it chooses the cut, the epochs and the colour
  weight, each of its photos searching the whole validation half;
- **test**: the dev photos' test half (1,466 photos), which nothing here reads.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fashion_search.data import evaluation_split
from fashion_search.data.catalog import photo_problem

LABEL_COLUMN = "articleType"
COLOUR_COLUMN = "baseColour"


@dataclass
class LabelledPhotos:
    """Photos with their labels: ``items`` holds id, path, articleType, baseColour and source."""

    items: pd.DataFrame

    @property
    def paths(self) -> list[Path]:
        return [Path(p) for p in self.items["path"]]


def _labelled(root: Path, labels: pd.DataFrame, source: str) -> pd.DataFrame:
    frame = labels[["id", LABEL_COLUMN, COLOUR_COLUMN]].copy()
    frame["path"] = [str(root / "images" / f"{item_id}.jpg") for item_id in frame["id"]]
    frame["source"] = source
    return frame


def _readable(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows whose photo can be read (the others are named on stderr and left out)."""
    problems = [photo_problem(path) for path in frame["path"]]
    unreadable = [f"{path} ({problem})" for path, problem in zip(frame["path"], problems) if problem]
    if unreadable:
        import sys

        print(f"left out {len(unreadable)} unreadable photos: " + "; ".join(unreadable[:5])
              + (" ..." if len(unreadable) > 5 else ""), file=sys.stderr)
    return frame[[problem is None for problem in problems]].reset_index(drop=True)


def dev_parts(dev: Path, seed: int) -> dict[str, pd.DataFrame]:
    """The dev photos in three parts, ``train``, ``validation`` and ``test`` (see the module)."""
    labels = pd.read_csv(dev / "labels.csv", dtype={"id": str})
    halves = evaluation_split(labels[LABEL_COLUMN].to_numpy(), 0.5, seed)
    validation_half = labels[halves == "validation"].sample(frac=1.0, random_state=seed)
    cut = len(validation_half) * 2 // 3
    return {"train": validation_half.iloc[:cut], "validation": validation_half.iloc[cut:],
            "test": labels[halves == "test"]}


def training_photos(small: Path, dev: Path, seed: int) -> LabelledPhotos:
    """Every small photo and the dev train part, readable ones only."""
    parts = dev_parts(dev, seed)
    small_labels = pd.read_csv(small / "labels.csv", dtype={"id": str})
    frame = pd.concat([_labelled(small, small_labels, "small"), _labelled(dev, parts["train"], "dev train")],
                      ignore_index=True)
    return LabelledPhotos(_readable(frame))


def choosing_photos(dev: Path, seed: int) -> tuple[LabelledPhotos, np.ndarray]:
    """The dev validation half (train part first, then the validation part) and which rows are the
    validation part's: the queries that choose."""
    parts = dev_parts(dev, seed)
    frame = pd.concat([_labelled(dev, parts["train"], "dev train"), _labelled(dev, parts["validation"], "validation")],
                      ignore_index=True)
    frame = _readable(frame)
    return LabelledPhotos(frame), np.flatnonzero(frame["source"].to_numpy() == "validation")
