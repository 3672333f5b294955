"""Metrics against values computed by hand."""
import numpy as np
import pytest

from fashion_search import metrics

# Query A: hits at ranks 1 and 3 of 4; 3 relevant items exist in the gallery.
# Query B: one hit at rank 2; 1 relevant item exists.
# Query C: no hit in the top 4; 2 relevant items exist.
HITS = np.array([[1, 0, 1, 0],
                 [0, 1, 0, 0],
                 [0, 0, 0, 0]], bool)
N_RELEVANT = np.array([3, 1, 2])


def test_precision_at_k():
    # P@1: (1 + 0 + 0) / 3; P@4: (2/4 + 1/4 + 0) / 3
    assert metrics.precision_at_k(HITS, 1) == pytest.approx(1 / 3)
    assert metrics.precision_at_k(HITS, 4) == pytest.approx((0.5 + 0.25) / 3)


def test_recall_at_k_is_the_hit_rate():
    assert metrics.recall_at_k(HITS, 1) == pytest.approx(1 / 3)
    assert metrics.recall_at_k(HITS, 2) == pytest.approx(2 / 3)


def test_report_map_averages_precision_over_hit_ranks():
    # A: P@1 = 1, P@3 = 2/3 -> (1 + 2/3) / 2 = 5/6;  B: P@2 = 1/2;  C: 0
    per_query = metrics.average_precision_report_per_query(HITS, 4)
    assert per_query == pytest.approx([5 / 6, 1 / 2, 0])
    assert metrics.map_at_k_report(HITS, 4) == pytest.approx((5 / 6 + 1 / 2) / 3)
    # at k = 1 only A's first hit counts
    assert metrics.map_at_k_report(HITS, 1) == pytest.approx(1 / 3)


def test_standard_map_divides_by_min_k_and_relevant_count():
    # A: (1 + 2/3) / min(4, 3) = 5/9;  B: (1/2) / min(4, 1) = 1/2;  C: 0 / 2 = 0
    per_query = metrics.average_precision_per_query(HITS, N_RELEVANT, 4)
    assert per_query == pytest.approx([5 / 9, 1 / 2, 0])
    assert metrics.map_at_k(HITS, N_RELEVANT, 4) == pytest.approx((5 / 9 + 1 / 2) / 3)
    # k = 2: A: 1 / min(2, 3) = 1/2; B: (1/2) / 1; C: 0
    assert metrics.map_at_k(HITS, N_RELEVANT, 2) == pytest.approx((1 / 2 + 1 / 2) / 3)


def test_definitions_differ_when_relevant_items_are_missed():
    # One hit at rank 1 out of 5 relevant: the report counts it perfect, the standard does not.
    hits = np.array([[1, 0, 0, 0, 0]], bool)
    assert metrics.map_at_k_report(hits, 5) == pytest.approx(1.0)
    assert metrics.map_at_k(hits, np.array([5]), 5) == pytest.approx(1 / 5)


def test_relevance_compares_labels_of_ranked_items():
    ranked = np.array([[2, 0], [1, 2]])
    hits = metrics.relevance(np.array(["a", "b"]), np.array(["a", "b", "a"]), ranked)
    assert hits.tolist() == [[True, True], [True, False]]


def test_k_out_of_range_is_refused():
    with pytest.raises(ValueError):
        metrics.precision_at_k(HITS, 5)
    with pytest.raises(ValueError):
        metrics.map_at_k_report(HITS, 0)


def test_bootstrap_interval_holds_the_mean_and_narrows_with_more_queries():
    from fashion_search.metrics import mean_interval

    rng = np.random.default_rng(1)
    few, many = rng.uniform(0, 1, 50), rng.uniform(0, 1, 5000)
    low, high = mean_interval(few)
    assert low < few.mean() < high
    many_low, many_high = mean_interval(many)
    assert many_high - many_low < (high - low) / 5  # width ~ 1/sqrt(n)
    assert mean_interval(np.full(30, 0.25)) == (0.25, 0.25)
    assert mean_interval(few) == mean_interval(few)  # seeded: the same report twice
