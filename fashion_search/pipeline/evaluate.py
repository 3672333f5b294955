"""Stage 04: the retrieval protocols, from feature stores to metrics (tables: :mod:`.report`).

Two protocols, both with the test items as queries, each query excluded from its own results:

- ``catalogue``: each test item searches the whole catalogue (train, validation and test
  items), what ``fashion-search query`` does for a shopper; with ``data.evaluation_path`` the
  notebooks pass :meth:`Catalog.searched`: that folder's photos, not the training photos;
- ``test split``: each test item searches the other test items only (the research report's).

An item is relevant when it matches the query on every column of the relevance definition
(``articleType``, or ``articleType+baseColour``). Queries with no other relevant item in the
gallery cannot be scored; they are counted, not averaged.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fashion_search import metrics
from fashion_search.data.catalog import Catalog, relevance_codes
from fashion_search.exact import NegativeFeaturesError, exact_search
from fashion_search.io import save_npy, write_text_atomic
from fashion_search.layout import RunLayout, variants
from fashion_search.params import Params
from fashion_search.pipeline.features import FeatureStore
from fashion_search.pipeline.distances_report import NOT_APPLICABLE_FILE, write_distances_report
from fashion_search.pipeline.report import QUERIES_COLUMN, write_reports


PROTOCOLS = ("catalogue", "test split")


@dataclass
class Ranking:
    """One model, distance and protocol: the gallery rows ranked for each query, nearest first."""

    model: str
    distance: str
    neighbours: np.ndarray      # (queries, k_max), rows of the gallery
    distances: np.ndarray
    protocol: str = "test split"


@dataclass
class Evaluation:
    """One ranking scored under one relevance definition."""

    model: str
    distance: str
    relevance: str
    summary: pd.DataFrame       # one row per k
    per_query: pd.DataFrame     # id, relevance columns, AP at the largest k under both definitions
    skipped_queries: int


def gallery_of(catalog: Catalog, protocol: str) -> tuple[np.ndarray, np.ndarray]:
    """``(gallery rows, query rows)`` of a protocol: catalogue rows searched, and the test
    queries' positions within them."""
    test_rows = np.flatnonzero((catalog.items["split"] == "test").to_numpy())
    if protocol == "catalogue":
        return np.arange(len(catalog)), test_rows
    if protocol == "test split":
        return test_rows, np.arange(len(test_rows))
    raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")


def rank_store(store: FeatureStore, catalog: Catalog, k_max: int, distance: str, batch_size: int = 1024,
               model: str = "", protocol: str = "test split") -> Ranking:
    """Rank the gallery of ``protocol`` for each test query (each query excluded from its own results).

    ``store`` holds a vector for every catalogue item, in catalogue order."""
    if list(store.ids) != catalog.items["id"].tolist():
        raise ValueError("the feature store's ids do not match the catalogue; re-run extraction (03)")
    gallery, queries = gallery_of(catalog, protocol)
    vectors = store.features[gallery]
    ranked, dists = exact_search(vectors[queries], vectors, k_max, distance, exclude=queries, batch_size=batch_size)
    return Ranking(model or store.manifest["backbone"], distance, ranked, dists, protocol)


def score_ranking(ranking: Ranking, catalog: Catalog, ks: tuple[int, ...], relevance: str) -> Evaluation:
    """mAP@k (both definitions), precision@k and recall@k of ``ranking`` under ``relevance``."""
    gallery, queries = gallery_of(catalog, ranking.protocol)
    items = catalog.items.iloc[gallery].reset_index(drop=True)
    codes = relevance_codes(items, relevance)
    n_relevant = np.bincount(codes)[codes[queries]] - 1  # other gallery items relevant to each query
    scored = n_relevant > 0
    hits = metrics.relevance(codes[queries], codes, ranking.neighbours)[scored]
    rows = []
    for k in ks:
        k_eff = min(k, hits.shape[1])
        report_ap = metrics.average_precision_report_per_query(hits, k_eff)
        standard_ap = metrics.average_precision_per_query(hits, n_relevant[scored], k_eff)
        report_low, report_high = metrics.mean_interval(report_ap)
        standard_low, standard_high = metrics.mean_interval(standard_ap)
        rows.append({"model": ranking.model, "protocol": ranking.protocol, "relevance": relevance,
                     "distance": ranking.distance, "k": k,
                     "map_report": float(report_ap.mean()) if len(report_ap) else float("nan"),
                     "map_standard": float(standard_ap.mean()) if len(standard_ap) else float("nan"),
                     "map_report_low": report_low, "map_report_high": report_high,
                     "map_standard_low": standard_low, "map_standard_high": standard_high,
                     "precision": metrics.precision_at_k(hits, k_eff) if len(hits) else float("nan"),
                     "recall": metrics.recall_at_k(hits, k_eff) if len(hits) else float("nan"),
                     "queries": int(scored.sum()), "skipped": int((~scored).sum())})
    k_last = min(max(ks), hits.shape[1])
    per_query = items.iloc[queries[scored]][["id", *dict.fromkeys(relevance.split("+"))]].reset_index(drop=True)
    per_query[f"ap_report@{max(ks)}"] = metrics.average_precision_report_per_query(hits, k_last)
    per_query[f"ap_standard@{max(ks)}"] = metrics.average_precision_per_query(hits, n_relevant[scored], k_last)
    return Evaluation(ranking.model, ranking.distance, relevance, pd.DataFrame(rows), per_query,
                      int((~scored).sum()))


