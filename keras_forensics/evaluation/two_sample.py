"""The classifier two-sample test: can a fresh classifier tell two sets of images apart?

Train a new, small classifier with the GAN-image detector's architecture
(`models.detector.build_detector`; the same initial weights for every fold) to tell set A (say, held-out real tiles) from set B (generated
ones), on k - 1 folds, score the k-th, for each of the k folds; the mean of the k folds' ROC
AUCs is the figure. 0.5: the classifier cannot tell the sets apart (as for two
samples of one distribution); 1: it always can. Unlike the SWD or a spectral distance, this asks
whatever a CNN can learn to notice, which is how a careful forensic analyst would look.

Folds follow groups where given (the source blot of each real tile: overlapping tiles of one
blot must not sit on both sides of a split, or the classifier recognises the blot rather than
realness), else a seeded random assignment. A few held-out blots are too few to learn "real"
from: `first_extra` (the generator's training tiles) joins set A's side of every fold's training,
so the classifier learns real blots from all the blots there are, and is scored on unseen ones. Training batches hold equally many images of each
set: random `crop_size` crops with random left-right flips; a held-out image is scored by the
mean of its non-overlapping `crop_size` crops. The classifier keeps pixel normalisation off by
default, so a global brightness or contrast difference counts as a difference.

References:
    Lopez-Paz, Oquab. Revisiting classifier two-sample tests. ICLR 2017.
    Friedman. On multivariate goodness-of-fit and two-sample testing. 2003.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from keras_forensics.config import DetectorConfig
from keras_forensics.errors import ForensicsError
from keras_forensics.metrics.ranking import roc_auc
from keras_forensics.models.detector import build_detector

#: The test's classifier: the detector's architecture, narrower, pixel normalisation off.
CLASSIFIER = DetectorConfig(input_size=64, filters=(8, 16, 32, 64), pixel_normalization=False, dropout=0.2)


@dataclasses.dataclass(frozen=True)
class TwoSampleOptions:
    """How the two-sample classifier is trained: `folds` cross-validation folds, `steps` Adam
    steps of `batch_size` images (half from each set) per fold at `learning_rate`, on random
    `crop_size` crops (0 = the whole image), with `classifier`'s architecture."""

    folds: int = 3
    steps: int = 300
    batch_size: int = 32
    crop_size: int = 64
    learning_rate: float = 1e-3
    classifier: DetectorConfig = CLASSIFIER

    def __post_init__(self):
        if self.folds < 2:
            raise ForensicsError(f"--folds must be at least 2, got {self.folds}")
        if self.steps < 1 or self.batch_size < 2 or self.crop_size < 0 or self.learning_rate <= 0:
            raise ForensicsError("--two_sample_steps must be >= 1, the batch >= 2, the crop size >= 0 and the "
                                 "learning rate > 0")


def fold_assignment(count: int, folds: int, groups=None, seed: int = 0) -> tuple[np.ndarray, str]:
    """(fold of each of `count` items, "group" or "random").

    With `groups` naming at least `folds` distinct groups, whole groups go to folds, the largest
    first, each to the fold with the fewest items so far (ties in a seeded random order);
    otherwise items are dealt to folds in a seeded random order."""
    rng = np.random.default_rng(seed)
    if groups is not None:
        groups = np.asarray(groups)
        if len(groups) != count:
            raise ForensicsError(f"{len(groups)} group labels for {count} images")
        names, sizes = np.unique(groups, return_counts=True)
        if len(names) >= folds:
            order = sorted(range(len(names)), key=lambda i: (-sizes[i], rng.random()))
            totals, fold_of_group = np.zeros(folds, int), {}
            for index in order:
                fold = int(np.argmin(totals))
                fold_of_group[names[index]] = fold
                totals[fold] += sizes[index]
            return np.array([fold_of_group[g] for g in groups]), "group"
    return rng.permutation(count) % folds, "random"


def _unit_images(images) -> np.ndarray:
    images = np.asarray(images, np.float32)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ForensicsError(f"expected images [N, H, W(, C)], got shape {images.shape}")
    if images.shape[-1] == 3:  # the detector reads grayscale
        images = images @ np.array([0.299, 0.587, 0.114], np.float32)[:, None]
    return images


