"""Metrics: `ranking` (ROC, AUC, AP, equal error, bootstrap; NumPy) and `gan_quality` (sliced
Wasserstein distance and spectral distance of generated images; TensorFlow).

The ranking functions are re-exported here: `keras_forensics.metrics.roc_auc(labels, scores)`.
"""

from keras_forensics.metrics.ranking import (MetricError, average_precision, bootstrap_auc, bootstrap_ci,
                                             equal_error, equal_error_threshold, precision_recall_curve,
                                             roc_auc, roc_curve, summary)

__all__ = ["MetricError", "average_precision", "bootstrap_auc", "bootstrap_ci", "equal_error",
           "equal_error_threshold", "precision_recall_curve", "roc_auc", "roc_curve", "summary"]
