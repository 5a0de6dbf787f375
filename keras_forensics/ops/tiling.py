"""THE patch grid, written once, and the detector's rule for aggregating patch scores.

A grid cuts `patch_size` squares every `stride` pixels, the last row and column anchored to the
far edges, so every pixel is covered and no patch hangs over the border. Training data
(keras_forensics.data.patches, data.blots), the `detect` command (detection.inference) and the
detector's `classify_bytes` serving signature (serving.modules) all cut their patches here, so
the CLI and TF-Serving score an image on the same patches.

`aggregate_patch_scores` is the detector's one rule for turning patch scores into an image's
verdict: patches flatter than `FLAT_PATCH_STD` (empty or saturated background, which carry no
trace to judge and are left out of training) are ignored unless every patch is that flat; the
image's p_fake is the mean, p_fake_max_patch the maximum, of the remaining patch scores. The same
TF ops run eagerly in the CLI and in the graph of the exported SavedModel;
`aggregate_image_scores` is the same rule for a batch of images at once (segment ops), which
`detect` uses when it scores patches of many images in one model call.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

#: Patches flatter than this (std of [0, 1] pixels) are not judged: training drops them too
#: (the default `min_std` of `data.patches.image_patches`).
FLAT_PATCH_STD = 0.02


def default_stride(patch_size: int) -> int:
    """The detector's default stride: a quarter patch."""
    return max(1, patch_size // 4)


def grid_starts(length, patch_size: int, stride: int):
    """Start positions along one side (an int32 tensor): every `stride`, plus the last patch
    touching the far edge. `length` >= `patch_size`; works eagerly and in a graph."""
    last = tf.cast(length, tf.int32) - patch_size
    return tf.unique(tf.concat([tf.range(0, last + 1, stride), [last]], axis=0)).y


def patch_corners(height: int, width: int, patch_size: int, stride: int) -> np.ndarray:
    """[K, 2] (row, column) of every patch of the grid on a `height` x `width` image, rows first."""
    rows = grid_starts(height, patch_size, stride).numpy()
    cols = grid_starts(width, patch_size, stride).numpy()
    rows, cols = np.meshgrid(rows, cols, indexing="ij")
    return np.stack([rows.ravel(), cols.ravel()], axis=1).astype(np.int64)


def upsample_to_fit(image, patch_size: int):
    """[H, W, C] -> the same, up-sampled (bilinear) so that its shorter side is exactly a patch
    when it is below one (the longer side keeps the aspect ratio, rounded up); larger images are
    returned unchanged. In-graph."""
    image = tf.convert_to_tensor(image, tf.float32)
    height, width = tf.shape(image, tf.int64)[0], tf.shape(image, tf.int64)[1]
    shorter = tf.minimum(height, width)

    def upsample():
        factor = patch_size / tf.cast(shorter, tf.float64)
        new_height = tf.math.ceil(tf.cast(height, tf.float64) * factor - 1e-6)
        new_width = tf.math.ceil(tf.cast(width, tf.float64) * factor - 1e-6)
        shape = tf.cast(tf.maximum(tf.stack([new_height, new_width]), float(patch_size)), tf.int32)
        return tf.image.resize(image, shape, method="bilinear")

    return tf.cond(shorter < patch_size, upsample, lambda: image)


def tile_patches(image, patch_size: int, stride: int | None = None):
    """[H, W, C] -> [N, patch_size, patch_size, C]: the grid's patches, rows first, in-graph.

    The image is first fitted with `upsample_to_fit`; `stride` defaults to a quarter patch.
    """
    stride = int(stride or default_stride(patch_size))
    image = upsample_to_fit(image, patch_size)
    height, width, channels = tf.shape(image)[0], tf.shape(image)[1], tf.shape(image)[2]
    span = tf.range(patch_size)
    rows = grid_starts(height, patch_size, stride)[:, None] + span[None, :]  # [ny, P]
    cols = grid_starts(width, patch_size, stride)[:, None] + span[None, :]  # [nx, P]
    patches = tf.gather(tf.gather(image, rows), cols, axis=2)  # [ny, P, nx, P, C]
    patches = tf.transpose(patches, [0, 2, 1, 3, 4])
    return tf.reshape(patches, [-1, patch_size, patch_size, channels])


def informative_patches(patches, min_std: float = FLAT_PATCH_STD):
    """[N] bool: the patches ([N, S, S] or [N, S, S, C]) textured enough to be judged; all of
    them when every one is flat."""
    patches = tf.convert_to_tensor(patches, tf.float32)
    spread = tf.math.reduce_std(tf.reshape(patches, [tf.shape(patches)[0], -1]), axis=1)
    keep = spread >= min_std
    return tf.cond(tf.reduce_any(keep), lambda: keep, lambda: tf.ones_like(keep))


def aggregate_patch_scores(scores, informative):
    """(p_fake, p_fake_max_patch): the mean and the maximum of the informative patches' [N] scores."""
    judged = tf.boolean_mask(tf.cast(scores, tf.float32), informative)
    return tf.reduce_mean(judged), tf.reduce_max(judged)


def aggregate_image_scores(scores, informative, image_ids, num_images):
    """`aggregate_patch_scores` of many images at once: [N] patch scores, [N] informative flags
    and [N] int32 image ids (0 <= id < num_images, every image with at least one informative
    patch, as `informative_patches` guarantees) -> (p_fake [num_images], p_fake_max_patch
    [num_images]). The same rule, as segment ops: one call per batch of images, not per image."""
    scores = tf.cast(scores, tf.float32)
    informative = tf.cast(informative, tf.bool)
    judged = tf.boolean_mask(scores, informative)
    ids = tf.boolean_mask(tf.cast(image_ids, tf.int32), informative)
    total = tf.math.unsorted_segment_sum(judged, ids, num_images)
    count = tf.math.unsorted_segment_sum(tf.ones_like(judged), ids, num_images)
    return total / count, tf.math.unsorted_segment_max(judged, ids, num_images)
