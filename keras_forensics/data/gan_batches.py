"""tf.data pipelines that feed the GANs: random batches of stored patches, augmented in batches.

Batch k depends only on (seed, k), as in `keras_forensics.data.pipeline.triplet_dataset`, so a
resumed run continues the stream exactly where the stopped one left off (`start_step`).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_forensics.data.deformations import split_seed
from keras_forensics.errors import ForensicsError


class PatchSampler:
    """Draws random, augmented batches from [N, S, S] (or [N, S, S, C]) uint8 / uint16 patches.

    Args:
        patches: the stored patches; integers are scaled by their type's maximum to [0, 1].
        crop_size: random crops of this size (default: the whole patch).
        flip: random left-right flips.
    """

    def __init__(self, patches: np.ndarray, crop_size: int | None = None, flip: bool = True):
        if len(patches) == 0:
            raise ForensicsError("no training images")
        if patches.ndim == 3:
            patches = patches[..., None]
        self.scale = 1.0 / np.iinfo(patches.dtype).max if np.issubdtype(patches.dtype, np.integer) else 1.0
        self.patches = tf.constant(patches)
        self.count, self.size = patches.shape[0], patches.shape[1]
        self.crop_size = crop_size or self.size
        if self.crop_size > self.size:
            raise ForensicsError(f"crop size {self.crop_size} exceeds the patch size {self.size}")
        self.flip = flip

    def __call__(self, batch_size: int, seed):
        """[batch_size, crop, crop, C] float32 in [0, 1] for a [2] int64 seed."""
        seeds = split_seed(seed, 3)
        index = tf.random.stateless_uniform([batch_size], seeds[0], 0, self.count, tf.int32)
        images = tf.cast(tf.gather(self.patches, index), tf.float32) * self.scale
        if self.crop_size < self.size:
            # One batched crop: boxes on exact pixel centres make crop_and_resize a pure crop.
            corner = tf.random.stateless_uniform([batch_size, 2], seeds[1], 0, self.size - self.crop_size + 1,
                                                 tf.int32)
            start = tf.cast(corner, tf.float32) / (self.size - 1)
            stop = tf.cast(corner + self.crop_size - 1, tf.float32) / (self.size - 1)
            images = tf.image.crop_and_resize(images, tf.concat([start, stop], axis=1), tf.range(batch_size),
                                              [self.crop_size, self.crop_size], method="nearest")
        if self.flip:
            flipped = tf.random.stateless_uniform([batch_size], seeds[2]) < 0.5
            images = tf.where(flipped[:, None, None, None], images[:, :, ::-1, :], images)
        return images


def _stream(make_batch, seed: int, start_step: int):
    steps = tf.data.Dataset.counter(start_step, dtype=tf.int64)

    def batch_of_step(step):
        return make_batch(tf.stack([tf.constant(seed, tf.int64), step]))

    return steps.map(batch_of_step, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(2)


def critic_batches(patches: np.ndarray, batch_size: int, critic_steps: int, seed: int = 0, start_step: int = 0,
                   flip: bool = True) -> tf.data.Dataset:
    """An endless dataset of [critic_steps, batch_size, S, S, C] real batches: a fresh real batch
    for every critic update of one WGAN step."""
    sampler = PatchSampler(patches, flip=flip)

    def make_batch(seed_pair):
        images = sampler(critic_steps * batch_size, seed_pair)
        return tf.reshape(images, [critic_steps, batch_size, sampler.size, sampler.size, -1])

    return _stream(make_batch, seed, start_step)


def unpaired_batches(patches_a: np.ndarray, patches_b: np.ndarray, batch_size: int, crop_size: int,
                     seed: int = 0, start_step: int = 0, flip: bool = True) -> tf.data.Dataset:
    """An endless dataset of {"a": [B, crop, crop, C], "b": [B, crop, crop, C]}: independent
    random crops (and flips) of the two domains, as CycleGAN trains on unpaired images."""
    sampler_a = PatchSampler(patches_a, crop_size, flip)
    sampler_b = PatchSampler(patches_b, crop_size, flip)

    def make_batch(seed_pair):
        seeds = split_seed(seed_pair, 2)
        return {"a": sampler_a(batch_size, seeds[0]), "b": sampler_b(batch_size, seeds[1])}

    return _stream(make_batch, seed, start_step)
