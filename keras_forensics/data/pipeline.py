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


# ---------------------------------------------------------------------------------------------
# view pairs for the copy-detection descriptor (InfoNCE over in-batch negatives)


def sample_with_siblings(sampler: GroupSampler, batch_size: int, sibling_fraction: float, seed):
    """`batch_size` patch indices: the first ones uniform without replacement, the last
    `round(sibling_fraction * batch_size)` each another patch of the same group as one of the first
    (a hard negative: another crop or channel of the same field), or a random patch when that
    group has a single patch. A sibling can repeat an index drawn before; the loss treats views of
    one patch as neither positive nor negative (the batch carries the indices as "ids")."""
    seeds = split_seed(seed, 3)
    siblings = int(round(sibling_fraction * batch_size))
    first = batch_size - siblings
    chosen = tf.random.experimental.index_shuffle(tf.range(first, dtype=tf.int64), seeds[0],
                                                  sampler.num_patches - 1)
    chosen = tf.cast(chosen, tf.int32)
    partner = chosen[:siblings]
    group = tf.gather(sampler.group_of_patch, partner)
    count = tf.gather(sampler.counts, group)
    start = tf.gather(sampler.starts, group)
    offset = partner - start
    step = tf.random.stateless_uniform([siblings], seeds[1], 1, tf.int32.max, tf.int32) % tf.maximum(count - 1, 1) + 1
    sibling = start + (offset + step) % count
    lone = tf.random.stateless_uniform([siblings], seeds[2], 0, sampler.num_patches, tf.int32)
    sibling = tf.where(count > 1, sibling, lone)
    return tf.concat([chosen, sibling], axis=0)


def view_pair_dataset(patchset: PatchSet, augmenter, batch_size: int = 64, sibling_fraction: float = 0.25,
                      seed: int = 0, start_step: int = 0, num_steps: int | None = None) -> tf.data.Dataset:
    """An endless (or `num_steps` long) dataset of {"views": [2 B, crop, crop, 1], "ids": [2 B]}:
    rows i and B + i are two views of patch i (`augmenter.orient(patches, seed)` once, then
    `augmenter(both, seed)`: a `CopyAugmenter`); "ids" are the patch indices, equal for views of
    one patch.

    Batch k depends only on (seed, k), so a resumed run continues the same stream.
    """
    sampler = GroupSampler(patchset)
    if sampler.num_patches < batch_size:
        raise ForensicsError(f"a batch of {batch_size} distinct patches needs at least that many patches "
                             f"(got {sampler.num_patches}); add images or lower --batch_size")

    def make_batch(step):
        seeds = split_seed(tf.stack([tf.constant(seed, tf.int64), step]), 3)
        index = sample_with_siblings(sampler, batch_size, sibling_fraction, seeds[0])
        patches = sampler.gather(index)
        patches = augmenter.orient(patches, seeds[2])  # one orientation per patch, shared by its views
        # one augmentation call for both views: the recipe is drawn per image
        return {"views": augmenter(tf.concat([patches, patches], axis=0), seeds[1]),
                "ids": tf.concat([index, index], axis=0)}

    steps = tf.data.Dataset.counter(start_step, dtype=tf.int64)
    if num_steps is not None:
        steps = steps.take(num_steps)
    return steps.map(make_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(
        tf.data.AUTOTUNE)


def fixed_view_pairs(patchset: PatchSet, augmenter, count: int = 512, seed: int = 0,
                     batch_size: int = 128, sibling_fraction: float = 0.25) -> dict[str, np.ndarray]:
    """A fixed set of view pairs for validation and test: {"views": [2, count', S, S, 1] (first
    views, second views), "ids": [count'] (patch indices: equal ids show the same patch)};
    count' = count rounded down to whole batches (at least one)."""
    batch_size = min(batch_size, count, len(patchset))
    steps = max(1, count // batch_size)
    firsts, seconds, ids = [], [], []
    for batch in view_pair_dataset(patchset, augmenter, batch_size, sibling_fraction, seed, num_steps=steps):
        first, second = np.split(batch["views"].numpy(), 2)
        firsts.append(first)
        seconds.append(second)
        ids.append(batch["ids"].numpy()[:batch_size].astype(np.int64))
    return {"views": np.stack([np.concatenate(firsts), np.concatenate(seconds)]), "ids": np.concatenate(ids)}
