"""Ranking metrics in NumPy (no scikit-learn dependency): ROC, AUC, average precision, bootstrap CI.

Conventions follow scikit-learn's: `scores` are higher for the positive class, ties are handled
by grouping equal scores, AP is the step-wise area under the precision-recall curve.
"""

from __future__ import annotations

import numpy as np


def _sorted_counts(labels, scores):
    labels = np.asarray(labels, bool).ravel()
    scores = np.asarray(scores, np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"labels and scores differ in length: {labels.shape} vs {scores.shape}")
    order = np.argsort(-scores, kind="mergesort")
    labels, scores = labels[order], scores[order]
    # The last index of each run of equal scores: thresholds between distinct scores only.
    distinct = np.flatnonzero(np.diff(scores)) if len(scores) else np.array([], int)
    ends = np.r_[distinct, len(scores) - 1] if len(scores) else distinct
    true_positives = np.cumsum(labels)[ends]
    false_positives = (ends + 1) - true_positives
    return true_positives, false_positives, scores[ends]


def roc_curve(labels, scores):
    """(false positive rate, true positive rate, thresholds), starting at (0, 0)."""
    tp, fp, thresholds = _sorted_counts(labels, scores)
    positives, negatives = (tp[-1], fp[-1]) if len(tp) else (0, 0)
    if not positives or not negatives:
        raise ValueError("ROC needs both positive and negative examples")
    return (np.r_[0.0, fp / negatives], np.r_[0.0, tp / positives], np.r_[np.inf, thresholds])


def roc_auc(labels, scores) -> float:
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.trapezoid(tpr, fpr))


def average_precision(labels, scores) -> float:
    """Sum over thresholds of (recall step) x precision, as sklearn's average_precision_score."""
    tp, fp, _ = _sorted_counts(labels, scores)
    if not len(tp) or not tp[-1]:
        raise ValueError("average precision needs at least one positive example")
    precision = tp / (tp + fp)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def equal_error_threshold(labels, scores) -> float:
    """The threshold where the false positive rate equals the false negative rate (nearest point)."""
    fpr, tpr, thresholds = roc_curve(labels, scores)
    index = int(np.argmin(np.abs(fpr - (1 - tpr))[1:])) + 1
    return float(thresholds[index])


def bootstrap_ci(metric, labels, scores, num_samples: int = 1000, confidence: float = 0.95, seed: int = 0):
    """Percentile bootstrap interval of `metric(labels, scores)`, resampling examples with
    replacement; resamples lacking a class are redrawn."""
    labels, scores = np.asarray(labels), np.asarray(scores)
    rng = np.random.default_rng(seed)
    values = []
    while len(values) < num_samples:
        index = rng.integers(0, len(labels), len(labels))
        sample = labels[index]
        if sample.all() or not sample.any():
            continue
        values.append(metric(sample, scores[index]))
    tail = (1 - confidence) / 2 * 100
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))
