"""tf.data pipelines that turn a PatchSet into training batches.

`triplet_dataset` yields the paper's triplets: for each anchor patch, `same` is a random
deformation of it and `different` a random deformation of a patch from *another group* (another
source image or field), so a "different" example never shows the anchor's own field.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_forensics.config import DeformationConfig
from keras_forensics.data.deformations import Deformer, split_seed
from keras_forensics.data.patches import PatchSet
from keras_forensics.errors import ForensicsError

TRIPLET_KEYS = ("anchor", "same", "different")


class GroupSampler:
    """Draws patch indices by group, in TensorFlow, for use inside tf.data.

    Patches are sorted by group once; a group's patches then occupy one contiguous range.
    """

    def __init__(self, patchset: PatchSet):
        if patchset.num_groups < 2:
            raise ForensicsError(
                "triplets need patches from at least 2 different source images "
                f"(got {patchset.num_groups}); add more images"
            )
        order = np.argsort(patchset.groups, kind="stable")
        groups = patchset.groups[order]
        counts = np.bincount(groups, minlength=patchset.num_groups)
        present = np.flatnonzero(counts)
        self.patches = tf.constant(patchset.patches[order][..., None])
        self.starts = tf.constant(np.concatenate([[0], np.cumsum(counts)[:-1]])[present], tf.int32)
        self.counts = tf.constant(counts[present], tf.int32)
        self.group_of_patch = tf.constant(np.searchsorted(present, groups), tf.int32)
        self.num_groups = len(present)
        self.num_patches = len(order)

    def anchors_and_others(self, batch_size: int, seed):
        """Indices of `batch_size` anchors (uniform over patches) and, for each, a patch of
        another group (uniform over the other groups, then over that group's patches)."""
        seeds = split_seed(seed, 3)
        anchor = tf.random.stateless_uniform([batch_size], seeds[0], 0, self.num_patches, tf.int32)
        anchor_group = tf.gather(self.group_of_patch, anchor)
        step = tf.random.stateless_uniform([batch_size], seeds[1], 1, self.num_groups, tf.int32)
        other_group = (anchor_group + step) % self.num_groups
        position = tf.random.stateless_uniform([batch_size], seeds[2])
        count = tf.gather(self.counts, other_group)
        offset = tf.minimum(tf.cast(position * tf.cast(count, tf.float32), tf.int32), count - 1)
        other = tf.gather(self.starts, other_group) + offset
        return anchor, other

    def gather(self, index):
        return tf.cast(tf.gather(self.patches, index), tf.float32) / 255.0


def triplet_dataset(
    patchset: PatchSet,
    config: DeformationConfig | None = None,
    batch_size: int = 64,
    seed: int = 0,
    start_step: int = 0,
    num_steps: int | None = None,
    deformer: Deformer | None = None,
) -> tf.data.Dataset:
    """An endless (or `num_steps` long) dataset of {"anchor", "same", "different"} batches,
    each [batch_size, crop, crop, 1] float32 in [0, 1].

    Batch k depends only on (seed, k): the stream is reproducible, and resuming at `start_step`
    continues exactly where a stopped run left off.
    """
    config = config or DeformationConfig()
    if patchset.patches.shape[1] != config.patch_size:
        raise ForensicsError(
            f"patches are {patchset.patches.shape[1]} px but the deformation config expects "
            f"{config.patch_size} px"
        )
    sampler = GroupSampler(patchset)
    deformer = deformer or Deformer(config, text_seed=seed)

    def make_batch(step):
        batch_seed = tf.stack([tf.constant(seed, tf.int64), step])
        seeds = split_seed(batch_seed, 5)
        anchor_index, other_index = sampler.anchors_and_others(batch_size, seeds[0])
        anchor_patch = sampler.gather(anchor_index)
        # One deformation call for "same" and "different" together: the recipe is per image, and
        # one batch of 2B costs much less than two of B (fewer op launches).
        deformed = deformer(tf.concat([anchor_patch, sampler.gather(other_index)], axis=0), seeds[2])
        return {
            "anchor": deformer.anchor(anchor_patch, seeds[1]),
            "same": deformed[:batch_size],
            "different": deformed[batch_size:],
        }

    steps = tf.data.Dataset.counter(start_step, dtype=tf.int64)
    if num_steps is not None:
        steps = steps.take(num_steps)
    return steps.map(make_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(
        tf.data.AUTOTUNE
    )


def fixed_triplets(patchset: PatchSet, config: DeformationConfig | None = None, count: int = 512,
                   seed: int = 0, batch_size: int = 128) -> dict[str, np.ndarray]:
    """A fixed set of `count` triplets as NumPy arrays (validation and test sets)."""
    dataset = triplet_dataset(patchset, config, batch_size, seed=seed,
                              num_steps=-(-count // batch_size))
    parts = {key: [] for key in TRIPLET_KEYS}
    for batch in dataset:
        for key in TRIPLET_KEYS:
            parts[key].append(batch[key].numpy())
    return {key: np.concatenate(value)[:count] for key, value in parts.items()}
