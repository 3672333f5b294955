"""The one exact k-NN: batched search equals brute force, the query left out, ties by row."""
import numpy as np
import pytest

from fashion_search.exact import exact_search


def brute_force(queries, gallery, k, distance, exclude=None):
    if distance == "cosine":
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        gallery = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
        d = 1 - queries @ gallery.T
    elif distance == "dot":
        d = 1 - queries @ gallery.T
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
