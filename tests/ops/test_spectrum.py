"""Frequency analysis (keras_forensics/ops/spectrum_command.py, detection/spectrum_command.py) and its layers."""

import json

import numpy as np
import pytest
import tensorflow as tf

from keras_forensics.detection import spectrum as spectrum_command
from keras_forensics.detection.sources import transposed_upsample
from keras_forensics.ops import spectrum
from keras_forensics.layers import AzimuthalSpectrum


def test_sinusoid_peaks_at_its_frequency():
    size, cycles = 64, 10
    x = np.arange(size)
    image = 0.5 + 0.4 * np.sin(2 * np.pi * cycles * x / size)[None, :] * np.ones((size, 1))
    power = spectrum.power_spectrum_2d(image[None].astype(np.float32)).numpy()[0]
    peak = np.unravel_index(np.argmax(power), power.shape)
    assert peak[0] == size // 2 and abs(peak[1] - size // 2) == cycles
    profile = spectrum.azimuthal_power_spectrum(image[None].astype(np.float32)).numpy()[0]
    # Radius 10/32 of Nyquist falls into ring 10 of 32.
    assert np.argmax(profile) == cycles


def test_white_noise_profile_is_flat(rng):
    noise = rng.random((64, 64, 64)).astype(np.float32)
    profile = spectrum.azimuthal_power_spectrum(noise).numpy().mean(0)
    # The mean removal and the Hann window shape the lowest rings; beyond them the profile of
    # white noise is flat: within +-0.1 decades (26%) of its median.
    body = profile[3:]
    assert np.max(np.abs(body - np.median(body))) < 0.1
    # ...and far from flat for a 1/f^2 image (sanity check of the tolerance).
    smooth = tf.nn.avg_pool2d(noise[..., None], 5, 1, "SAME")[..., 0]
    smooth_profile = spectrum.azimuthal_power_spectrum(smooth).numpy().mean(0)[3:]
    assert np.max(np.abs(smooth_profile - np.median(smooth_profile))) > 1.0


def test_checkerboard_upsampling_shows_a_nyquist_peak(textured_image):
    tiles = textured_image.reshape(4, 64, 4, 64).transpose(0, 2, 1, 3).reshape(16, 64, 64, 1)
    upsampled = transposed_upsample(tiles, seed=3)[..., 0]
    # Down- and up-sampling with a smooth (bilinear) filter instead: no checkerboard.
    smooth = tf.image.resize(tf.nn.avg_pool2d(tiles, 2, 2, "VALID"), (64, 64))[..., 0]
    peak_power = spectrum.power_spectrum_2d(upsampled, window=True).numpy().mean(0)
    smooth_power = spectrum.power_spectrum_2d(smooth, window=True).numpy().mean(0)
    # Period 2 is frequency 1/2, the Nyquist frequency: after fftshift row/column 0.
    nyquist = [(0, 32), (32, 0), (0, 0)]
    ratio = [peak_power[p] / smooth_power[p] for p in nyquist]
    assert max(ratio) > 100
    # The 1-D profile rises again towards Nyquist (the peak) instead of falling.
    profile = spectrum.azimuthal_power_spectrum(upsampled).numpy().mean(0)
    assert profile[-1] > profile[-8] + 0.5
    ratio_up = spectrum.high_frequency_ratio(upsampled).numpy().mean()
    ratio_smooth = spectrum.high_frequency_ratio(smooth).numpy().mean()
    assert ratio_up > 10 * ratio_smooth


def test_high_frequency_ratio_bounds(rng):
    noise = rng.random((8, 32, 32)).astype(np.float32)
    ratio = spectrum.high_frequency_ratio(noise, cutoff=0.5).numpy()
    area = (spectrum.normalised_radius(32, 32) >= 0.5).mean()
    # White noise spreads its power evenly: the share is about the share of the frequencies.
    assert np.all(np.abs(ratio - area) < 0.12)
    flat = spectrum.high_frequency_ratio(np.full((2, 32, 32), 0.5, np.float32)).numpy()
    assert np.all(flat == 0)


def test_statistics_mean_and_std(rng):
    tiles = rng.random((10, 32, 32)).astype(np.float32)
    stats = spectrum_command.spectrum_statistics(tiles, "noise")
    profiles = spectrum.azimuthal_power_spectrum(tiles).numpy()
    np.testing.assert_allclose(stats.profile_mean, profiles.mean(0), atol=1e-4)
    np.testing.assert_allclose(stats.profile_std, profiles.std(0), atol=1e-4)
    assert stats.tiles == 10 and stats.log_spectrum_mean.shape == (32, 32)
    assert json.loads(json.dumps(stats.to_json()))["tiles"] == 10


def test_relative_profile_ignores_contrast(rng):
    images = rng.random((2, 16, 16, 1)).astype(np.float32)
    layer = AzimuthalSpectrum(relative=True)
    np.testing.assert_allclose(layer(images), layer(images * 0.3), atol=1e-4)


def test_spectrum_command_writes_json_and_figures(tmp_path, textured_image):
    pytest.importorskip("matplotlib")
    from PIL import Image

    from keras_forensics.__main__ import main

    real, fake = tmp_path / "real", tmp_path / "fake"
    real.mkdir()
    fake.mkdir()
    Image.fromarray((textured_image * 255).astype(np.uint8)).save(real / "a.png")
    upsampled = transposed_upsample(textured_image[None, ..., None], seed=1).numpy()[0, ..., 0]
    Image.fromarray((upsampled * 255).astype(np.uint8)).save(fake / "b.png")
    main(["spectrum", "--compare", str(real), str(fake), "--out", str(tmp_path / "out")])
    result = json.loads((tmp_path / "out" / "spectra.json").read_text())
    assert result["reference"]["name"] == "real" and result["sets"][0]["name"] == "fake"
    assert len(result["sets"][0]["profile_log10_mean"]) == 32
    # The checkerboard fake has more high-frequency energy, and the ratio separates the tiles.
    assert result["comparison"][0]["high_frequency_ratio_difference"] > 0
    assert result["comparison"][0]["high_frequency_ratio_auc"] > 0.9
    assert (tmp_path / "out" / "compare.png").stat().st_size > 10_000


def test_spectrum_command_needs_out(capsys):
    from keras_forensics.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["spectrum", "some_dir"])
    assert exit_info.value.code == 2
    assert "--out" in capsys.readouterr().err
