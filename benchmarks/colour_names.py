"""How often the colour read from a photo agrees with the catalogue's own colour label.

    python benchmarks/colour_names.py [--photos ../shared/data/fashion-products-dev]

For every dev photo whose ``baseColour`` is one of the engine's colour names (Navy Blue counted
as navy), the colour descriptor is computed as at indexing time, and we count how often the
label is the first (largest) colour name, or any of the names a ``colour=`` filter matches.
Writes benchmarks/results/colour_names.{json,md}, with the most frequent confusions.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd

from fashion_search.search.colour import PALETTE_HEX, colour_descriptor, colour_names
from fashion_search.images import read_photo
from fashion_search.io import write_results

ROOT = Path(__file__).resolve().parent
DEFAULT_PHOTOS = ROOT.parent.parent / "shared" / "data" / "fashion-products-dev"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default=str(DEFAULT_PHOTOS))
    parser.add_argument("--out", default=str(ROOT / "results" / "colour_names"))
    args = parser.parse_args()
    labels = pd.read_csv(Path(args.photos) / "labels.csv", dtype={"id": str})
    names = labels["baseColour"].str.lower().replace({"navy blue": "navy"})
    usable = labels[names.isin(PALETTE_HEX)].assign(name=names[names.isin(PALETTE_HEX)])
    first = anywhere = 0
    confusions: Counter = Counter()
    started = time.perf_counter()
    for row in usable.itertuples():
        found = colour_names(colour_descriptor(read_photo(Path(args.photos) / "images" / f"{row.id}.jpg")))
        first += found[:1] == [row.name]
        anywhere += row.name in found
        if found[:1] != [row.name]:
            confusions[(row.name, found[0] if found else "-")] += 1
    seconds = time.perf_counter() - started
    report = {"photos": len(usable), "of_catalogue": len(labels), "first_name_agrees": round(first / len(usable), 4),
              "filter_matches": round(anywhere / len(usable), 4), "ms_per_photo": round(seconds / len(usable) * 1e3, 2),
              "top_confusions": [{"label": a, "read": b, "photos": n} for (a, b), n in confusions.most_common(10)]}
    md = "\n".join([
        "# Colour names read from photos against the catalogue's baseColour", "",
        f"`python benchmarks/colour_names.py`: {report['photos']:,} of the {report['of_catalogue']:,} dev photos have a "
        "baseColour among the engine's colour names.", "",
        "| measure | value |", "|---|---|",
        f"| label = the first colour name read | {report['first_name_agrees']:.1%} |",
        f"| label among the names a `colour=` filter matches | {report['filter_matches']:.1%} |",
        f"| time per photo (read + descriptor) | {report['ms_per_photo']} ms |", "",
        "Most frequent disagreements (label → first name read):", "",
        *[f"- {c['label']} → {c['read']}: {c['photos']}" for c in report["top_confusions"]], ""])
    write_results(args.out, report, md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
