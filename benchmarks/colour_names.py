"""How often the colour read from a photo agrees with the catalogue's own colour label, and what
the size of the square the colours are analysed at costs and gains.

    python benchmarks/colour_names.py [--photos ../shared/data/fashion-products-dev] [--sides 96,80,64,48,40,32]

For every dev photo whose ``baseColour`` is one of the engine's colour names (Navy Blue counted
as navy), the colour descriptor is computed as at indexing time (batches of 32), once per
analysis size in ``--sides`` (the engine's is ``colour.ANALYSIS_SIZE``), and we count how often
the label is the first (largest) colour name, or any of the names a ``colour=`` filter matches,
with the CPU time of describing a photo (decoded beforehand). Writes
benchmarks/results/colour_names.{json,md}, with the most frequent confusions at the engine's size.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from fashion_search.images import read_photo
from fashion_search.io import write_results
from fashion_search import colour
from fashion_search.colour import PALETTE_HEX, colour_descriptors, colour_names

ROOT = Path(__file__).resolve().parent
DEFAULT_PHOTOS = ROOT.parent.parent / "shared" / "data" / "fashion-products-dev"
BATCH = 32


def described(photos: list[np.ndarray], side: int) -> tuple[np.ndarray, float]:
    """Every photo's descriptor analysed at ``side`` pixels, and the CPU milliseconds a photo took."""
    engine_side, colour.ANALYSIS_SIZE = colour.ANALYSIS_SIZE, side
    try:
        started = time.process_time()
        descriptors = np.concatenate([colour_descriptors(photos[start:start + BATCH])
                                      for start in range(0, len(photos), BATCH)])
        return descriptors, (time.process_time() - started) / len(photos) * 1e3
    finally:
        colour.ANALYSIS_SIZE = engine_side


def agreement(descriptors: np.ndarray, labels: list[str], side: int, cpu_ms: float) -> dict:
    """How often the labels are read from ``descriptors``, and the most frequent confusions."""
    found = [colour_names(descriptor) for descriptor in descriptors]
    confusions = Counter((label, names[0] if names else "-") for label, names in zip(labels, found)
                         if names[:1] != [label])
    return {"side": side, "engine": side == colour.ANALYSIS_SIZE, "cpu_ms_per_photo": round(cpu_ms, 2),
            "first_name_agrees": round(float(np.mean([names[:1] == [label] for label, names in zip(labels, found)])), 4),
            "filter_matches": round(float(np.mean([label in names for label, names in zip(labels, found)])), 4),
            "top_confusions": [{"label": a, "read": b, "photos": n} for (a, b), n in confusions.most_common(10)]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default=str(DEFAULT_PHOTOS))
    parser.add_argument("--sides", default="96,80,64,48,40,32")
    parser.add_argument("--out", default=str(ROOT / "results" / "colour_names"))
    args = parser.parse_args()
    labels = pd.read_csv(Path(args.photos) / "labels.csv", dtype={"id": str})
    names = labels["baseColour"].str.lower().replace({"navy blue": "navy"})
    usable = labels[names.isin(PALETTE_HEX)].assign(name=names[names.isin(PALETTE_HEX)])
    photos = [read_photo(Path(args.photos) / "images" / f"{photo}.jpg") for photo in usable["id"]]
    sides = [int(side) for side in args.sides.split(",")]
    rows = []
    for side in sides:
        descriptors, cpu_ms = described(photos, side)
        rows.append(agreement(descriptors, list(usable["name"]), side, cpu_ms))
    report = {"photos": len(usable), "of_catalogue": len(labels), "sides": rows}
    engine = next((row for row in rows if row["engine"]), rows[0])
    md = "\n".join([
        "# Colour names read from photos against the catalogue's baseColour", "",
        f"`python benchmarks/colour_names.py --sides {args.sides}`: {report['photos']:,} of the "
        f"{report['of_catalogue']:,} dev photos have a baseColour among the engine's colour names. Each is "
        "described as at indexing time, its colours analysed on a square of the size given (the engine's is "
        f"{colour.ANALYSIS_SIZE} px).", "",
        "| analysis size | label = the first colour name read | label among the names a `colour=` filter matches "
        "| CPU ms per photo (descriptor) |", "|---|---|---|---|",
        *[f"| {row['side']} px{' (engine)' if row['engine'] else ''} | {row['first_name_agrees']:.1%} | "
          f"{row['filter_matches']:.1%} | {row['cpu_ms_per_photo']} |" for row in rows], "",
        f"Most frequent disagreements at {engine['side']} px (label → first name read):", "",
        *[f"- {c['label']} → {c['read']}: {c['photos']}" for c in engine["top_confusions"]], ""])
    write_results(args.out, report, md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
