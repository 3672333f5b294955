"""The retrieval protocol and the report's mAP table.

Protocol: every test item is a query against the gallery of all other test items (the
query itself is excluded from its results); relevance is "same category". Queries whose
category has no other test item cannot be scored and are counted, not averaged.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fashion_search import metrics
from fashion_search.catalog import Catalog
from fashion_search.config import Params
from fashion_search.features import FeatureStore
from fashion_search.index import exact_search
from fashion_search.io import save_npy, write_text_atomic
from fashion_search.layout import RunLayout

DEFINITIONS = {
    "report": "mean of precision@i over the ranks i ≤ k that hold a relevant item (the report's)",
    "standard": "sum of precision@i at relevant ranks i ≤ k, divided by min(k, relevant items)",
}


@dataclass
class Evaluation:
    """One backbone and distance: summary metrics, per-query scores and the ranked neighbours."""

    backbone: str
    distance: str
    summary: pd.DataFrame       # one row per k
    per_query: pd.DataFrame     # id, category, AP at the largest k under both definitions
    neighbours: np.ndarray      # (queries, k_max) gallery rows, nearest first
    distances: np.ndarray
    skipped_queries: int


def evaluate_store(store: FeatureStore, test: Catalog, ks: tuple[int, ...], distance: str,
                   batch_size: int = 1024) -> Evaluation:
    """Rank the test split against itself with ``store``'s features and score it at each k."""
    if list(store.ids) != test.items["id"].tolist():
        raise ValueError("the feature store's ids do not match the catalogue's test split; re-run extraction")
    labels = test.items["label"].to_numpy()
    n_relevant = np.bincount(labels)[labels] - 1  # other test items of the same class
    k_max = max(ks)
    ranked, dists = exact_search(store.features, store.features, k_max, distance,
                                 exclude=np.arange(len(labels)), batch_size=batch_size)
    scored = n_relevant > 0
    hits = metrics.relevance(labels, labels, ranked)[scored]
    rows = []
    for k in ks:
        k_eff = min(k, hits.shape[1])
        rows.append({"backbone": store.manifest["backbone"], "distance": distance, "k": k,
                     "map_report": metrics.map_at_k_report(hits, k_eff),
                     "map_standard": metrics.map_at_k(hits, n_relevant[scored], k_eff),
                     "precision": metrics.precision_at_k(hits, k_eff),
                     "recall": metrics.recall_at_k(hits, k_eff),
                     "queries": int(scored.sum())})
    k_last = min(k_max, hits.shape[1])
    per_query = test.items.loc[scored, ["id", test.label_column]].reset_index(drop=True)
    per_query[f"ap_report@{k_max}"] = metrics.average_precision_report_per_query(hits, k_last)
    per_query[f"ap_standard@{k_max}"] = metrics.average_precision_per_query(hits, n_relevant[scored], k_last)
    return Evaluation(store.manifest["backbone"], distance, pd.DataFrame(rows), per_query, ranked, dists,
                      int((~scored).sum()))


def save_evaluation(evaluation: Evaluation, folder: str | Path) -> None:
    """Write per-query scores and neighbours under ``folder`` for the visualisation stage."""
    folder = Path(folder)
    stem = f"{evaluation.backbone}_{evaluation.distance}"
    write_text_atomic(folder / f"per_query_{stem}.csv", evaluation.per_query.to_csv(index=False))
    save_npy(folder / f"neighbours_{stem}.npy", evaluation.neighbours)
    save_npy(folder / f"distances_{stem}.npy", evaluation.distances)


def load_neighbours(folder: str | Path, backbone: str, distance: str) -> tuple[np.ndarray, np.ndarray]:
    """Ranked gallery rows and their distances saved by :func:`save_evaluation`."""
    folder = Path(folder)
    stem = f"{backbone}_{distance}"
    return np.load(folder / f"neighbours_{stem}.npy"), np.load(folder / f"distances_{stem}.npy")


def column_title(manifest: dict) -> str:
    """A column header that says which weights produced the numbers."""
    weights = "ImageNet weights" if manifest["weights"] == "imagenet" else "random weights"
    tuned = "fine-tuned" if manifest.get("finetuned") else "frozen"
    return f"{manifest['backbone']} ({weights}, {tuned}, {manifest['image_size']} px)"


