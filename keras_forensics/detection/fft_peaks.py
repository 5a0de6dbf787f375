"""The Cardenuto-Mandelli baseline: gradient-boosted trees on the patch FFT peaks of a residual.

Cardenuto, Mandelli et al. (2024, phillipecardenuto/ai-wblots-detector) classify the 45 FFT
peaks of a denoising residual, averaged over the 64x64 patches of an image
(`keras_forensics.ops.fft_peaks`), with gradient boosting; they report a closed-set AUC of 0.99998
and about 0.94 on generators left out of training. Here the trees are scikit-learn's
`HistGradientBoostingClassifier` (the `baselines` extra: `pip install keras_forensics[baselines]`),
fitted by `evaluate detector --fft_peaks` on the training split of the run it evaluates and
scored beside the CNN and the spectral baseline on the same patches.

`FFTPeaksBaseline.detector()` wraps a fitted baseline as an `inference.Detector`, so evaluation
scores it through the same code as the CNN (small patches up-sampled to the patch size first).
"""

from __future__ import annotations

import numpy as np

from keras_forensics.detection.inference import Detector
from keras_forensics.errors import ForensicsError
from keras_forensics.ops import fft_peaks


def _classifier_class():
    try:
        from sklearn.ensemble import HistGradientBoostingClassifier
    except ImportError as error:  # an optional dependency: say how to get it
        raise ForensicsError("the FFT-peaks baseline needs scikit-learn: pip install scikit-learn "
                             "(or keras_forensics[baselines])") from error
    return HistGradientBoostingClassifier


class FFTPeaksBaseline:
    """p_fake of [N, S, S, 1] patches from gradient-boosted trees on their patch FFT peaks.

    Args:
        patch_size: S, the side of the patches it scores; their spectra are averaged over
            non-overlapping `min(S, 64)` px sub-patches (one for the 64 px detector patch).
        max_iter, learning_rate, max_leaf_nodes: the trees (`HistGradientBoostingClassifier`).
        seed: the classifier's random state.

    Example:
        >>> baseline = FFTPeaksBaseline(64).fit(patches, labels)   # [N, 64, 64, 1] in [0, 1], [N]
        >>> p_fake = baseline.predict(other_patches)

    Reference:
        Cardenuto, Mandelli et al., ai-wblots-detector (2024); Mandelli et al., Forensic analysis
        of synthetically generated western blot images, IEEE Access 2022.
    """

    def __init__(self, patch_size: int = 64, max_iter: int = 200, learning_rate: float = 0.1,
                 max_leaf_nodes: int = 31, seed: int = 0):
        self.patch_size = int(patch_size)
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.seed = seed
        self.feature_patch = min(self.patch_size, fft_peaks.PATCH_SIZE)
        self.classifier = None

    def features(self, images, batch_size: int = 512) -> np.ndarray:
        """[N, K] patch FFT peaks of [N, S, S] or [N, S, S, 1] float images, in batches."""
        images = np.asarray(images, np.float32)
        out = [fft_peaks.patch_fft_peaks(images[i:i + batch_size], self.feature_patch).numpy()
               for i in range(0, len(images), batch_size)]
        width = len(fft_peaks.peak_locations(self.feature_patch))
        return np.concatenate(out) if out else np.zeros((0, width), np.float32)

    def fit(self, images, labels) -> "FFTPeaksBaseline":
        """Fit on [N, S, S, 1] float patches and labels [N] (1 = synthetic); classes are weighted
        to balance. Returns self."""
        labels = np.asarray(labels).reshape(-1).astype(int)
        if len(np.unique(labels)) != 2:
            raise ForensicsError("the FFT-peaks baseline needs real (0) and synthetic (1) training patches")
        self.classifier = _classifier_class()(
            max_iter=self.max_iter, learning_rate=self.learning_rate, max_leaf_nodes=self.max_leaf_nodes,
            class_weight="balanced", random_state=self.seed)
        self.classifier.fit(self.features(images), labels)
        return self

    def predict(self, images) -> np.ndarray:
        """p_fake [N] of [N, S, S(, 1)] float patches."""
        if self.classifier is None:
            raise ForensicsError("fit the FFT-peaks baseline before scoring with it")
        features = self.features(images)
        if not len(features):
            return np.zeros(0, np.float32)
        return self.classifier.predict_proba(features)[:, 1].astype(np.float32)

    def detector(self, name: str = "fft_peaks") -> Detector:
        """This fitted baseline as an `inference.Detector` (patch input S x S x 1)."""
        return Detector(self.predict, self.patch_size, name)


def fit_baseline(real: np.ndarray, fake: np.ndarray, patch_size: int, augmenter=None, seed: int = 0,
                 **options) -> FFTPeaksBaseline:
    """An `FFTPeaksBaseline` fitted on uint8 patches real [N, S, S] (label 0) and fake [M, S, S]
    (label 1), plus, with `augmenter` (a `data.augment.RobustnessAugmenter`), one augmented copy of
    each: the training patches the CNN of a run saw, as they are and as its augmentation makes them."""
    import tensorflow as tf

    images = np.concatenate([real, fake]).astype(np.float32)[..., None] / 255.0
    labels = np.r_[np.zeros(len(real)), np.ones(len(fake))]
    if augmenter is not None:
        augmented = [augmenter(images[i:i + 512], tf.constant([seed, i], tf.int64)).numpy()
                     for i in range(0, len(images), 512)]
        images = np.concatenate([images, *augmented])
        labels = np.r_[labels, labels]
    return FFTPeaksBaseline(patch_size, seed=seed, **options).fit(images, labels)
