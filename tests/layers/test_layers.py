"""Every custom layer of keras_forensics.layers through the one `run_layer_test` (conftest.py),
plus what each layer computes, with numbers."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_forensics.layers as layers_package
from conftest import run_layer_test
from keras_forensics.layers import (AzimuthalSpectrum, CosineDistance, DihedralOrbit, GeMPooling, ImagePool,
                                    LocalResponseNormalization, LogSpectrum, NoiseInjection, OrbitMean,
                                    PixelNormalization, ReflectionPadding2D, WeightedL1Distance)

#: The layers this file tests; the last test checks that none is missing.
TESTED = {AzimuthalSpectrum, CosineDistance, DihedralOrbit, GeMPooling, ImagePool, LocalResponseNormalization,
          LogSpectrum, NoiseInjection, OrbitMean, PixelNormalization, ReflectionPadding2D, WeightedL1Distance}


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_local_response_normalization_layer(tmp_path, rng):
    x = rng.random((2, 8, 8, 16)).astype("float32")
    layer = LocalResponseNormalization(depth_radius=2, bias=2.0, alpha=1e-2, beta=0.75)
    run_layer_test(layer, x, (2, 8, 8, 16), tmp_path)
    expected = tf.nn.local_response_normalization(x, 2, 2.0, 1e-2, 0.75)
    np.testing.assert_allclose(layer(x), expected, rtol=1e-6)


def test_pixel_normalization_layer(tmp_path, rng):
    x = (3 * rng.random((3, 6, 6, 1)) + 1).astype("float32")
    run_layer_test(PixelNormalization(), x, (3, 6, 6, 1), tmp_path)
    out = keras.ops.convert_to_numpy(PixelNormalization()(x))
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(1, 2, 3)), 1, atol=1e-3)
    # Brightness and contrast changes do not change the output.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(PixelNormalization()(2 * x + 0.5)), out, atol=1e-4)


def test_weighted_l1_distance_matches_numpy(tmp_path, rng):
    a, b = rng.normal(size=(4, 8)).astype("float32"), rng.normal(size=(4, 8)).astype("float32")
    layer = WeightedL1Distance(initial_alpha=0.3)
    run_layer_test(layer, [a, b], (4,), tmp_path)
    layer = WeightedL1Distance(initial_alpha=0.3)
    layer([a, b])
    layer.raw_alpha.assign(rng.normal(size=8).astype("float32"))
    alpha = np.log1p(np.exp(layer.raw_alpha.numpy()))
    np.testing.assert_allclose(layer([a, b]), (alpha * np.abs(a - b)).sum(-1), rtol=1e-5)
    # f is plain L1 between weighted embeddings: what the search index relies on.
    np.testing.assert_allclose(layer([a, b]), np.abs(layer.weight(a) - layer.weight(b)).sum(-1), rtol=1e-5)
    np.testing.assert_allclose(WeightedL1Distance(0.01)([a, a]), 0.0)
    with pytest.raises(ValueError):
        WeightedL1Distance(initial_alpha=0.0)


@pytest.mark.parametrize("layer", [LogSpectrum(), AzimuthalSpectrum(num_bins=8, relative=True)])
def test_spectrum_layers_round_trip(layer, tmp_path, rng):
    images = rng.random((3, 16, 16, 1)).astype(np.float32)
    expected_shape = (3, *layer.compute_output_shape((None, 16, 16, 1))[1:])
    run_layer_test(layer, images, expected_shape, tmp_path)
    rebuilt = layer.__class__.from_config(layer.get_config())
    np.testing.assert_allclose(layer(images), rebuilt(images), atol=1e-6)


def test_reflection_padding_mirrors_without_repeating_the_edge(tmp_path):
    image = np.arange(2 * 4 * 5 * 3, dtype=np.float32).reshape(2, 4, 5, 3)
    layer = ReflectionPadding2D((2, 1))
    out = keras.ops.convert_to_numpy(run_layer_test(layer, image, (2, 8, 7, 3), tmp_path))
    np.testing.assert_array_equal(out[:, 2:-2, 1:-1], image)  # the image itself, in the middle
    np.testing.assert_array_equal(out[:, 0, 1:-1], image[:, 2])  # row -2 mirrors row 2 (row 0 not repeated)
    np.testing.assert_array_equal(out[:, 1, 1:-1], image[:, 1])
    np.testing.assert_array_equal(out[:, 2:-2, 0], image[:, :, 1])  # column -1 mirrors column 1
    np.testing.assert_array_equal(out[:, -1, 1:-1], image[:, -3])
    np.testing.assert_array_equal(out, np.pad(image, [[0, 0], [2, 2], [1, 1], [0, 0]], mode="reflect"))
    assert ReflectionPadding2D(3).get_config()["padding"] == (3, 3)
    assert ReflectionPadding2D(3).compute_output_shape((None, None, 16, 8)) == (None, None, 22, 8)


def test_image_pool_layer(tmp_path, rng):
    images = rng.random((3, 4, 4, 1)).astype(np.float32)
    pool = ImagePool(50, (4, 4, 1), seed=0)
    out = run_layer_test(pool, images, (3, 4, 4, 1), tmp_path)
    # While the pool fills, the images come back unchanged.
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(out), images)


def test_gem_pooling_is_mean_at_p1_and_tends_to_max(tmp_path):
    x = np.random.default_rng(0).random((2, 4, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(GeMPooling(p=1.0)(x), x.mean(axis=(1, 2)), rtol=1e-5)
    high = GeMPooling(p=60.0)(x).numpy()
    assert np.all(high <= x.max(axis=(1, 2)) + 1e-5) and np.all(high > 0.9 * x.max(axis=(1, 2)))
    run_layer_test(GeMPooling(), x, (2, 3), tmp_path)


def test_dihedral_orbit_lists_the_8_orientations_and_orbit_mean_pools_them(tmp_path):
    image = np.random.default_rng(1).random((1, 8, 8, 1)).astype(np.float32)
    orbit = run_layer_test(DihedralOrbit(), image, (8, 8, 8, 1), tmp_path)
    np.testing.assert_array_equal(orbit[1], np.rot90(image[0], 1))  # orientation 1: one quarter turn
    np.testing.assert_array_equal(orbit[4], image[0][:, ::-1])  # orientation 4: mirrored
    pooled = run_layer_test(OrbitMean(2), np.array([[3.0, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, 4.0]], np.float32),
                            (2, 2), tmp_path)
    np.testing.assert_allclose(pooled, [[1.0, 0.0], [0.0, 1.0]], atol=1e-6)  # mean of rows i, i + 2, unit length


def test_cosine_distance_is_one_at_the_threshold_and_squared_l2_of_weighted(tmp_path):
    distance = CosineDistance(threshold=0.6, sharpness=4.0)
    a = np.array([[1.0, 0.0]], np.float32)
    b = np.array([[0.6, 0.8]], np.float32)  # cos = 0.6
    np.testing.assert_allclose(distance([a, b]), [1.0], rtol=1e-6)
    rng = np.random.default_rng(0)
    x, y = _unit(rng.normal(size=(5, 8))).astype(np.float32), _unit(rng.normal(size=(5, 8))).astype(np.float32)
    weighted = distance.weight(x).numpy() - distance.weight(y).numpy()
    np.testing.assert_allclose((weighted ** 2).sum(1), distance([x, y]), rtol=1e-5)
    other = CosineDistance(threshold=0.5, sharpness=2.0)
    np.testing.assert_allclose(other([a, b]), [0.8], rtol=1e-6)  # (1 - 0.6) / (1 - 0.5)
    assert CosineDistance.from_config(other.get_config()).threshold == 0.5
    with pytest.raises(ValueError):
        CosineDistance(threshold=1.0)
    run_layer_test(CosineDistance(0.5), [x, y], (5,), tmp_path)


# ---------------------------------------------------------------------------------------------
# augmentations and sampling


def test_noise_injection_starts_as_the_identity_and_adds_standard_normal_noise_fixed_by_the_latent(tmp_path, rng):
    features = rng.random((4, 16, 16, 3)).astype("float32")
    latent = rng.normal(size=(4, 8)).astype("float32")
    layer = NoiseInjection(salt=3)
    np.testing.assert_array_equal(run_layer_test(layer, [features, latent], (4, 16, 16, 3), tmp_path), features)
    layer = NoiseInjection(salt=3, initial_strength=1.0)
    noise = (layer([features, latent]).numpy() - features)
    # One map per sample, scaled per channel: the three channels carry the same noise.
    np.testing.assert_allclose(noise[..., 0], noise[..., 2], atol=1e-6)
    assert noise.mean() == pytest.approx(0.0, abs=0.05) and noise.std() == pytest.approx(1.0, abs=0.05)
    flat = noise[..., 0].reshape(4, -1)
    assert np.abs(np.corrcoef(flat)[np.triu_indices(4, 1)]).max() < 0.2  # samples differ
    assert abs(np.corrcoef(noise[:, :, :-1, 0].ravel(), noise[:, :, 1:, 0].ravel())[0, 1]) < 0.1  # white
    # A function of the latent vector: the same input, the same noise; another salt, other noise.
    np.testing.assert_array_equal(layer([features, latent]).numpy() - features, noise)
    other = NoiseInjection(salt=4, initial_strength=1.0)([features, latent]).numpy() - features
    assert abs(np.corrcoef(other.ravel(), noise.ravel())[0, 1]) < 0.1
    layer.strength.assign([0.0, 2.0, 0.5])
    scaled = layer([features, latent]).numpy() - features
    np.testing.assert_allclose(scaled[..., 1], 2.0 * noise[..., 0], atol=1e-5)
    assert np.all(scaled[..., 0] == 0)


def test_every_custom_layer_is_tested():
    exported = {value for value in vars(layers_package).values()
                if isinstance(value, type) and issubclass(value, keras.layers.Layer)}
    assert exported == TESTED
