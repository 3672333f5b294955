"""Retrieval metrics over ranked results.

All functions take ``hits``: a boolean ``(n_queries, K)`` array whose ``[q, i]`` says whether
the result at rank ``i + 1`` of query ``q`` is relevant, and a cut-off ``k ≤ K``. Values are
means over queries; per-query versions carry the ``_per_query`` suffix.
"""
from __future__ import annotations

import numpy as np


def relevance(query_labels: np.ndarray, gallery_labels: np.ndarray, ranked: np.ndarray) -> np.ndarray:
    """``hits[q, i] = gallery_labels[ranked[q, i]] == query_labels[q]``."""
    return np.asarray(gallery_labels)[ranked] == np.asarray(query_labels)[:, None]


def _check(hits: np.ndarray, k: int) -> np.ndarray:
    if k < 1 or k > hits.shape[1]:
        raise ValueError(f"k must be between 1 and {hits.shape[1]}, got {k}")
    return hits[:, :k].astype(np.float64)


def _precision_at_each_rank(top: np.ndarray) -> np.ndarray:
    return np.cumsum(top, axis=1) / np.arange(1, top.shape[1] + 1)


def precision_at_k(hits: np.ndarray, k: int) -> float:
    """P@k = |relevant in top k| / k, averaged over queries."""
    return float(_check(hits, k).mean(axis=1).mean())


def recall_at_k(hits: np.ndarray, k: int) -> float:
    """Hit rate R@k = 1 if any of the top k is relevant else 0, averaged over queries."""
    return float(_check(hits, k).max(axis=1).mean())


def average_precision_report_per_query(hits: np.ndarray, k: int) -> np.ndarray:
    """The report's AP@k = (1/|H|) Σ_{i∈H} P@i, H = ranks i ≤ k holding a relevant item (0 if H = ∅)."""
    top = _check(hits, k)
    found = top.sum(axis=1)
    summed = (_precision_at_each_rank(top) * top).sum(axis=1)
    return np.divide(summed, found, out=np.zeros_like(summed), where=found > 0)


def average_precision_per_query(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """AP@k = (1/min(k, R)) Σ_{i≤k} rel_i · P@i, R = relevant items in the gallery (0 if R = 0)."""
    top = _check(hits, k)
    denominator = np.minimum(k, np.asarray(n_relevant, np.float64))
    summed = (_precision_at_each_rank(top) * top).sum(axis=1)
    return np.divide(summed, denominator, out=np.zeros_like(summed), where=denominator > 0)


def map_at_k_report(hits: np.ndarray, k: int) -> float:
    """mAP@k as the report defines it: the mean of :func:`average_precision_report_per_query`."""
    return float(average_precision_report_per_query(hits, k).mean())


def map_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> float:
    """mAP@k with the min(k, R) denominator: the mean of :func:`average_precision_per_query`."""
    return float(average_precision_per_query(hits, n_relevant, k).mean())


BOOTSTRAP_RESAMPLES = 2000


def mean_interval(values: np.ndarray, level: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
                  seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-query ``values`` (resampling queries).

    For the difference of two models on the same queries, pass the per-query differences:
    that is the paired interval, which cancels what the queries share."""
    values = np.asarray(values, np.float64)
    if len(values) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 250):  # bounded memory for large query sets
        stop = min(start + 250, resamples)
        means[start:stop] = values[rng.integers(0, len(values), (stop - start, len(values)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def paired_difference(ours: np.ndarray, theirs: np.ndarray) -> tuple[float, float, float]:
    """Mean of per-query ``ours - theirs`` (scores of the same queries, in the same order) with
    its 95% paired bootstrap interval: (mean, low, high)."""
    difference = np.asarray(ours, np.float64) - np.asarray(theirs, np.float64)
    return (float(difference.mean()) if len(difference) else float("nan"), *mean_interval(difference))
