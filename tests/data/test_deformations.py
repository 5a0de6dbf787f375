"""Each deformation does what it says, with numbers: identity, known pixel moves, ranges, seeds."""

import math

import numpy as np
import pytest
import tensorflow as tf

from keras_forensics.config import DeformationConfig
from keras_forensics.data import deformations as d

SIZE = 32


def batch_of(image, n=1):
    return tf.constant(np.repeat(np.asarray(image, np.float32)[None, ..., None], n, axis=0))


@pytest.fixture
def square(textured_image):
    return textured_image[:SIZE, :SIZE]


def test_identity_config_returns_the_centre_crop(textured_image):
    deformer = d.Deformer(DeformationConfig.identity())
    images = batch_of(textured_image, 4)
    out = deformer(images, tf.constant([3, 4]))
    np.testing.assert_allclose(out.numpy(), images.numpy()[:, 64:192, 64:192], atol=1e-5)
    np.testing.assert_allclose(deformer.anchor(images, tf.constant([3, 4])).numpy(),
                               images.numpy()[:, 64:192, 64:192], atol=1e-5)


def test_identity_matrices_leave_pixels_unchanged(square):
    images = batch_of(square)
    eye = tf.eye(3, batch_shape=[1])
    np.testing.assert_allclose(d.warp(images, eye).numpy(), images.numpy(), atol=1e-5)
    no_flip = d.reflection_matrices(tf.constant([False]), tf.constant([False]), SIZE)
    np.testing.assert_allclose(d.warp(images, no_flip).numpy(), images.numpy(), atol=1e-5)
    still = d.similarity_matrices(tf.zeros([1]), tf.ones([1]), tf.zeros([1]), tf.zeros([1]), SIZE)
    np.testing.assert_allclose(d.warp(images, still).numpy(), images.numpy(), atol=1e-5)
    flat = d.perspective_matrices(tf.zeros([1, 4, 2]), SIZE)
    np.testing.assert_allclose(d.warp(images, flat).numpy(), images.numpy(), atol=1e-5)


def test_flips_match_numpy(square):
    images = batch_of(square, 3)
    matrices = d.reflection_matrices(tf.constant([True, False, True]), tf.constant([False, True, True]), SIZE)
    out = d.warp(images, matrices).numpy()[..., 0]
    np.testing.assert_allclose(out[0], np.fliplr(square), atol=1e-5)
    np.testing.assert_allclose(out[1], np.flipud(square), atol=1e-5)
    np.testing.assert_allclose(out[2], np.flipud(np.fliplr(square)), atol=1e-5)


def test_translation_moves_a_known_pixel():
    image = np.zeros((SIZE, SIZE), np.float32)
    image[5, 7] = 1.0  # row 5, column 7
    out = d.warp(batch_of(image), d.translation_matrices(tf.constant([3.0]), tf.constant([-2.0]))).numpy()[0, ..., 0]
    assert out[3, 10] == pytest.approx(1.0)
    assert out.sum() == pytest.approx(1.0)


def test_quarter_turns_are_exact_and_cover_all_three(textured_image):
    deformer = d.Deformer(DeformationConfig.identity(p_geometric=1.0, p_rotate90=1.0))
    out = deformer(batch_of(textured_image, 24), tf.constant([5, 6])).numpy()[..., 0]
    crop = np.asarray(textured_image, np.float32)[64:192, 64:192]
    turns = []
    for image in out:
        errors = [np.abs(image - np.rot90(crop, k)).max() for k in range(4)]
        assert min(errors) < 1e-4
        turns.append(int(np.argmin(errors)))
    assert set(turns) == {1, 2, 3}  # never 0: "turned" means turned
    unturned = d.Deformer(DeformationConfig.identity(p_geometric=1.0))
    np.testing.assert_allclose(unturned(batch_of(textured_image, 2), tf.constant([5, 6])).numpy()[..., 0],
                               np.stack([crop, crop]), atol=1e-5)


