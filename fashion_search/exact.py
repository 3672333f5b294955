"""Exact k-nearest-neighbour search: the one implementation behind evaluation, validation
during training and the search engine's exact paths (flat index, narrow filters, re-ranking).

Queries go in batches, so only a ``(batch, gallery)`` block of distances exists at any time:
a 70k × 70k comparison never materialises its 20 GB matrix. Ties are broken by gallery row,
so rankings are reproducible to the last place; that, and leaving each query's own row out,
is why this is numpy rather than ``faiss.knn``.
"""
from __future__ import annotations

import numpy as np

from fashion_search.progress import progress as with_progress

# euclidean: ‖q − g‖; cosine: 1 − cos(q, g); dot: 1 − q·g (cosine for vectors already unit length);
# jaccard: 1 − Σ min(q, g) / Σ max(q, g), the weighted Jaccard distance (non-negative vectors only)
DISTANCES = ("euclidean", "cosine", "dot", "jaccard")
JACCARD_NEEDS = "non-negative features (e.g. average-pooled ReLU activations)"


class NegativeFeaturesError(ValueError):
    """Weighted Jaccard asked of vectors with negative values: Σmin/Σmax means nothing there."""


def jaccard_refusal(vectors: np.ndarray) -> str | None:
    """Why weighted Jaccard cannot rank ``vectors`` (in words), or ``None`` when it can."""
    vectors = np.asarray(vectors)
    if vectors.size == 0 or float(vectors.min()) >= 0:
        return None
    share = float((vectors < 0).mean())
    return (f"weighted Jaccard needs {JACCARD_NEEDS}, and {share:.0%} of these values are negative (down to "
            f"{float(vectors.min()):.3g}), as in a learned projection such as an L2-normalised embedding")


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _jaccard_block(queries: np.ndarray, gallery_t: np.ndarray, gallery_sums: np.ndarray) -> np.ndarray:
    """1 − Σmin/Σmax for every (query, gallery) pair, one feature at a time so only a
    ``(queries, gallery)`` block exists; Σmax = Σq + Σg − Σmin. Two all-zero vectors are identical."""
    minima = np.zeros((len(queries), gallery_t.shape[1]), np.float32)
    for feature, column in enumerate(gallery_t):
        np.add(minima, np.minimum(queries[:, feature, None], column[None, :]), out=minima)
    maxima = queries.sum(axis=1, keepdims=True) + gallery_sums[None, :] - minima
    similarity = np.divide(minima, maxima, out=np.ones_like(minima), where=maxima > 0)
    return 1.0 - similarity


def _distance_block(queries: np.ndarray, gallery: np.ndarray, gallery_sq: np.ndarray, distance: str) -> np.ndarray:
    if distance == "jaccard":  # gallery: transposed; gallery_sq: its row sums
        return _jaccard_block(queries, gallery, gallery_sq)
    dots = queries @ gallery.T
    if distance != "euclidean":
        return 1.0 - dots
    squared = (queries**2).sum(axis=1, keepdims=True) - 2.0 * dots + gallery_sq[None, :]
    return np.sqrt(np.maximum(squared, 0.0))


def exact_search(queries: np.ndarray, gallery: np.ndarray, k: int, distance: str = "euclidean",
                 exclude: np.ndarray | None = None, batch_size: int = 1024,
                 progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest gallery rows of each query, nearest first (ties by row).

    ``distance`` is one of :data:`DISTANCES`. ``exclude[i]`` is a gallery row never returned for
    query ``i`` (the query itself; -1 for none). Returns ``(indices, distances)``, both
    ``(n_queries, k)``; ``k`` is capped at the gallery rows that can be returned. ``jaccard``
    refuses vectors with negative values (:class:`NegativeFeaturesError`, saying why).
    """
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {', '.join(DISTANCES)}, got {distance!r}")
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError(f"queries have {queries.shape[1]} dimensions, the gallery {gallery.shape[1]}")
    queries = np.asarray(queries, np.float32)
    gallery = np.asarray(gallery, np.float32)
    if distance == "cosine":
        queries, gallery = l2_normalise(queries), l2_normalise(gallery)
    if distance == "jaccard":
        refusal = jaccard_refusal(queries) or jaccard_refusal(gallery)
        if refusal:
            raise NegativeFeaturesError(refusal)
    k = min(k, len(gallery) - (exclude is not None))
    n_gallery = len(gallery)
    if distance == "jaccard":  # a feature's values over the gallery contiguous; sums instead of squares
        gallery_sq, gallery = gallery.sum(axis=1), np.ascontiguousarray(gallery.T)
    else:
        gallery_sq = (gallery**2).sum(axis=1)
    indices = np.empty((len(queries), k), np.int64)
    distances = np.empty((len(queries), k), np.float32)
    starts = range(0, len(queries), batch_size)
    for start in with_progress(starts, "search", unit="batch", disable=not progress):
        stop = min(start + batch_size, len(queries))
        block = _distance_block(queries[start:stop], gallery, gallery_sq, distance)
        if exclude is not None:
            rows = np.arange(stop - start)
            own = exclude[start:stop]
            block[rows[own >= 0], own[own >= 0]] = np.inf
        top = np.argpartition(block, k - 1, axis=1)[:, :k] if k < n_gallery else np.tile(
            np.arange(n_gallery), (len(block), 1))
        top_d = np.take_along_axis(block, top, axis=1)
        order = np.lexsort((top, top_d), axis=1)  # by distance, then by index for ties
        indices[start:stop] = np.take_along_axis(top, order, axis=1)
        distances[start:stop] = np.take_along_axis(top_d, order, axis=1)
    return indices, distances