def evaluate_store(store: FeatureStore, catalog: Catalog, ks: tuple[int, ...], distance: str, relevance: str,
                   batch_size: int = 1024, protocol: str = "test split") -> Evaluation:
    """Rank and score in one call."""
    return score_ranking(rank_store(store, catalog, max(ks), distance, batch_size, protocol=protocol), catalog, ks,
                         relevance)


def _ranking_files(folder: str | Path, model: str, distance: str, protocol: str) -> tuple[Path, Path]:
    suffix = "" if protocol == "test split" else f"_{protocol}"
    return (Path(folder) / f"neighbours_{model}_{distance}{suffix}.npy",
            Path(folder) / f"distances_{model}_{distance}{suffix}.npy")


def save_ranking(ranking: Ranking, folder: str | Path) -> None:
    """Write the neighbours and distances under ``folder`` for the visualisation stage."""
    neighbours, distances = _ranking_files(folder, ranking.model, ranking.distance, ranking.protocol)
    save_npy(neighbours, ranking.neighbours)
    save_npy(distances, ranking.distances)


def evaluated_models(params: Params, summary: pd.DataFrame) -> list[str]:
    """The ``<backbone>-<recipe>`` names that have metrics in ``summary``, in parameter order."""
    return [variant.name for variant in variants(params) if variant.name in set(summary["model"])]


def pick_queries(test: Catalog, n: int, seed: int, categories: list[str] | None = None) -> list[int]:
    """``n`` fixed query rows to show: one from each of ``categories`` in order (default: the
    ``n`` largest test categories), cycling if there are fewer."""
    rng = np.random.default_rng(seed)
    labels = test.items[test.label_column].astype(str).to_numpy()
    counts = test.items[test.label_column].astype(str).value_counts()
    names = [str(c) for c in categories if str(c) in counts] if categories else []
    names = names or sorted(counts.index, key=lambda name: (-counts[name], name))
    return [int(rng.choice(np.flatnonzero(labels == names[i % len(names)]))) for i in range(n)]


def confusions(labels: np.ndarray, neighbours: np.ndarray, k: int,
               gallery_labels: np.ndarray | None = None) -> pd.DataFrame:
    """How often a query of one label has a result of another among its top ``k``: one row per
    (query label, result label) pair, most frequent first, with the share of that label's
    queries' top-k slots it takes and one example (the query row, its best-ranked such result).
    ``neighbours`` index ``gallery_labels`` (default: the queries' own ``labels``)."""
    labels = np.asarray(labels).astype(str)
    gallery = labels if gallery_labels is None else np.asarray(gallery_labels).astype(str)
    top = neighbours[:, :k]
    wrong = gallery[top] != labels[:, None]
    queries, ranks = np.nonzero(wrong)
    pairs = pd.DataFrame({"query_label": labels[queries], "result_label": gallery[top[queries, ranks]],
                          "query": queries, "result": top[queries, ranks], "rank": ranks})
    if pairs.empty:
        return pd.DataFrame(columns=["query_label", "result_label", "count", "share", "query", "result"])
    slots = pd.Series(labels).value_counts() * top.shape[1]
    first = pairs.sort_values(["rank", "query"]).groupby(["query_label", "result_label"]).first()
    table = pairs.groupby(["query_label", "result_label"]).size().rename("count").to_frame().join(first)
    table["share"] = table["count"] / slots.reindex(table.index.get_level_values(0)).to_numpy()
    table = table.reset_index().sort_values(["count", "query_label", "result_label"], ascending=[False, True, True])
    return table[["query_label", "result_label", "count", "share", "query", "result"]].reset_index(drop=True)


def model_confusions(folder: str | Path, models: list[str], distance: str, test: Catalog, catalog: Catalog,
                     k: int) -> dict[str, pd.DataFrame]:
    """Each model's :func:`confusions` under the catalogue protocol: its test queries' top ``k``
    in the whole catalogue, from the rankings saved in ``folder``."""
    labels = test.items[test.label_column].to_numpy()
    catalogue_labels = catalog.items[catalog.label_column].to_numpy()
    return {name: confusions(labels, load_neighbours(folder, name, distance, "catalogue")[0], k, catalogue_labels)
            for name in models}


