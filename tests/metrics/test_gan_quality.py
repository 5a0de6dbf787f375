"""Quality measures of generated images: SWD over Laplacian-pyramid patches, spectral distance."""

import numpy as np
import pytest

from keras_forensics.metrics import gan_quality as quality


@pytest.fixture
def blots():
    from keras_forensics.data.blots import render_blots

    return render_blots(24, 32, seed=0)


def noisy(images, sigma, seed=1):
    return np.clip(images + np.random.default_rng(seed).normal(0, sigma, images.shape), 0, 1).astype(np.float32)


def test_swd_of_a_set_with_itself_is_zero_and_grows_with_noise(blots):
    options = dict(patches_per_image=32, directions=32, repeats=2)
    same = quality.sliced_wasserstein_distance(blots, blots, **options)
    assert set(same) == {"swd_32", "swd_16", "swd"} and same["swd"] == pytest.approx(0.0, abs=1e-6)
    distances = [quality.sliced_wasserstein_distance(blots, noisy(blots, sigma), **options)["swd"]
                 for sigma in (0.01, 0.05, 0.2)]
    assert 0 < distances[0] < distances[1] < distances[2]


def test_spectral_distance_of_a_set_with_itself_is_zero_and_grows_with_noise(blots):
    assert quality.spectral_distance(blots, blots) == pytest.approx(0.0, abs=1e-6)
    distances = [quality.spectral_distance(blots, noisy(blots, sigma)) for sigma in (0.01, 0.05, 0.2)]
    assert 0 < distances[0] < distances[1] < distances[2]


def test_laplacian_pyramid_sums_back_to_the_image(blots):
    levels = quality.laplacian_pyramid(blots, min_size=8)
    assert [level.shape[1] for level in levels] == [32, 16, 8]
    image = levels[-1]
    for detail in reversed(levels[:-1]):
        image = detail + quality._upsample(image, detail.shape)
    np.testing.assert_allclose(image.numpy()[..., 0], blots, atol=1e-5)


def test_periodic_peak_sees_block_lattices_and_nothing_in_smooth_images():
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    smooth = gaussian_filter(rng.random((32, 64, 64)), (0, 2, 2)).astype(np.float32)
    assert abs(quality.periodic_peak(smooth, 8)) < 0.1
    # A faint pattern repeating every 8 px: peaks at the lattice frequencies.
    pattern = np.tile(rng.random((8, 8)), (8, 8))[None].astype(np.float32)
    assert quality.periodic_peak(smooth + 0.05 * pattern, 8) > 0.5
    # Nearest-neighbour up-sampling by 8 (8 px blocks): the spectrum vanishes there, troughs.
    blocks = np.repeat(np.repeat(rng.random((32, 8, 8)), 8, axis=1), 8, axis=2).astype(np.float32)
    assert quality.periodic_peak(blocks, 8) < -0.3
    with pytest.raises(Exception, match="period"):
        quality.periodic_peak(smooth, 6)
