"""Ranking metrics against hand-computed values."""

import numpy as np
import pytest

from keras_forensics import metrics


def test_perfect_and_inverted_rankings():
    labels = [1, 1, 0, 0]
    assert metrics.roc_auc(labels, [4, 3, 2, 1]) == 1.0
    assert metrics.roc_auc(labels, [1, 2, 3, 4]) == 0.0
    assert metrics.average_precision(labels, [4, 3, 2, 1]) == 1.0


def test_hand_computed_values():
    labels = [1, 0, 1, 0]
    scores = [0.9, 0.8, 0.7, 0.1]
    # Pairs (pos, neg): (0.9,0.8) ok, (0.9,0.1) ok, (0.7,0.8) wrong, (0.7,0.1) ok -> 3/4.
    assert metrics.roc_auc(labels, scores) == pytest.approx(0.75)
    # Precision at each positive: 1/1 and 2/3; AP = (1 + 2/3) / 2.
    assert metrics.average_precision(labels, scores) == pytest.approx((1 + 2 / 3) / 2)


def test_ties_count_half():
    assert metrics.roc_auc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)


def test_auc_equals_the_mann_whitney_statistic(rng):
    labels = rng.random(300) < 0.4
    scores = rng.normal(size=300) + labels
    positive, negative = scores[labels], scores[~labels]
    expected = np.mean(positive[:, None] > negative[None, :])
    assert metrics.roc_auc(labels, scores) == pytest.approx(expected, abs=1e-9)


def test_errors_for_one_class():
    with pytest.raises(ValueError):
        metrics.roc_auc([1, 1], [0.2, 0.3])
    with pytest.raises(ValueError):
        metrics.average_precision([0, 0], [0.2, 0.3])


def test_bootstrap_interval_contains_the_estimate_and_narrows(rng):
    def interval(n):
        labels = rng.random(n) < 0.5
        scores = rng.normal(size=n) + labels
        low, high = metrics.bootstrap_ci(metrics.roc_auc, labels, scores, num_samples=300)
        assert low <= metrics.roc_auc(labels, scores) <= high
        return high - low

    assert interval(2000) < interval(100)


def test_equal_error_threshold_separates_separable_scores():
    threshold = metrics.equal_error_threshold([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert 0.2 < threshold <= 0.8
