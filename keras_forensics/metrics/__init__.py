"""Metrics: `ranking` (ROC, AUC, AP, equal error, bootstrap; NumPy), `gan_quality` (sliced
Wasserstein distance, spectral distance and periodic spectral peaks of generated images;
TensorFlow) and `memorisation` (nearest-training-image distances of generated images against
held-out real ones). The classifier two-sample test trains a model, so it lives in
`keras_forensics.evaluation.two_sample`.

The ranking functions are re-exported here: `keras_forensics.metrics.roc_auc(labels, scores)`.
"""

from keras_forensics.metrics.ranking import (MetricError, average_precision, bootstrap_auc, bootstrap_ci,
                                             equal_error, equal_error_threshold, precision_recall_curve,
                                             roc_auc, roc_curve, summary)

__all__ = ["MetricError", "average_precision", "bootstrap_auc", "bootstrap_ci", "equal_error",
           "equal_error_threshold", "precision_recall_curve", "roc_auc", "roc_curve", "summary"]
