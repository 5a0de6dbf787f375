"""DiffAugment (Zhao et al. 2020): differentiable augmentations of the critic's input.

A GAN trained on a few thousand images overfits its critic (or discriminator): it memorises the
real images and its feedback to the generator becomes useless. DiffAugment applies one policy of
random augmentations to *both* the real and the generated images before the critic, built from
differentiable ops, so the generator's gradient flows through them: the critic never sees a
clean image, and the generator is not asked to produce augmented ones (augmenting only the reals
would teach it to draw the augmentations).

`diff_augment(images, policy, seed)`, images [B, H, W, C] in [0, 1]; each sample gets its own
random parameters, drawn from `seed` (an int, or a `keras.random.SeedGenerator` inside a model):

* "color": brightness + U(-0.25, 0.25), then for RGB saturation x U(0, 2), then contrast
  x U(0.5, 1.5) about the image mean (the paper's ranges, halved for brightness because these
  images are in [0, 1], not [-1, 1]);
* "translation": an integer shift of up to `translation_fraction` of the side in each direction,
  the uncovered pixels filled with `fill`;
* "cutout": one square of `cutout_fraction` of the side, at a random place (partly outside the
  image at times), filled with `fill`.

`fill` is 0.5 by default, the paper's 0 in [-1, 1].

Reference:
    Zhao, Liu, Lin, Zhu, Han. Differentiable augmentation for data-efficient GAN training.
    NeurIPS 2020 (github.com/mit-han-lab/data-efficient-gans, DiffAugment_tf.py).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_forensics.config.gan import DIFFAUGMENT_OPS
from keras_forensics.errors import ForensicsError

#: The ops of a policy, in the order they are applied (the paper's "color,translation,cutout").
POLICY_OPS = DIFFAUGMENT_OPS


def check_policy(policy) -> tuple[str, ...]:
    """`policy` as a tuple of op names (a comma-separated string is accepted); one clear error
    for an unknown op or a repeated one."""
    if isinstance(policy, str):
        policy = tuple(op.strip() for op in policy.split(",") if op.strip())
    policy = tuple(policy)
    unknown = [op for op in policy if op not in POLICY_OPS]
    if unknown:
        raise ForensicsError(f"--diffaugment takes ops among {', '.join(POLICY_OPS)}, got {unknown[0]!r}")
    if len(set(policy)) != len(policy):
        raise ForensicsError(f"--diffaugment names an op twice: {','.join(policy)}")
    return policy


def _seed_generator(seed):
    if isinstance(seed, keras.random.SeedGenerator):
        return seed
    return keras.random.SeedGenerator(0 if seed is None else int(seed))


def _per_sample(shape, seed, low=0.0, high=1.0):
    return keras.random.uniform(shape, low, high, seed=seed)


def color(images, seed):
    """Brightness, saturation (RGB only) and contrast, each with its own factor per sample."""
    batch = tf.shape(images)[0]
    images = images + _per_sample([batch, 1, 1, 1], seed, -0.25, 0.25)
    if images.shape[-1] == 3:
        mean = tf.reduce_mean(images, axis=3, keepdims=True)
        images = (images - mean) * _per_sample([batch, 1, 1, 1], seed, 0.0, 2.0) + mean
    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    return (images - mean) * _per_sample([batch, 1, 1, 1], seed, 0.5, 1.5) + mean


def _shifts(batch, limit: int, seed):
    """Integers in [-limit, limit], [B]."""
    return tf.cast(tf.floor(_per_sample([batch], seed, 0.0, 1.0) * (2 * limit + 1)), tf.int32) - limit


def translation(images, seed, fraction: float = 0.125, fill: float = 0.5):
    """Each image shifted by up to `fraction` of its side along each axis; what comes in is `fill`.

    A gather along rows then columns of the image padded with `fill`: differentiable in the
    pixel values (the shifts themselves are discrete, as in the paper)."""
    batch, height, width = tf.shape(images)[0], images.shape[1], images.shape[2]
    limit_y, limit_x = int(height * fraction + 0.5), int(width * fraction + 0.5)
    if not limit_y and not limit_x:
        return images
    shift_y, shift_x = _shifts(batch, limit_y, seed), _shifts(batch, limit_x, seed)
    padded = tf.pad(images, [[0, 0], [limit_y, limit_y], [limit_x, limit_x], [0, 0]], constant_values=fill)
    rows = tf.range(height)[None, :] + limit_y - shift_y[:, None]  # [B, H] rows of the padded image
    columns = tf.range(width)[None, :] + limit_x - shift_x[:, None]
    shifted = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(shifted, columns, axis=2, batch_dims=1)


def cutout(images, seed, fraction: float = 0.5, fill: float = 0.5):
    """One `fraction`-of-the-side square per image set to `fill`; its centre is uniform over the
    image (so near a border part of it falls outside, as in the paper)."""
    batch, height, width = tf.shape(images)[0], images.shape[1], images.shape[2]
    size_y, size_x = int(height * fraction + 0.5), int(width * fraction + 0.5)
    centre_y = tf.cast(tf.floor(_per_sample([batch], seed) * (height + 1 - size_y % 2)), tf.int32)
    centre_x = tf.cast(tf.floor(_per_sample([batch], seed) * (width + 1 - size_x % 2)), tf.int32)
    rows = tf.range(height)[None, :] - (centre_y[:, None] - size_y // 2)  # [B, H], inside: [0, size_y)
    columns = tf.range(width)[None, :] - (centre_x[:, None] - size_x // 2)
    inside_rows = (rows >= 0) & (rows < size_y)
    inside_columns = (columns >= 0) & (columns < size_x)
    inside = tf.cast(inside_rows[:, :, None] & inside_columns[:, None, :], images.dtype)[..., None]
    return images * (1.0 - inside) + fill * inside


def diff_augment(images, policy=POLICY_OPS, seed=None, translation_fraction: float = 0.125,
                 cutout_fraction: float = 0.5, fill: float = 0.5):
    """`images` [B, H, W, C] through the ops of `policy` (in POLICY_OPS order); an empty policy
    returns them unchanged. `seed`: an int (the same int, the same augmentation of a batch of the
    same shape) or a `keras.random.SeedGenerator` (a fresh draw every call)."""
    policy = check_policy(policy)
    if not policy:
        return images
    seed = _seed_generator(seed)
    images = tf.convert_to_tensor(images)
    for op in POLICY_OPS:
        if op not in policy:
            continue
        if op == "color":
            images = color(images, seed)
        elif op == "translation":
            images = translation(images, seed, translation_fraction, fill)
        else:
            images = cutout(images, seed, cutout_fraction, fill)
    return images
