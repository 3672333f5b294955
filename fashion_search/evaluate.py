"""The retrieval protocol and the report's mAP tables.

Protocol: every test item is a query against the gallery of all other test items (the
query itself is excluded from its results); an item is relevant when it matches the query
on every column of the relevance definition (``articleType``, or ``articleType+baseColour``).
Queries with no other relevant test item cannot be scored; they are counted, not averaged.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fashion_search import metrics
from fashion_search.catalog import Catalog, relevance_codes
from fashion_search.config import Params
from fashion_search.features import FeatureStore
from fashion_search.index import exact_search
from fashion_search.io import save_npy, write_text_atomic
from fashion_search.layout import RunLayout, variant_name

DEFINITIONS = {
    "report": "mean of precision@i over the ranks i ≤ k that hold a relevant item (the report's)",
    "standard": "sum of precision@i at relevant ranks i ≤ k, divided by min(k, relevant items)",
}


@dataclass
class Ranking:
    """One model and distance: the gallery rows ranked for each query, nearest first."""

    model: str
    distance: str
    neighbours: np.ndarray      # (queries, k_max)
    distances: np.ndarray


@dataclass
class Evaluation:
    """One ranking scored under one relevance definition."""

    model: str
    distance: str
    relevance: str
    summary: pd.DataFrame       # one row per k
    per_query: pd.DataFrame     # id, relevance columns, AP at the largest k under both definitions
    skipped_queries: int


def rank_store(store: FeatureStore, test: Catalog, k_max: int, distance: str, batch_size: int = 1024,
               model: str = "") -> Ranking:
    """Rank the test split against itself (each query excluded from its own results)."""
    if list(store.ids) != test.items["id"].tolist():
        raise ValueError("the feature store's ids do not match the catalogue's test split; re-run extraction")
    ranked, dists = exact_search(store.features, store.features, k_max, distance,
                                 exclude=np.arange(len(test)), batch_size=batch_size)
    return Ranking(model or store.manifest["backbone"], distance, ranked, dists)


def score_ranking(ranking: Ranking, test: Catalog, ks: tuple[int, ...], relevance: str) -> Evaluation:
    """mAP@k (both definitions), precision@k and recall@k of ``ranking`` under ``relevance``."""
    codes = relevance_codes(test.items, relevance)
    n_relevant = np.bincount(codes)[codes] - 1  # other test items relevant to each one
    scored = n_relevant > 0
    hits = metrics.relevance(codes, codes, ranking.neighbours)[scored]
    rows = []
    for k in ks:
        k_eff = min(k, hits.shape[1])
        rows.append({"model": ranking.model, "relevance": relevance, "distance": ranking.distance, "k": k,
                     "map_report": metrics.map_at_k_report(hits, k_eff),
                     "map_standard": metrics.map_at_k(hits, n_relevant[scored], k_eff),
                     "precision": metrics.precision_at_k(hits, k_eff),
                     "recall": metrics.recall_at_k(hits, k_eff),
                     "queries": int(scored.sum()), "skipped": int((~scored).sum())})
    k_last = min(max(ks), hits.shape[1])
    per_query = test.items.loc[scored, ["id", *relevance.split("+")]].reset_index(drop=True)
    per_query[f"ap_report@{max(ks)}"] = metrics.average_precision_report_per_query(hits, k_last)
    per_query[f"ap_standard@{max(ks)}"] = metrics.average_precision_per_query(hits, n_relevant[scored], k_last)
    return Evaluation(ranking.model, ranking.distance, relevance, pd.DataFrame(rows), per_query,
                      int((~scored).sum()))


def evaluate_store(store: FeatureStore, test: Catalog, ks: tuple[int, ...], distance: str, relevance: str,
                   batch_size: int = 1024) -> Evaluation:
    """Rank and score in one call."""
    return score_ranking(rank_store(store, test, max(ks), distance, batch_size), test, ks, relevance)


def save_ranking(ranking: Ranking, folder: str | Path) -> None:
    """Write the neighbours and distances under ``folder`` for the visualisation stage."""
    folder = Path(folder)
    save_npy(folder / f"neighbours_{ranking.model}_{ranking.distance}.npy", ranking.neighbours)
    save_npy(folder / f"distances_{ranking.model}_{ranking.distance}.npy", ranking.distances)


def per_query_path(folder: str | Path, model: str, relevance: str, distance: str) -> Path:
    return Path(folder) / f"per_query_{model}_{relevance}_{distance}.csv"


def evaluated_models(params: Params, summary: pd.DataFrame) -> list[str]:
    """The ``<backbone>-<recipe>`` names that have metrics in ``summary``, in parameter order."""
    names = [variant_name(b.name, r) for b in params.backbones for r in params.finetune.recipes]
    return [name for name in names if name in set(summary["model"])]


def load_neighbours(folder: str | Path, model: str, distance: str) -> tuple[np.ndarray, np.ndarray]:
    """Ranked gallery rows and their distances saved by :func:`save_ranking`."""
    folder = Path(folder)
    return np.load(folder / f"neighbours_{model}_{distance}.npy"), np.load(folder / f"distances_{model}_{distance}.npy")


def column_title(manifest: dict) -> str:
    """A column header that says which weights and recipe produced the numbers."""
    weights = "ImageNet" if manifest["weights"] == "imagenet" else "random weights"
    return f"{manifest['backbone']} {manifest.get('recipe', 'frozen')} ({weights}, {manifest['image_size']} px)"


def map_tables(summary: pd.DataFrame, manifests: dict[str, dict], ks: tuple[int, ...],
               relevances: tuple[str, ...], distances: tuple[str, ...]) -> pd.DataFrame:
    """The report's layout: rows Top k, one column per model, one table per relevance,
    definition and distance. A model whose weights could not be loaded keeps its column,
    saying so."""
    frames = []
    for relevance in relevances:
        for definition in DEFINITIONS:
            for distance in distances:
                table = pd.DataFrame({"relevance": relevance, "definition": definition, "distance": distance,
                                      "rank": [f"Top {k}" for k in ks]})
                for model, manifest in manifests.items():
                    title = column_title(manifest)
                    if not manifest.get("available", True):
                        table[title] = f"weights unavailable: {manifest.get('hint', 'see the notes')}"
                        continue
                    rows = summary[(summary["model"] == model) & (summary["distance"] == distance)
                                   & (summary["relevance"] == relevance)]
                    values = rows.set_index("k").loc[list(ks), f"map_{definition}"].to_numpy()
                    table[title] = [f"{v:.4f}" for v in values]
                frames.append(table)
    return pd.concat(frames, ignore_index=True)


def map_tables_markdown(tables: pd.DataFrame, notes: list[str]) -> str:
    """Markdown with one table per relevance, definition and distance, preceded by ``notes``."""
    lines = ["# mAP@k", "", *notes, ""]
    for (relevance, definition, distance), table in tables.groupby(["relevance", "definition", "distance"],
                                                                   sort=False):
        lines += [f"## Relevant = same {relevance}; {definition} definition, {distance} distance", "",
                  f"mAP@k: {DEFINITIONS[definition]}.", ""]
        body = table.drop(columns=["relevance", "definition", "distance"]).rename(columns={"rank": ""})
        lines += [markdown_table(body), ""]
    return "\n".join(lines)


def comparison_table(summary: pd.DataFrame, manifests: dict[str, dict], relevance: str, distance: str,
                     ks: tuple[int, ...]) -> pd.DataFrame:
    """One row per model: training time, mAP@k under both definitions, precision@k, recall@k."""
    rows = []
    for model, manifest in manifests.items():
        row = {"backbone": manifest["backbone"], "recipe": manifest.get("recipe", "frozen"),
               "size": manifest["image_size"],
               "training (min)": f"{manifest['train_seconds'] / 60:.1f}" if "train_seconds" in manifest else "-"}
        part = summary[(summary["model"] == model) & (summary["relevance"] == relevance)
                       & (summary["distance"] == distance)].set_index("k")
        missing = f"weights unavailable: {manifest.get('hint', 'see map_table.md')}"
        for column, label in [("map_report", "mAP@{k}"), ("map_standard", "mAP@{k} std"),
                              ("precision", "P@{k}"), ("recall", "R@{k}")]:
            for k in ks:
                row[label.format(k=k)] = f"{part.loc[k, column]:.4f}" if k in part.index else missing
                missing = ""  # said once per row
        rows.append(row)
    return pd.DataFrame(rows)


def markdown_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def comparison_markdown(summary: pd.DataFrame, manifests: dict[str, dict], params: Params) -> str:
    """``results.md``: the comparison table per relevance definition (first distance)."""
    distance = params.evaluate.distances[0]
    lines = ["# Retrieval by backbone and recipe", "",
             f"Test split, {distance} distance; mAP@k = the report's definition, 'std' = the min(k, R) "
             "denominator; P@k precision, R@k hit rate; training = wall-clock minutes of model.fit.", ""]
    for relevance in params.evaluate.relevance:
        part = summary[summary["relevance"] == relevance]
        counts = part.iloc[0] if len(part) else None
        lines += [f"## Relevant = same {relevance}", ""]
        if counts is not None:
            lines += [f"{counts['queries']} queries scored, {counts['skipped']} skipped (no other test item "
                      f"shares their {relevance}).", ""]
        lines += [markdown_table(comparison_table(summary, manifests, relevance, distance, params.evaluate.ks)), ""]
    return "\n".join(lines)


def protocol_notes(test: Catalog, params: Params, summary: pd.DataFrame, manifests: dict[str, dict]) -> list[str]:
    """Sentences that say how the tables were measured, for the top of ``map_table.md``."""
    notes = [f"Protocol: each of the {len(test)} test items is a query against all other test items "
             "(the query itself excluded); relevant = same value in every column of the relevance "
             "definition. No model saw a test item in training."]
    for relevance in params.evaluate.relevance:
        part = summary[summary["relevance"] == relevance]
        if len(part):
            notes.append(f"- same {relevance}: {part['queries'].iloc[0]} queries scored, {part['skipped'].iloc[0]} "
                         "skipped because no other test item matches them.")
    for model, manifest in manifests.items():
        used = manifest.get("weights_used") or f"unavailable: {manifest.get('remedy', '')}"
        notes.append(f"- {model}: weights {used}")
    if any(m["weights"] == "none" for m in manifests.values()):
        notes.append("**Columns marked 'random weights' use randomly initialised backbones (weights: none), "
                     "not ImageNet weights: their numbers say nothing about pretrained features.**")
    return notes


SUMMARY_COLUMNS = ["model", "relevance", "distance", "k", "map_report", "map_standard", "precision", "recall",
                   "queries", "skipped"]


def evaluate_all(params: Params, stores: dict[str, FeatureStore], test: Catalog,
                 layout: RunLayout) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score every available store at every distance and relevance; write metrics, tables and
    neighbours. Returns ``(summary, map_table)``: all metrics in long form, and the report-layout tables.
    """
    evaluations = []
    for name, store in stores.items():
        if not store.manifest.get("available", True):
            continue
        for distance in params.evaluate.distances:
            ranking = rank_store(store, test, max(params.evaluate.ks), distance, params.evaluate.query_batch_size,
                                 model=name)
            save_ranking(ranking, layout.retrieval)
            for relevance in params.evaluate.relevance:
                evaluation = score_ranking(ranking, test, params.evaluate.ks, relevance)
                write_text_atomic(per_query_path(layout.retrieval, name, relevance, distance),
                                  evaluation.per_query.to_csv(index=False))
                evaluations.append(evaluation)
    summary = (pd.concat([e.summary for e in evaluations], ignore_index=True) if evaluations
               else pd.DataFrame(columns=SUMMARY_COLUMNS))
    manifests = {name: store.manifest for name, store in stores.items()}
    write_text_atomic(layout.metrics / "metrics.csv", summary.to_csv(index=False))
    tables = map_tables(summary, manifests, params.evaluate.ks, params.evaluate.relevance, params.evaluate.distances)
    write_text_atomic(layout.metrics / "map_table.csv", tables.to_csv(index=False))
    write_text_atomic(layout.metrics / "map_table.md",
                      map_tables_markdown(tables, protocol_notes(test, params, summary, manifests)))
    write_text_atomic(layout.metrics / "results.md", comparison_markdown(summary, manifests, params))
    return summary, tables
