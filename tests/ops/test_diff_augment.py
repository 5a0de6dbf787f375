"""DiffAugment: differentiable, one policy for a whole batch with parameters drawn per image."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_forensics.errors import ForensicsError
from keras_forensics.ops.diff_augment import check_policy, color, cutout, diff_augment, translation

FILL = 0.5


def images(count=8, size=16, seed=0):
    """Values in [0, 0.4]: never the fill value 0.5, so filled pixels are easy to find."""
    return (0.4 * np.random.default_rng(seed).random((count, size, size, 1))).astype(np.float32)


def test_an_empty_policy_is_the_identity_and_unknown_ops_are_refused():
    x = images()
    assert diff_augment(x, (), seed=0) is x
    assert check_policy("color, translation,cutout") == ("color", "translation", "cutout")
    with pytest.raises(ForensicsError, match="zoom"):
        diff_augment(x, ("translation", "zoom"), seed=0)
    with pytest.raises(ForensicsError, match="twice"):
        check_policy("cutout,cutout")


def test_translation_shifts_each_image_by_at_most_an_eighth_and_fills_the_rest():
    x = images(count=32)
    out = translation(tf.constant(x), keras.random.SeedGenerator(1)).numpy()
    shifts = []
    for source, shifted in zip(x[..., 0], out[..., 0]):
        # The one shift within +-2 px (1/8 of 16) that reproduces the image where it is not filled.
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                   if np.allclose(np.roll(source, (dy, dx), axis=(0, 1))[shifted != FILL], shifted[shifted != FILL])]
        assert len(matches) == 1
        dy, dx = matches[0]
        assert (shifted == FILL).sum() == 16 * 16 - (16 - abs(dy)) * (16 - abs(dx))
        shifts.append(matches[0])
    assert len(set(shifts)) > 5  # parameters are drawn per image, not once per batch


def test_cutout_fills_one_square_of_half_the_side_per_image():
    out = cutout(tf.constant(images(count=200)), keras.random.SeedGenerator(2)).numpy()[..., 0]
    filled = out == FILL
    for mask in filled:
        rows, columns = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        # One axis-aligned rectangle, at most 8 x 8 (cut by the border near the edges).
        assert mask.sum() == len(rows) * len(columns) and len(rows) <= 8 and len(columns) <= 8
    assert filled.mean() == pytest.approx(0.18, abs=0.03)  # (116 / 17 px per side)^2 / 256: 64 px when inside
    assert filled[:, 0, 0].mean() < filled[:, 8, 8].mean()


def test_color_is_a_per_image_affine_map_within_the_papers_ranges():
    x = images(count=64)
    out = color(tf.constant(x), keras.random.SeedGenerator(3)).numpy()
    gains = []
    for source, changed in zip(x.reshape(64, -1), out.reshape(64, -1)):
        gain, offset = np.polyfit(source, changed, 1)
        np.testing.assert_allclose(gain * source + offset, changed, atol=1e-5)
        gains.append(gain)
    assert 0.5 <= min(gains) and max(gains) <= 1.5 and np.std(gains) > 0.2  # contrast x U(0.5, 1.5)
    assert np.abs(out.mean(axis=(1, 2, 3)) - x.mean(axis=(1, 2, 3))).max() <= 0.25 + 1e-6  # brightness +-0.25


def test_the_same_seed_gives_the_same_augmentation_of_any_batch_and_gradients_flow():
    x, other = images(seed=0), images(seed=5)
    policy = ("translation", "cutout")
    first, second = diff_augment(x, policy, seed=7).numpy(), diff_augment(other, policy, seed=7).numpy()
    np.testing.assert_array_equal(first == FILL, second == FILL)  # same shifts and squares for both batches
    assert not np.array_equal(diff_augment(x, policy, seed=8).numpy() == FILL, first == FILL)

    tensor = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(tensor)
        out = diff_augment(tensor, policy, seed=7)
        total = tf.reduce_sum(out)
    gradient = tape.gradient(total, tensor).numpy()
    # Each kept pixel passes its value straight through; filled ones depend on no input.
    assert gradient.sum() == pytest.approx(float((out.numpy() != FILL).sum()))
    assert set(np.unique(gradient)) <= {0.0, 1.0}
    with tf.GradientTape() as tape:
        tape.watch(tensor)
        total = tf.reduce_sum(tf.square(diff_augment(tensor, ("color", "translation", "cutout"), seed=7)))
    gradient = tape.gradient(total, tensor).numpy()
    assert np.all(np.isfinite(gradient)) and np.abs(gradient).sum() > 0
