"""Ranking metrics in NumPy, written once: ROC, AUC, precision-recall, average precision, equal
error, bootstrap intervals. The Siamese evaluation, the detector evaluation, the spectrum command
and the screening calibration all score with these.

Conventions follow scikit-learn's: `scores` are higher for the positive class (label 1), ties
are handled by grouping equal scores (one threshold per distinct score), AP is the step-wise area
under the precision-recall curve (no interpolation), and the AUC counts ties half (it equals the
Mann-Whitney U statistic, computed from ranks).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from keras_forensics.errors import ForensicsError


class MetricError(ForensicsError, ValueError):
    """Labels and scores a metric cannot be computed from (lengths differ, a class is missing)."""


def _check(labels, scores, need_both: bool = True):
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, np.float64).ravel()
    if labels.shape != scores.shape:
        raise MetricError(f"{len(labels)} labels but {len(scores)} scores")
    if need_both and (labels.all() or not labels.any()):
        raise MetricError("ROC analysis needs both negative (0) and positive (1) examples")
    return labels, scores


def _sorted_counts(labels, scores):
    """(true positives, false positives, threshold) at each distinct score, thresholds decreasing;
    an example is called positive when its score >= threshold."""
    order = np.argsort(-scores, kind="stable")
    labels, scores = labels[order], scores[order]
    # The last index of each run of equal scores: thresholds between distinct scores only.
    ends = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    true_positives = np.cumsum(labels)[ends]
    return true_positives, (ends + 1) - true_positives, scores[ends]


def roc_curve(labels, scores):
    """(false positive rate, true positive rate, thresholds), thresholds decreasing, starting at
    (0, 0) with threshold +inf."""
    labels, scores = _check(labels, scores)
    tps, fps, thresholds = _sorted_counts(labels, scores)
    return (np.r_[0.0, fps / fps[-1]], np.r_[0.0, tps / tps[-1]], np.r_[np.inf, thresholds])


def _auc_from_ranks(ranks, labels):
    """Row-wise AUC of [R, N] ranks with [R, N] boolean labels."""
    positives = labels.sum(axis=1)
    negatives = labels.shape[1] - positives
    rank_sum = np.where(labels, ranks, 0.0).sum(axis=1)
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve = P(score of a random positive > score of a random negative), ties
    count half (the Mann-Whitney U statistic)."""
    labels, scores = _check(labels, scores)
    return float(_auc_from_ranks(rankdata(scores)[None], labels[None])[0])


def precision_recall_curve(labels, scores):
    """(precision, recall, thresholds) at every distinct threshold, recall increasing."""
    labels, scores = _check(labels, scores, need_both=False)
    if not labels.any():
        raise MetricError("precision and recall need at least one positive example")
    tps, fps, thresholds = _sorted_counts(labels, scores)
    return tps / (tps + fps), tps / tps[-1], thresholds


def average_precision(labels, scores) -> float:
    """Sum over thresholds of (recall step) x precision: the step-wise area under the PR curve
    (as scikit-learn's average_precision_score). A score that cannot separate two examples gets
    no credit for the order it happens to list them in."""
    precision, recall, _ = precision_recall_curve(labels, scores)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def equal_error(labels, scores) -> tuple[float, float]:
    """(equal error rate, its threshold): where the false positive rate meets the miss rate."""
    fpr, tpr, thresholds = roc_curve(labels, scores)
    miss = 1.0 - tpr
    index = int(np.argmin(np.abs(fpr - miss)))
    if not np.isfinite(thresholds[index]):  # the (0, 0) corner: its threshold is +inf
        index = min(index + 1, len(thresholds) - 1)
    return float((fpr[index] + miss[index]) / 2.0), float(thresholds[index])


def equal_error_threshold(labels, scores) -> float:
    """The finite threshold where the false positive rate is nearest the false negative rate."""
    fpr, tpr, thresholds = roc_curve(labels, scores)
    index = int(np.argmin(np.abs(fpr - (1 - tpr))[1:])) + 1
    return float(thresholds[index])


def bootstrap_ci(metric, labels, scores, num_samples: int = 1000, confidence: float = 0.95, seed: int = 0):
    """Percentile bootstrap interval of any `metric(labels, scores)`, resampling examples with
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


def bootstrap_auc(labels, scores, num_resamples: int = 1000, level: float = 0.95, seed: int = 0,
                  chunk: int = 200) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the ROC AUC, vectorised.

    Positives and negatives are resampled separately (a stratified bootstrap keeps both classes
    in every replicate, with their original counts), `num_resamples` times with a fixed `seed`.
    """
    labels, scores = _check(labels, scores)
    rng = np.random.default_rng(seed)
    positive, negative = scores[labels], scores[~labels]
    replicate_labels = np.r_[np.ones(len(positive), bool), np.zeros(len(negative), bool)]
    aucs = []
    for start in range(0, num_resamples, chunk):
        count = min(chunk, num_resamples - start)
        sample = np.concatenate([
            positive[rng.integers(0, len(positive), (count, len(positive)))],
            negative[rng.integers(0, len(negative), (count, len(negative)))],
        ], axis=1)
        aucs.append(_auc_from_ranks(rankdata(sample, axis=1),
                                    np.broadcast_to(replicate_labels, sample.shape)))
    aucs = np.concatenate(aucs)
    tail = (1.0 - level) / 2.0
    return float(np.quantile(aucs, tail)), float(np.quantile(aucs, 1.0 - tail))


def summary(labels, scores, num_resamples: int = 1000, seed: int = 0) -> dict:
    """Every figure of one detector evaluation row (label 1 = fake), JSON-ready."""
    labels, scores = _check(labels, scores)
    low, high = bootstrap_auc(labels, scores, num_resamples, seed=seed)
    eer, threshold = equal_error(labels, scores)
    return {
        "n_real": int((~labels).sum()),
        "n_fake": int(labels.sum()),
        "auc": round(roc_auc(labels, scores), 4),
        "auc_ci95": [round(low, 4), round(high, 4)],
        "average_precision": round(average_precision(labels, scores), 4),
        "accuracy_at_0.5": round(float(np.mean((scores >= 0.5) == labels)), 4),
        "eer": round(eer, 4),
        "eer_threshold": round(threshold, 4),
        "accuracy_at_eer_threshold": round(float(np.mean((scores >= threshold) == labels)), 4),
    }