def test_rotation_by_90_degrees_moves_a_known_pixel():
    image = np.zeros((SIZE, SIZE), np.float32)
    image[4, 20] = 1.0
    # Counter-clockwise on screen by 90 degrees: equals np.rot90.
    matrix = d.similarity_matrices(tf.constant([math.pi / 2]), tf.ones([1]), tf.zeros([1]), tf.zeros([1]), SIZE)
    out = d.warp(batch_of(image), matrix).numpy()[0, ..., 0]
    expected = np.rot90(image)
    assert np.unravel_index(out.argmax(), out.shape) == np.unravel_index(expected.argmax(), expected.shape)
    np.testing.assert_allclose(out, expected, atol=1e-4)


def test_scaling_about_the_centre_keeps_the_centre():
    image = np.zeros((SIZE + 1, SIZE + 1), np.float32)  # odd size: the centre is a pixel
    centre = SIZE // 2
    image[centre, centre] = 1.0
    image[centre, centre + 4] = 1.0
    matrix = d.similarity_matrices(tf.zeros([1]), tf.constant([2.0]), tf.zeros([1]), tf.zeros([1]), SIZE + 1)
    out = d.warp(batch_of(image), matrix).numpy()[0, ..., 0]
    assert out[centre, centre] == pytest.approx(1.0)
    assert out[centre, centre + 8] == pytest.approx(1.0)  # 4 px from the centre -> 8 px


def test_perspective_moves_the_corners_where_asked():
    shifts = tf.constant([[[3.0, 2.0], [-4.0, 1.0], [2.0, -3.0], [1.0, 5.0]]])
    matrix = d.perspective_matrices(shifts, SIZE)[0].numpy()
    last = SIZE - 1
    for (x, y), (dx, dy) in zip([(0, 0), (last, 0), (last, last), (0, last)], shifts.numpy()[0]):
        u, v, w = matrix @ np.array([x, y, 1.0])
        assert (u / w, v / w) == pytest.approx((x + dx, y + dy), abs=1e-3)


def test_one_composed_warp_equals_the_steps_applied_in_turn(textured_image):
    images = batch_of(textured_image)
    size = 256
    steps = [
        d.reflection_matrices(tf.constant([True]), tf.constant([False]), size),
        d.perspective_matrices(tf.constant([[[6.0, -4.0], [-5.0, 3.0], [4.0, 6.0], [-3.0, -6.0]]]), size),
        d.similarity_matrices(tf.constant([0.4]), tf.constant([1.2]), tf.constant([5.0]), tf.constant([-7.0]), size),
    ]
    sequential = images
    for matrix in steps:
        sequential = d.warp(sequential, matrix)
    composed = d.warp(images, steps[2] @ steps[1] @ steps[0])
    # Compare away from the borders, where fill values differ; bilinear resampling three times
    # instead of once blurs slightly: "within interpolation error".
    inner = slice(64, 192)
    difference = np.abs(sequential.numpy()[0, inner, inner] - composed.numpy()[0, inner, inner])
    assert difference.mean() < 0.01
    assert np.percentile(difference, 99) < 0.05


def test_crop_is_folded_into_the_warp(textured_image):
    images = batch_of(textured_image)
    crop = d.crop_matrices(1, 256, 128)
    np.testing.assert_allclose(d.warp(images, crop, 128).numpy(), images.numpy()[:, 64:192, 64:192], atol=1e-5)


def test_gamma_matches_numpy(square):
    images = batch_of(square, 2)
    out = d.gamma(images, tf.constant([0.5, 2.0])).numpy()[..., 0]
    np.testing.assert_allclose(out[0], square ** 0.5, rtol=1e-5)
    np.testing.assert_allclose(out[1], square ** 2.0, rtol=1e-5)


def _outside(size, centre, radius):
    y, x = np.mgrid[0:size, 0:size]
    return np.hypot(x - centre[0], y - centre[1]) > radius


def test_erase_touches_only_its_disc(textured_image):
    image = textured_image[:64, :64]
    centre, radius, soft = (30.0, 20.0), 8.0, 3.0
    out = d.erase_disc(batch_of(image), tf.constant([centre]), tf.constant([radius]), soft).numpy()[0, ..., 0]
    outside = _outside(64, centre, radius + soft)
    np.testing.assert_allclose(out[outside], image[outside], atol=1e-6)
    inside = ~_outside(64, centre, radius)
    assert np.all(out[inside] == 0.0)


