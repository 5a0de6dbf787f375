"""The detector's robustness augmentations, as batched, seeded TensorFlow ops.

Wang, Wang, Zhang, Owens, Efros (CVPR 2020) showed that a real/fake classifier trained with
random blur and JPEG re-compression generalises to generators and post-processing it never saw;
Mandelli et al. (IEEE Access 2022) found the same for synthetic western blots. Here, per image of
a batch [B, S, S, 1]: flips, polarity inversion, rescaling by a factor in [0.5, 1.5] (a random
crop enlarged back to S, or a down-sampling up-sampled back to S as inference does for small
images), Gaussian blur, then JPEG at quality 30-100. Every step works on the whole batch (or
the images drawn for it, through `deformations.on_subset`), so the code runs on a GPU unchanged,
and randomness is stateless: the same [2] seed gives the same batch.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from keras_forensics.config import RobustnessConfig
from keras_forensics.data.deformations import jpeg, on_subset, split_seed


def _bernoulli(seed, batch, probability):
    return tf.random.stateless_uniform([batch], seed) < probability


def flip(images, left_right, up_down):
    """Mirror the images where the [B] booleans say so."""
    images = tf.where(left_right[:, None, None, None], tf.reverse(images, [2]), images)
    return tf.where(up_down[:, None, None, None], tf.reverse(images, [1]), images)


def zoom(images, scales, offsets):
    """Crop a window of 1/scale of each side (scale >= 1, per image) at `offsets` in [0, 1]^2
    ([B, 2], fraction of the free room) and enlarge it back to the full size (bilinear).

    Scale 1 is the identity: `crop_and_resize` then samples exactly the pixel centres.
    """
    size = tf.shape(images)[1:3]
    extent = 1.0 / scales
    y1 = offsets[:, 0] * (1.0 - extent)
    x1 = offsets[:, 1] * (1.0 - extent)
    boxes = tf.stack([y1, x1, y1 + extent, x1 + extent], axis=1)
    index = tf.range(tf.shape(images)[0])
    return tf.image.crop_and_resize(images, boxes, index, size, method="bilinear")


def down_up(images, size: int):
    """Down-sample to `size` (antialiased) and back up to the original size (bilinear): what a
    0.5x-resized image looks like to the detector, which up-samples small images (inference.py)."""
    full = tf.shape(images)[1:3]
    small = tf.image.resize(images, (size, size), method="bilinear", antialias=True)
    return tf.image.resize(small, full, method="bilinear")


def gaussian_blur(images, sigmas, max_sigma: float):
    """Blur each image with its own Gaussian `sigmas` ([B], pixels; 0 = unchanged), separably.

    The batch is folded into the channel axis so one depthwise convolution blurs every image with
    its own kernel. Borders are reflected.
    """
    radius = max(1, int(math.ceil(3.0 * max_sigma)))
    taps = tf.range(-radius, radius + 1, dtype=tf.float32)
    sigmas = tf.maximum(tf.cast(sigmas, tf.float32), 1e-3)[:, None]
    kernels = tf.exp(-0.5 * (taps[None, :] / sigmas) ** 2)
    kernels = kernels / tf.reduce_sum(kernels, axis=1, keepdims=True)  # [B, taps]

    def blur():
        stacked = tf.transpose(images, [3, 1, 2, 0])  # [1, H, W, B]
        stacked = tf.pad(stacked, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
        vertical = tf.transpose(kernels)[:, None, :, None]  # [taps, 1, B, 1]
        horizontal = tf.transpose(kernels)[None, :, :, None]  # [1, taps, B, 1]
        stacked = tf.nn.depthwise_conv2d(stacked, vertical, [1, 1, 1, 1], "VALID")
        stacked = tf.nn.depthwise_conv2d(stacked, horizontal, [1, 1, 1, 1], "VALID")
        return tf.transpose(stacked, [3, 1, 2, 0])

    # MirrorPad rejects an empty batch (no image drawn for blurring).
    return tf.cond(tf.shape(images)[0] > 0, blur, lambda: images)


class RobustnessAugmenter:
    """`augmenter(images, seed)`: the random augmentations of `RobustnessConfig` on [B, S, S, 1].

    Args:
        config: probabilities and ranges.
        patch_size: S; the down-sampling sizes are quantised to `size_step` pixels so that each
            size is one batched resize.

    Example:
        >>> augment = RobustnessAugmenter(RobustnessConfig(), 64)
        >>> out = augment(tf.random.uniform([8, 64, 64, 1]), seed=tf.constant([0, 1]))
    """

    def __init__(self, config: RobustnessConfig | None = None, patch_size: int = 64, size_step: int = 4):
        self.config = config or RobustnessConfig()
        self.patch_size = patch_size
        low = self.config.scale_range[0]
        self.down_sizes = sorted({int(s) for s in np.arange(round(patch_size * low), patch_size, size_step)
                                  if s >= 4})

    def __call__(self, images, seed):
        config = self.config
        images = tf.convert_to_tensor(images, tf.float32)
        batch = tf.shape(images)[0]
        seeds = split_seed(seed, 12)
        images = flip(images, _bernoulli(seeds[0], batch, config.p_flip), _bernoulli(seeds[1], batch, config.p_flip))
        invert = _bernoulli(seeds[2], batch, config.p_invert)
        images = tf.where(invert[:, None, None, None], 1.0 - images, images)

        resize = _bernoulli(seeds[3], batch, config.p_resize)
        low, high = config.scale_range
        # Log-uniform, so that halving and doubling are equally likely.
        scale = tf.exp(tf.random.stateless_uniform([batch], seeds[4], math.log(low), math.log(high)))
        scale = tf.where(resize, scale, 1.0)
        if high > 1.0:
            offsets = tf.random.stateless_uniform([batch, 2], seeds[5])
            images = zoom(images, tf.maximum(scale, 1.0), offsets)
        if self.down_sizes:
            target = tf.cast(tf.round(scale * self.patch_size), tf.int32)
            for size in self.down_sizes:
                # Each quantised size collects the targets up to the next one.
                chosen = resize & (target >= size) & (target < size + self._step(size))
                images = on_subset(images, chosen, lambda x, s=size: down_up(x, s))

        blur = _bernoulli(seeds[6], batch, config.p_blur)
        sigma_low, sigma_high = config.blur_sigma_range
        if sigma_high > 0:
            sigmas = tf.random.stateless_uniform([batch], seeds[7], sigma_low, sigma_high)
            images = on_subset(images, blur, lambda x, s: gaussian_blur(x, s, sigma_high), sigmas)

        use_jpeg = _bernoulli(seeds[8], batch, config.p_jpeg)
        quality = tf.random.stateless_uniform([batch], seeds[9], config.jpeg_quality_range[0],
                                              config.jpeg_quality_range[1] + 1, tf.int32)
        images = jpeg(tf.clip_by_value(images, 0.0, 1.0), quality, use_jpeg)
        return tf.clip_by_value(images, 0.0, 1.0)

    def _step(self, size: int) -> int:
        index = self.down_sizes.index(size)
        upper = self.down_sizes[index + 1] if index + 1 < len(self.down_sizes) else self.patch_size
        return upper - size
