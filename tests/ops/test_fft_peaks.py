"""The patch FFT peaks of a denoising residual (keras_forensics/ops/fft_peaks.py) against a NumPy /
SciPy transcription of ai-wblots-detector's `residuum` + `patch_fft_peak_feats`."""

import numpy as np
from scipy.signal import convolve2d

from keras_forensics.ops import fft_peaks


def reference_features(image, patch_size=64):
    """Cardenuto-Mandelli's recipe, one image at a time, in NumPy."""
    residual = image - convolve2d(image, fft_peaks.MANDELLI_LOW_PASS, mode="same", boundary="symm")
    spectra = []
    for y in range(0, image.shape[0] // patch_size * patch_size, patch_size):
        for x in range(0, image.shape[1] // patch_size * patch_size, patch_size):
            patch = residual[y:y + patch_size, x:x + patch_size]
            spectra.append(np.abs(np.fft.fftshift(np.fft.fft2(patch))) / patch_size ** 2)
    mean = np.mean(spectra, axis=0)
    return np.array([mean[r, c] for r, c in fft_peaks.peak_locations(patch_size)])


def test_batched_features_match_the_reference(rng):
    images = rng.random((3, 130, 200)).astype(np.float32)  # 2 x 3 patches, remainders left out
    got = fft_peaks.patch_fft_peaks(images).numpy()
    want = np.stack([reference_features(image.astype(np.float64)) for image in images])
    assert got.shape == (3, 45)
    np.testing.assert_allclose(got, want, atol=2e-6)


def test_residual_removes_constants_and_ramps_and_keeps_the_mean_filter_rule(rng):
    flat = np.full((1, 32, 32), 0.7, np.float32)
    assert np.abs(fft_peaks.denoising_residual(flat).numpy()).max() < 1e-6
    ramp = np.tile(np.linspace(0, 1, 32, dtype=np.float32), (32, 1))[None]
    inner = fft_peaks.denoising_residual(ramp).numpy()[0, 1:-1, 1:-1]
    assert np.abs(inner).max() < 1e-6  # a linear ramp equals the mean of its 4 neighbours
    image = rng.random((1, 16, 16)).astype(np.float32)
    residual = fft_peaks.denoising_residual(image[..., None]).numpy()[0]
    y, x = 5, 9
    neighbours = image[0, y - 1, x] + image[0, y + 1, x] + image[0, y, x - 1] + image[0, y, x + 1]
    assert abs(residual[y, x] - (image[0, y, x] - neighbours / 4)) < 1e-6


def test_a_period_4_pattern_peaks_where_4x_upsampling_would():
    """A horizontal period of 4 px is frequency 1/4: column 32 +- 16 of the centred spectrum."""
    x = np.arange(64)
    image = (0.5 + 0.3 * np.cos(2 * np.pi * x / 4))[None, :] * np.ones((64, 1))
    features = fft_peaks.patch_fft_peaks(image[None].astype(np.float32)).numpy()[0]
    locations = fft_peaks.peak_locations(64)
    strongest = locations[np.argmax(features)]
    assert strongest[0] == 32 and abs(strongest[1] - 32) == 16


def test_peak_locations_are_the_papers_45():
    locations = fft_peaks.peak_locations(64)
    assert len(locations) == 45
    assert sorted(set(locations[:, 0])) == [32, 40, 48, 56, 63]
    assert sorted(set(locations[:, 1])) == [0, 8, 16, 24, 32, 40, 48, 56, 63]
