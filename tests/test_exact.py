"""The one exact k-NN: batched search equals brute force, the query left out, ties by row."""
import numpy as np
import pytest

from fashion_search.exact import NegativeFeaturesError, exact_search, jaccard_refusal


def brute_force(queries, gallery, k, distance, exclude=None):
    if distance == "cosine":
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        gallery = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
        d = 1 - queries @ gallery.T
    elif distance == "dot":
        d = 1 - queries @ gallery.T
    elif distance == "jaccard":  # weighted Jaccard, pair by pair
        d = np.array([[1 - np.minimum(q, g).sum() / np.maximum(q, g).sum() for g in gallery] for q in queries])
    else:
        d = np.linalg.norm(queries[:, None] - gallery[None], axis=2)
    if exclude is not None:
        d[np.arange(len(queries)), exclude] = np.inf
    return np.argsort(d, axis=1, kind="stable")[:, :k], np.sort(d, axis=1)[:, :k]


@pytest.mark.parametrize("distance", ["euclidean", "cosine", "dot"])
def test_batched_search_matches_brute_force(distance):
    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(57, 8)).astype(np.float32)
    queries = rng.normal(size=(23, 8)).astype(np.float32)
    idx, dist = exact_search(queries, gallery, 5, distance, batch_size=7)
    want_idx, want_dist = brute_force(queries, gallery, 5, distance)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_allclose(dist, want_dist, rtol=1e-4, atol=1e-4)


def test_query_is_excluded_from_its_own_results():
    rng = np.random.default_rng(1)
    gallery = rng.normal(size=(30, 4)).astype(np.float32)
    idx, dist = exact_search(gallery, gallery, 29, "euclidean", exclude=np.arange(30), batch_size=8)
    assert idx.shape == (30, 29)
    assert not (idx == np.arange(30)[:, None]).any()
    assert np.isfinite(dist).all()
    assert (np.diff(dist, axis=1) >= 0).all()


def test_k_is_capped_at_the_gallery_size():
    gallery = np.eye(3, dtype=np.float32)
    idx, _ = exact_search(gallery, gallery, 10, exclude=np.arange(3))
    assert idx.shape == (3, 2)


def test_dimension_mismatch_is_an_error():
    with pytest.raises(ValueError, match="dimensions"):
        exact_search(np.zeros((2, 3)), np.zeros((4, 5)), 1)


def test_jaccard_matches_the_weighted_formula_pair_by_pair():
    rng = np.random.default_rng(2)
    gallery = np.maximum(rng.normal(size=(41, 9)), 0).astype(np.float32)  # ReLU-like: many exact zeros
    queries = np.maximum(rng.normal(size=(13, 9)), 0).astype(np.float32) + 0.01
    idx, dist = exact_search(queries, gallery, 6, "jaccard", batch_size=5)
    want_idx, want_dist = brute_force(queries.astype(np.float64), gallery.astype(np.float64), 6, "jaccard")
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_allclose(dist, want_dist, rtol=1e-5, atol=1e-6)


def test_jaccard_values_at_its_bounds_and_its_scale_sensitivity():
    gallery = np.array([[1, 2, 0], [2, 4, 0], [0, 0, 5], [0, 0, 0]], np.float32)
    _, dist = exact_search(np.array([[1, 2, 0]], np.float32), gallery, 4, "jaccard")
    # itself 0; twice as large 1 - 3/6 = 0.5 (unlike cosine, which calls it identical); disjoint 1; zero 1
    np.testing.assert_allclose(dist[0], [0.0, 0.5, 1.0, 1.0], atol=1e-6)
    _, zero = exact_search(np.zeros((1, 3), np.float32), gallery[3:], 1, "jaccard")
    assert zero[0, 0] == 0.0  # two all-zero vectors are the same vector, not a division by zero


def test_jaccard_refuses_negative_features_and_says_what_it_needs():
    embedding = np.random.default_rng(3).normal(size=(20, 4)).astype(np.float32)
    with pytest.raises(NegativeFeaturesError, match="non-negative features.*values are negative"):
        exact_search(np.abs(embedding[:3]), embedding, 2, "jaccard")
    assert "L2-normalised" in jaccard_refusal(embedding)
    assert jaccard_refusal(np.abs(embedding)) is None


def test_an_unknown_distance_names_the_allowed_ones():
    with pytest.raises(ValueError, match="euclidean, cosine, dot, jaccard"):
        exact_search(np.zeros((1, 2)), np.zeros((3, 2)), 1, "manhattan")
