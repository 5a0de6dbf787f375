"""ROC and precision-recall analysis of a binary detector, with bootstrap confidence intervals.

Label 1 is "synthetic" (positive), 0 is "real"; higher scores mean more likely synthetic. Wang et
al. 2022 (Patterns) report their detector as ROC AUC with a 95% confidence interval (0.8542,
0.8379-0.8705); `summary` gives the same figures plus average precision and the accuracy at 0.5
and at the equal-error threshold. NumPy only, vectorised (the bootstrap ranks every replicate at
once).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from keras_forensics.errors import ForensicsError


def _check(labels, scores):
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, np.float64).ravel()
    if labels.shape != scores.shape:
        raise ForensicsError(f"{len(labels)} labels but {len(scores)} scores")
    if labels.all() or not labels.any():
        raise ForensicsError("ROC analysis needs both real (0) and synthetic (1) examples")
    return labels, scores


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve = P(score of a random fake > score of a random real), ties count
    half (the Mann-Whitney U statistic)."""
    labels, scores = _check(labels, scores)
    return float(_auc_from_ranks(rankdata(scores)[None], labels[None])[0])


def _auc_from_ranks(ranks, labels):
    """Row-wise AUC of [R, N] ranks with [R, N] boolean labels."""
    positives = labels.sum(axis=1)
    negatives = labels.shape[1] - positives
    rank_sum = np.where(labels, ranks, 0.0).sum(axis=1)
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def roc_curve(labels, scores):
    """(false positive rate, true positive rate, thresholds), thresholds decreasing; a sample is
    called synthetic when its score >= threshold. Starts at (0, 0) with threshold +inf."""
    labels, scores = _check(labels, scores)
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    distinct = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tps = np.cumsum(labels)[distinct]
    fps = (distinct + 1) - tps
    return (np.r_[0.0, fps / fps[-1]], np.r_[0.0, tps / tps[-1]], np.r_[np.inf, scores[distinct]])


def precision_recall_curve(labels, scores):
    """(precision, recall, thresholds) at every distinct threshold, recall increasing."""
    labels, scores = _check(labels, scores)
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    distinct = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tps = np.cumsum(labels)[distinct]
    precision = tps / (distinct + 1)
    recall = tps / labels.sum()
    return precision, recall, scores[distinct]


def average_precision(labels, scores) -> float:
    """Sum over thresholds of (recall step) x precision: the step-wise area under the PR curve
    (no interpolation, as scikit-learn's average_precision_score)."""
    precision, recall, _ = precision_recall_curve(labels, scores)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def equal_error(labels, scores) -> tuple[float, float]:
    """(equal error rate, its threshold): where the false positive rate meets the miss rate."""
    fpr, tpr, thresholds = roc_curve(labels, scores)
    miss = 1.0 - tpr
    index = int(np.argmin(np.abs(fpr - miss)))
    if not np.isfinite(thresholds[index]):  # the (0, 0) corner: its threshold is +inf
        index = min(index + 1, len(thresholds) - 1)
    threshold = thresholds[index]
    return float((fpr[index] + miss[index]) / 2.0), float(threshold)


def bootstrap_auc(labels, scores, num_resamples: int = 1000, level: float = 0.95, seed: int = 0,
                  chunk: int = 200) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the ROC AUC.

    Reals and fakes are resampled separately (a stratified bootstrap keeps both classes in every
    replicate, with their original counts), `num_resamples` times with a fixed `seed`.
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
    """Every figure of one evaluation row, JSON-ready."""
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