def _crops(images: np.ndarray, crop: int) -> np.ndarray:
    """[N, S, S, 1] -> [N, (S // crop)^2, crop, crop, 1] non-overlapping crops."""
    count, size = images.shape[0], images.shape[1]
    per_side = size // crop
    trimmed = images[:, :per_side * crop, :per_side * crop]
    cells = trimmed.reshape(count, per_side, crop, per_side, crop, 1).transpose(0, 1, 3, 2, 4, 5)
    return cells.reshape(count, per_side * per_side, crop, crop, 1)


def _stored_images(images) -> np.ndarray:
    """Images kept as they are stored (uint8 / uint16 stay integers: a large training set is
    never held as float32 whole), as [N, H, W, 1] grayscale."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim == 4 and images.shape[-1] == 3:
        return _unit_images(images)
    if images.ndim != 4:
        raise ForensicsError(f"expected images [N, H, W(, C)], got shape {images.shape}")
    return images


def _batches(first_parts: list, second: np.ndarray, options: TwoSampleOptions, crop: int, seed: int):
    """An endless tf.data stream of (images [B, crop, crop, 1], labels [B, 1]): half from set A
    (drawn from `first_parts` in proportion to their sizes), half from set B, as random crops
    with random left-right flips, in [0, 1]."""
    half = options.batch_size // 2

    def stream(images, stream_seed):
        scale = 1.0 / np.iinfo(images.dtype).max if np.issubdtype(images.dtype, np.integer) else 1.0
        data = tf.data.Dataset.from_tensor_slices(images).repeat().shuffle(min(len(images), 4096), seed=stream_seed)
        data = tf.data.Dataset.zip(data, tf.data.Dataset.random(seed=stream_seed).batch(2))

        def augment(image, pair_seed):
            pair = tf.stack([pair_seed[0], pair_seed[1]])
            image = tf.image.stateless_random_crop(tf.cast(image, tf.float32) * scale, [crop, crop, 1], pair)
            return tf.image.stateless_random_flip_left_right(image, pair + 1)

        return data.map(augment, num_parallel_calls=tf.data.AUTOTUNE)

    parts = [part for part in first_parts if len(part)]
    streams = [stream(part, seed + 10 * index) for index, part in enumerate(parts)]
    sizes = np.array([len(part) for part in parts], np.float64)
    first = streams[0] if len(streams) == 1 else tf.data.Dataset.sample_from_datasets(
        streams, weights=list(sizes / sizes.sum()), seed=seed)
    zipped = tf.data.Dataset.zip(first.batch(half), stream(second, seed + 1).batch(half))
    labels = tf.concat([tf.zeros([half, 1]), tf.ones([half, 1])], axis=0)
    return zipped.map(lambda a, b: (tf.concat([a, b], 0), labels)).prefetch(2)


class _Classifier:
    """One classifier, compiled once, restarted from the same initial weights (and a zeroed
    optimiser) for every fold: k fresh classifiers at the cost of one graph trace."""

    def __init__(self, options: TwoSampleOptions, crop: int, seed: int):
        keras.utils.set_random_seed(seed)
        self.model = build_detector(dataclasses.replace(options.classifier, input_size=crop),
                                    name="two_sample_classifier")
        self.model.compile(keras.optimizers.Adam(options.learning_rate), keras.losses.BinaryCrossentropy())
        self.initial = self.model.get_weights()
        self.options, self.crop, self.seed = options, crop, seed

    def train_and_score(self, train_first: list, train_second, test_images, fold: int) -> np.ndarray:
        """Train from the initial weights on the two sets (set A given in parts), return the test
        images' mean p over crops."""
        self.model.set_weights(self.initial)
        optimizer = self.model.optimizer
        for variable in optimizer.variables:  # step count and moments; the learning rate stays
            if variable is not optimizer.learning_rate and not variable.path.endswith("learning_rate"):
                variable.assign(keras.ops.zeros_like(variable))
        data = _batches(train_first, train_second, self.options, self.crop, self.seed * 1000 + fold)
        self.model.fit(data, steps_per_epoch=self.options.steps, epochs=1, verbose=0, shuffle=False)
        crops = _crops(test_images, self.crop)
        scores = self.model.predict(crops.reshape((-1,) + crops.shape[2:]), batch_size=128, verbose=0)
        return scores.reshape(crops.shape[:2]).mean(axis=1)


