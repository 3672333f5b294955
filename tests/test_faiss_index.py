"""faiss indexes: the kind chosen by size, approximate search close to exact, filters without holes."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fashion_search.params import IndexParams
from fashion_search.search.index.faiss_index import VectorIndex, build_faiss_index, choose_index


def true_distances(query: np.ndarray, vectors: np.ndarray, metric: str) -> np.ndarray:
    """Distances computed the plain way, as an oracle: Euclidean, or 1 − inner product."""
    if metric == "l2":
        return np.sqrt(((vectors.astype(np.float64) - query) ** 2).sum(axis=1))
    return 1.0 - vectors.astype(np.float64) @ query


def clustered(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    """Unit vectors in clusters spanning a low-dimensional subspace."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, 8))
    basis = rng.normal(size=(8, dim))
    points = (centres[rng.integers(0, 20, n)] + 0.3 * rng.normal(size=(n, 8))) @ basis
    points += 0.05 * rng.normal(size=points.shape)
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def test_the_kind_follows_size_and_memory():
    settings = IndexParams(flat_max_items=1000, memory_budget_gb=1.0)
    assert choose_index(1000, 256, settings).kind == "flat"
    assert choose_index(100_000, 256, settings).factory == "HNSW32"
    big = choose_index(5_000_000, 256, settings)
    assert big.kind == "ivfpq" and big.factory.startswith("IVF") and big.factory.endswith(",PQ32")
    assert choose_index(10, 256, dataclasses.replace(settings, type="hnsw")).kind == "hnsw"


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq"])
def test_each_kind_finds_the_exact_neighbours(kind):
    vectors = clustered(4000)
    settings = IndexParams(type=kind, pq_bytes=8)
    choice = choose_index(len(vectors), vectors.shape[1], settings)
    index = VectorIndex(build_faiss_index(vectors, choice, "inner_product", settings), vectors, kind,
                        "inner_product", settings)
    hits = 0
    for q in range(0, 4000, 100):
        rows, distances = index.search(vectors[q], 10)
        truth = np.argsort(true_distances(vectors[q], vectors, "inner_product"), kind="stable")[:10]
        hits += len(set(rows) & set(truth))
        assert rows[0] == q and np.all(np.diff(distances) >= -1e-6)
    assert hits / 400 >= 0.9


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq"])
@pytest.mark.parametrize("share", [0.002, 0.05, 0.5])
def test_a_filter_still_returns_k_allowed_rows(kind, share):
    vectors = clustered(3000, seed=1)
    settings = IndexParams(type=kind, pq_bytes=8, exact_filter_rows=0)  # force filtering inside faiss
    choice = choose_index(len(vectors), vectors.shape[1], settings)
    index = VectorIndex(build_faiss_index(vectors, choice, "l2", settings), vectors, kind, "l2", settings)
    allowed = np.random.default_rng(2).random(len(vectors)) < share
    rows, distances = index.search(vectors[0], 10, allowed)
    assert len(rows) == min(10, allowed.sum()) and allowed[rows].all()
    truth = np.flatnonzero(allowed)[np.argsort(true_distances(vectors[0], vectors[allowed], "l2"))][: len(rows)]
    assert len(set(rows) & set(truth)) >= 0.8 * len(rows)


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq"])
def test_excluded_rows_never_come_back_and_k_others_do(kind):
    vectors = clustered(3000, seed=3)
    vectors[1:4] = vectors[0]  # a product with four photos, all alike: they are each other's nearest
    settings = IndexParams(type=kind, pq_bytes=8)
    choice = choose_index(len(vectors), vectors.shape[1], settings)
    index = VectorIndex(build_faiss_index(vectors, choice, "l2", settings), vectors, kind, "l2", settings)
    own = np.arange(4)
    rows, distances = index.search(vectors[0], 10, exclude=own)
    assert len(rows) == 10 and not np.isin(rows, own).any() and np.all(np.diff(distances) >= -1e-6)
    masked = np.ones(len(vectors), bool)
    masked[own] = False
    same = len(set(rows) & set(index.search(vectors[0], 10, masked)[0]))  # as if masked out
    assert same == 10 if kind == "flat" else same >= 8                  # (approximate kinds: nearly)
    allowed = np.zeros(len(vectors), bool)
    allowed[:6] = True                                                   # a filter leaving two others
    assert sorted(index.search(vectors[0], 10, allowed, exclude=own)[0]) == [4, 5]


def test_distances_are_euclidean_or_cosine():
    vectors = clustered(50)
    settings = IndexParams(type="flat")
    for metric in ("l2", "inner_product"):
        index = VectorIndex(build_faiss_index(vectors, choose_index(50, 32, settings), metric, settings), vectors,
                            "flat", metric, settings)
        rows, distances = index.search(vectors[3], 5)
        assert np.allclose(distances, true_distances(vectors[3], vectors[rows], metric), atol=1e-4)