def test_local_contrast_touches_only_its_disc(textured_image):
    image = 0.4 * textured_image[:64, :64]  # 0.4 * 2 < 1: no renormalisation
    centre, radius = (32.0, 32.0), 6.0
    out = d.scale_disc(batch_of(image), tf.constant([centre]), tf.constant([radius]), tf.constant([2.0])).numpy()[0, ..., 0]
    outside = _outside(64, centre, 2 * radius)
    np.testing.assert_allclose(out[outside], image[outside], atol=1e-6)
    assert out[32, 32] == pytest.approx(2.0 * image[32, 32], rel=1e-5)


def test_local_contrast_renormalises_into_range(textured_image):
    image = textured_image[:64, :64]
    out = d.scale_disc(batch_of(image), tf.constant([[32.0, 32.0]]), tf.constant([10.0]), tf.constant([2.0])).numpy()
    assert out.max() <= 1.0 + 1e-6


def test_copy_move_copies_the_source_disc_and_nothing_else(textured_image):
    image = textured_image[:64, :64]
    target, source, radius = (20.0, 24.0), (40.0, 36.0), 6.0
    out = d.copy_move_disc(batch_of(image), tf.constant([target]), tf.constant([source]), tf.constant([radius])).numpy()[0, ..., 0]
    outside = _outside(64, target, 1.5 * radius)
    np.testing.assert_allclose(out[outside], image[outside], atol=1e-6)
    # The centre of the target disc now holds the source pixel.
    assert out[24, 20] == pytest.approx(image[36, 40], abs=1e-6)


def test_jpeg_changes_only_the_selected_images(square):
    images = batch_of(np.tile(square, (4, 4)), 3)
    out = d.jpeg(images, tf.constant([10, 10, 10]), tf.constant([True, False, True])).numpy()
    np.testing.assert_array_equal(out[1], images.numpy()[1])
    assert np.abs(out[0] - images.numpy()[0]).mean() > 0.005


def test_rectangle_mask_is_an_outline():
    mask = d.rectangle_masks(1, 32, tf.constant([[4.0, 6.0]]), tf.constant([[10.0, 8.0]]), tf.constant([1.0])).numpy()[0, ..., 0]
    assert mask[6, 4] == 1 and mask[6, 13] == 1 and mask[13, 4] == 1  # corners of the outline
    assert mask[9, 8] == 0  # interior
    assert mask.sum() == 2 * 10 + 2 * 8 - 4


def test_text_bank_has_glyphs():
    bank = d.make_text_bank(4, 64, seed=1)
    assert bank.shape == (4, 64, 64)
    assert all(0 < m.sum() < 64 * 64 / 2 for m in bank)
    np.testing.assert_array_equal(bank, d.make_text_bank(4, 64, seed=1))


def test_full_recipe_shapes_range_and_seeds(textured_image):
    deformer = d.Deformer(DeformationConfig())
    images = batch_of(textured_image, 8)
    first = deformer(images, tf.constant([1, 2])).numpy()
    again = deformer(images, tf.constant([1, 2])).numpy()
    other = deformer(images, tf.constant([1, 3])).numpy()
    assert first.shape == (8, 128, 128, 1) and first.dtype == np.float32
    assert first.min() >= 0.0 and first.max() <= 1.0
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).mean() > 0.01


def test_every_step_on_gives_different_images_that_stay_in_range(textured_image):
    config = DeformationConfig(p_geometric=1, p_reflection=1, p_perspective=1, p_similarity=1, p_jpeg=1,
                               p_gamma=1, p_local_edit=1, p_text=0.5, p_rectangle=0.5)
    out = d.Deformer(config)(batch_of(textured_image, 8), tf.constant([0, 1])).numpy()
    assert out.min() >= 0.0 and out.max() <= 1.0
    crop = textured_image[64:192, 64:192]
    assert all(np.abs(o[..., 0] - crop).mean() > 0.02 for o in out)
