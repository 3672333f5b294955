"""How much a gain depends on the split: each trained model against frozen features of the same
backbone and size, over runs that differ only in their seed (split and initialisation).

    for s in 1 2; do
      fashion-search run --params configs/fashion-products-dev.yaml --set seed=$s \\
          --set run=fashion-products-dev-seed$s --only 01,02,03,04
    done
    python benchmarks/repeated_splits.py outputs/fashion-products-dev outputs/fashion-products-dev-seed1 \\
        outputs/fashion-products-dev-seed2

Reads each run's parameters, model manifests and the per-query results 04 wrote (catalogue
protocol, first distance, largest k); writes benchmarks/results/repeated_splits.{json,md}: per
run and relevance, each gain with its 95% paired bootstrap interval, then the mean and the range
over the runs.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from fashion_search.io import write_results
from fashion_search.layout import RunLayout, variants
from fashion_search.models import saved
from fashion_search.params_file import load_params
from fashion_search.pipeline.report import GAIN_DEFINITIONS, paired_gains
from fashion_search.pipeline.tables import markdown_table

ROOT = Path(__file__).resolve().parent
PROTOCOL = "catalogue"


def run_gains(run_dir: Path) -> pd.DataFrame:
    """One run's paired gains per relevance definition, with the run's name and seed."""
    layout = RunLayout(run_dir)
    params = load_params(layout.params)
    distance, k = params.evaluate.distances[0], max(params.evaluate.ks)
    manifests = {v.name: saved.read_manifest(layout.model(v)) or {} for v in variants(params)}
    frames = []
    for relevance in params.evaluate.relevance:
        per_query = {name: pd.read_csv(path) for name in manifests
                     if (path := layout.per_query(name, relevance, distance, PROTOCOL)).is_file()}
        frames.append(paired_gains(per_query, manifests, k).assign(run=run_dir.name, seed=params.seed,
                                                                   relevance=relevance, k=k))
    return pd.concat(frames, ignore_index=True)


def per_run_markdown(table: pd.DataFrame) -> str:
    shown = table[["run", "seed", "relevance", "queries", "model"]].copy()
    for definition, label in GAIN_DEFINITIONS:
        shown[f"mAP@k{label} gain [95%]"] = [f"{g:+.4f} [{lo:+.4f}, {hi:+.4f}]" for g, lo, hi in zip(
            table[f"gain_{definition}"], table[f"gain_{definition}_low"], table[f"gain_{definition}_high"])]
    return markdown_table(shown)


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean, lowest and highest gain over the runs, per relevance and model."""
    columns = [f"gain_{definition}" for definition, _ in GAIN_DEFINITIONS]
    grouped = table.groupby(["relevance", "model"], sort=False)[columns]
    return pd.concat([grouped.mean().add_suffix("_mean"), grouped.min().add_suffix("_min"),
                      grouped.max().add_suffix("_max"), grouped.size().rename("runs")], axis=1).reset_index()


def summary_markdown(frame: pd.DataFrame) -> str:
    shown = frame[["relevance", "model", "runs"]].copy()
    for definition, label in GAIN_DEFINITIONS:
        shown[f"mAP@k{label} gain: mean (lowest, highest run)"] = [
            f"{m:+.4f} ({lo:+.4f}, {hi:+.4f})" for m, lo, hi in zip(
                frame[f"gain_{definition}_mean"], frame[f"gain_{definition}_min"], frame[f"gain_{definition}_max"])]
    return markdown_table(shown)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders (outputs/<run>) that differ only in their seed")
    parser.add_argument("--out", default=str(ROOT / "results" / "repeated_splits"))
    args = parser.parse_args()
    missing = [run for run in args.runs if not (Path(run) / "params.yaml").is_file()]
    if missing:
        print(f"error: not a run folder (no params.yaml): {', '.join(missing)}", file=sys.stderr)
        return 2
    table = pd.concat([run_gains(Path(run)) for run in args.runs], ignore_index=True)
    means = summary(table)
    lines = ["# Gains over frozen features across splits", "",
             f"`python benchmarks/repeated_splits.py {' '.join(args.runs)}`: {PROTOCOL} protocol (each test photo "
             "searches the whole catalogue), k = the run's largest; per run, the mean per-query difference of AP "
             "with its 95% paired bootstrap interval.", "", per_run_markdown(table), "",
             "Over the runs:", "", summary_markdown(means), ""]
    write_results(args.out, {"runs": table.to_dict(orient="records"), "summary": means.to_dict(orient="records")},
                  "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