def two_sample_auc(first, second, first_groups=None, second_groups=None, options: TwoSampleOptions | None = None,
                   seed: int = 0, first_extra=None) -> dict:
    """The cross-validated ROC AUC of a fresh classifier telling `first` (label 0) from `second`
    (label 1), images [N, H, W(, C)] in [0, 1] of one size; groups (one label per image, e.g. the
    source blot) keep a group within one fold. `first_extra`, more images of set A (e.g. a
    generator's training tiles, uint8 / uint16 or floats), join set A's training side in every
    fold and are never scored: with few held-out source images, a classifier that learnt set A
    from two blots alone would call the third "B" for being unlike them (measured: fold AUCs of
    0.24, 0.84, 0.87 for saved_models/wgan/1 with the three test blots alone).

    Returns two_sample_auc (the mean of the folds' AUCs), two_sample_auc_folds (each fold's),
    two_sample_auc_pooled (of all out-of-fold scores together, which mixes k classifiers'
    calibrations), two_sample_folds_by ("group" or "random", per set) and the counts."""
    options = options or TwoSampleOptions()
    first, second = _unit_images(first), _unit_images(second)
    extra = _stored_images(first_extra) if first_extra is not None else first[:0]
    if first.shape[1:] != second.shape[1:] or extra.shape[1:] != first.shape[1:]:
        raise ForensicsError(f"the two sets differ in image shape: {first.shape[1:]} vs {second.shape[1:]}"
                             + (f" (extra: {extra.shape[1:]})" if first_extra is not None else ""))
    size = min(first.shape[1], first.shape[2])
    crop = min(options.crop_size or size, size)
    stages = len(options.classifier.filters) - 1
    crop -= crop % (2 ** stages)
    if crop < 16:
        raise ForensicsError(f"images of {size} px are too small for the two-sample classifier (16 px at least)")
    if min(len(first), len(second)) < options.folds:
        raise ForensicsError(f"the two-sample test needs at least {options.folds} images per set "
                             f"(got {len(first)} and {len(second)})")
    folds_first, by_first = fold_assignment(len(first), options.folds, first_groups, seed)
    folds_second, by_second = fold_assignment(len(second), options.folds, second_groups, seed + 1)
    scores_first, scores_second = np.zeros(len(first)), np.zeros(len(second))
    fold_aucs = []
    classifier = _Classifier(options, crop, seed)
    for fold in range(options.folds):
        test_first, test_second = folds_first == fold, folds_second == fold
        if not test_first.any() or not test_second.any() or test_first.all() or test_second.all():
            raise ForensicsError(f"fold {fold} of the two-sample test lacks images of one set")
        scores = classifier.train_and_score([extra, first[~test_first]], second[~test_second],
                                            np.concatenate([first[test_first], second[test_second]]), fold)
        scores_first[test_first] = scores[:test_first.sum()]
        scores_second[test_second] = scores[test_first.sum():]
        labels = np.r_[np.zeros(test_first.sum()), np.ones(test_second.sum())]
        fold_aucs.append(roc_auc(labels, scores))
    labels = np.r_[np.zeros(len(first)), np.ones(len(second))]
    return {"two_sample_auc": float(np.mean(fold_aucs)),
            "two_sample_auc_folds": [round(value, 4) for value in fold_aucs],
            "two_sample_auc_pooled": roc_auc(labels, np.r_[scores_first, scores_second]),
            "two_sample_folds_by": f"{by_first}/{by_second}", "two_sample_images": [len(first), len(second)],
            "two_sample_extra_images": len(extra),
            "two_sample_steps": options.steps, "two_sample_crop": crop}