def confusion_shares(tables: dict[str, pd.DataFrame], n: int) -> pd.DataFrame:
    """The ``n`` most frequent confusions of each model (``tables``: its :func:`confusions`), as
    one table: a row per (query label → result label) pair, a column per model, each cell the
    share of that label's top-k result slots the pair takes (0 where a model never made it)."""
    pairs = list(dict.fromkeys(pair for table in tables.values()
                               for pair in zip(table["query_label"].head(n), table["result_label"].head(n))))
    shares = pd.DataFrame({name: [table.set_index(["query_label", "result_label"])["share"].get(pair, 0.0)
                                  for pair in pairs] for name, table in tables.items()},
                          index=pd.Index([f"{query} → {result}" for query, result in pairs], name="confusion"))
    return shares.loc[shares.mean(axis=1).sort_values(ascending=False, kind="stable").index] if pairs else shares


def showcase_queries(test: Catalog, per_category: pd.DataFrame, n: int, seed: int,
                     k: int) -> tuple[list[int], list[str] | None]:
    """05's fixed queries: one from each of the worst and the best categories of
    ``per_category`` (see :func:`worst_and_best_categories`), each with a note giving its
    category's mAP@k; without scores, the largest categories and no notes."""
    picked = worst_and_best_categories(per_category, n) if len(per_category) else []
    queries = pick_queries(test, n, seed, [name for name, _ in picked])
    notes = [f"category mAP@{k} {score:.2f}" for _, score in picked]
    return queries, notes if len(notes) == len(queries) else None


def worst_and_best_categories(per_category: pd.DataFrame, n: int) -> list[tuple[str, float]]:
    """``n`` categories with their score averaged over the models (``per_category``: one row per
    category, one column per model): the worst half first, worst first, then the best, best first."""
    mean = per_category.drop(columns=[QUERIES_COLUMN], errors="ignore").mean(axis=1).dropna().sort_values()
    worst = list(mean.index[: (n + 1) // 2])
    best = [c for c in mean.index[::-1] if c not in worst][: n // 2]
    return [(str(c), float(mean[c])) for c in worst + best]


def load_neighbours(folder: str | Path, model: str, distance: str,
                    protocol: str = "test split") -> tuple[np.ndarray, np.ndarray]:
    """Ranked gallery rows (of the protocol's gallery: :func:`gallery_of`) and their distances,
    saved by :func:`save_ranking`."""
    neighbours, distances = _ranking_files(folder, model, distance, protocol)
    if not neighbours.is_file():
        raise FileNotFoundError(f"no {protocol} neighbours of {model} ({distance}) in {folder}: run the evaluation "
                                "stage (04) again, e.g. fashion-search run --from 04")
    return np.load(neighbours), np.load(distances)


SUMMARY_COLUMNS = ["model", "protocol", "relevance", "distance", "k", "map_report", "map_standard", "map_report_low",
                   "map_report_high", "map_standard_low", "map_standard_high", "precision", "recall",
                   "queries", "skipped"]


def evaluate_all(params: Params, stores: dict[str, FeatureStore], catalog: Catalog,
                 layout: RunLayout) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score every available store under both protocols, at every distance and relevance; write
    metrics, tables and each protocol's neighbours (for 05). A distance a store's features cannot
    take (weighted Jaccard on negative values) is left out and listed, with why, in
    ``not_applicable.csv`` and the distances report. Returns ``(summary, map_table)``: all
    metrics in long form, and the report-layout tables.
    """
    evaluations = []
    per_query = {}  # (model, protocol, relevance, distance) → per-query AP, for the paired gains
    not_applicable = []  # (model, distance, why): weighted Jaccard on features with negative values
    for name, store in stores.items():
        if not store.manifest.get("available", True):
            continue
        for protocol in PROTOCOLS:
            for distance in params.evaluate.distances:
                try:
                    ranking = rank_store(store, catalog, max(params.evaluate.ks), distance,
                                         params.evaluate.query_batch_size, model=name, protocol=protocol)
                except NegativeFeaturesError as error:
                    if protocol == PROTOCOLS[0]:
                        not_applicable.append({"model": name, "distance": distance, "reason": str(error)})
                    continue
                save_ranking(ranking, layout.retrieval)
                for relevance in params.evaluate.relevance:
                    evaluation = score_ranking(ranking, catalog, params.evaluate.ks, relevance)
                    write_text_atomic(layout.per_query(name, relevance, distance, protocol),
                                      evaluation.per_query.to_csv(index=False))
                    evaluations.append(evaluation)
                    per_query[name, protocol, relevance, distance] = evaluation.per_query
    summary = (pd.concat([e.summary for e in evaluations], ignore_index=True) if evaluations
               else pd.DataFrame(columns=SUMMARY_COLUMNS))
    manifests = {name: store.manifest for name, store in stores.items()}
    write_text_atomic(layout.metrics / "metrics.csv", summary.to_csv(index=False))
    refused = pd.DataFrame(not_applicable, columns=["model", "distance", "reason"])
    write_text_atomic(layout.metrics / NOT_APPLICABLE_FILE, refused.to_csv(index=False))
    write_distances_report(summary, per_query, manifests, params, refused, layout.metrics)
    return summary, write_reports(summary, manifests, catalog, params, layout.metrics, per_query)