def map_tables(summary: pd.DataFrame, manifests: list[dict], ks: tuple[int, ...],
               distances: tuple[str, ...]) -> pd.DataFrame:
    """The report's layout: rows Top k, one column per backbone, per definition and distance.

    A backbone whose weights could not be loaded keeps its column, saying so.
    """
    frames = []
    for definition in DEFINITIONS:
        for distance in distances:
            table = pd.DataFrame({"definition": definition, "distance": distance, "rank": [f"Top {k}" for k in ks]})
            for manifest in manifests:
                title = column_title(manifest)
                if not manifest.get("available", True):
                    table[title] = f"weights unavailable: {manifest.get('hint', 'see the notes')}"
                    continue
                rows = summary[(summary["backbone"] == manifest["backbone"]) & (summary["distance"] == distance)]
                values = rows.set_index("k").loc[list(ks), f"map_{definition}"].to_numpy()
                table[title] = [f"{v:.4f}" for v in values]
            frames.append(table)
    return pd.concat(frames, ignore_index=True)


def map_tables_markdown(tables: pd.DataFrame, notes: list[str]) -> str:
    """Markdown with one table per definition and distance, preceded by ``notes``."""
    lines = ["# mAP@k", "", *notes, ""]
    for (definition, distance), table in tables.groupby(["definition", "distance"], sort=False):
        lines += [f"## {definition.capitalize()} definition, {distance} distance", "",
                  f"mAP@k: {DEFINITIONS[definition]}.", ""]
        body = table.drop(columns=["definition", "distance"]).rename(columns={"rank": ""})
        lines += [_markdown_table(body), ""]
    return "\n".join(lines)


def _markdown_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def write_map_tables(tables: pd.DataFrame, notes: list[str], folder: str | Path) -> None:
    """``map_table.csv`` and ``map_table.md`` in ``folder``."""
    folder = Path(folder)
    write_text_atomic(folder / "map_table.csv", tables.to_csv(index=False))
    write_text_atomic(folder / "map_table.md", map_tables_markdown(tables, notes))


def protocol_notes(test: Catalog, evaluations: list[Evaluation], manifests: list[dict]) -> list[str]:
    """Sentences that say how the table was measured, for the top of ``map_table.md``."""
    notes = [f"Protocol: each of the {len(test)} test items is a query against all other test items "
             f"(the query itself excluded); relevant = same {test.label_column}."]
    if evaluations:
        skipped = evaluations[0].skipped_queries
        notes.append(f"{len(test) - skipped} queries scored; {skipped} skipped because no other test item "
                     "shares their category.")
    for manifest in manifests:
        used = manifest.get("weights_used") or f"unavailable: {manifest.get('remedy', '')}"
        notes.append(f"- {manifest['backbone']}: weights {used}")
    if any(m["weights"] == "none" for m in manifests):
        notes.append("**Columns marked 'random weights' use randomly initialised backbones (weights: none), "
                     "not ImageNet weights: their numbers say nothing about pretrained features.**")
    return notes


def evaluate_all(params: Params, stores: dict[str, FeatureStore], test: Catalog,
                 layout: RunLayout) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score every available store at every distance; write metrics, tables and neighbours.

    Returns ``(summary, map_table)``: all metrics in long form, and the report-layout table.
    """
    evaluations = []
    for name, store in stores.items():
        if not store.manifest.get("available", True):
            continue
        for distance in params.evaluate.distances:
            evaluation = evaluate_store(store, test, params.evaluate.ks, distance, params.evaluate.query_batch_size)
            save_evaluation(evaluation, layout.retrieval)
            evaluations.append(evaluation)
    summary = pd.concat([e.summary for e in evaluations], ignore_index=True) if evaluations else pd.DataFrame(
        columns=["backbone", "distance", "k", "map_report", "map_standard", "precision", "recall", "queries"])
    manifests = [store.manifest for store in stores.values()]
    write_text_atomic(layout.metrics / "metrics.csv", summary.to_csv(index=False))
    tables = map_tables(summary, manifests, params.evaluate.ks, params.evaluate.distances)
    write_map_tables(tables, protocol_notes(test, evaluations, manifests), layout.metrics)
    return summary, tables
