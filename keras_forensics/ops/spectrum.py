"""Frequency analysis of images: 2-D log spectra and azimuthally averaged 1-D power spectra.

GAN up-sampling leaves periodic high-frequency artefacts that show in the spectrum (Wang et al.
2022, Fig. 1E; Durall et al. 2020; Frank et al. 2020). Pure, batched TensorFlow ops: the layers
(`LogSpectrum`, `AzimuthalSpectrum`), the GAN quality metrics and the `spectrum` command
(keras_forensics.detection.spectrum) all compute their spectra here.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf



def _hann(size: int):
    return tf.signal.hann_window(size, periodic=False, dtype=tf.float32)


def power_spectrum_2d(images, window: bool = True):
    """Centred power spectrum |FFT|^2 of [B, H, W] (or [B, H, W, 1]) images in [0, 1].

    The mean is removed and (by default) a 2-D Hann window applied, so image borders do not
    smear energy along the axes.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    if images.shape.rank == 4:
        images = images[..., 0]
    images = images - tf.reduce_mean(images, axis=[1, 2], keepdims=True)
    if window:
        h, w = images.shape[1], images.shape[2]
        images = images * (_hann(h)[:, None] * _hann(w)[None, :])[None]
    spectrum = tf.signal.fft2d(tf.cast(images, tf.complex64))
    power = tf.math.real(spectrum * tf.math.conj(spectrum))
    return tf.signal.fftshift(power, axes=[1, 2])


def log_spectrum_2d(images, window: bool = True):
    """log(1 + power), centred: what people look at."""
    return tf.math.log1p(power_spectrum_2d(images, window))


def radial_bins(height: int, width: int, num_bins: int | None = None) -> np.ndarray:
    """Integer radius bin of every frequency of a centred [height, width] spectrum."""
    num_bins = num_bins or min(height, width) // 2
    radius = normalised_radius(height, width)
    return np.minimum((radius * num_bins).astype(np.int32), num_bins)  # corners go in the last bin


def normalised_radius(height: int, width: int) -> np.ndarray:
    """Frequency radius of every entry of a centred [height, width] spectrum: 1 at the Nyquist
    frequency of each axis (so ~1.41 in the corners)."""
    y = np.arange(height) - height // 2
    x = np.arange(width) - width // 2
    return np.sqrt((y[:, None] / (height / 2)) ** 2 + (x[None, :] / (width / 2)) ** 2)


def azimuthal_average(spectra, num_bins: int | None = None):
    """Mean of [B, H, W] spectra over rings of equal radius -> [B, num_bins] (DC first, Nyquist last)."""
    spectra = tf.convert_to_tensor(spectra, tf.float32)
    h, w = spectra.shape[1], spectra.shape[2]
    num_bins = num_bins or min(h, w) // 2
    bins = tf.constant(radial_bins(h, w, num_bins).reshape(-1))
    flat = tf.reshape(spectra, [-1, h * w])
    sums = tf.math.unsorted_segment_sum(tf.transpose(flat), bins, num_bins + 1)
    counts = tf.math.unsorted_segment_sum(tf.ones([h * w]), bins, num_bins + 1)
    return tf.transpose(sums / counts[:, None])[:, :num_bins]


def azimuthal_power_spectrum(images, num_bins: int | None = None, window: bool = True, log: bool = True):
    """The 1-D power spectrum profile of each image, [B, num_bins]; log10 by default."""
    profile = azimuthal_average(power_spectrum_2d(images, window), num_bins)
    return tf.math.log(profile + 1e-12) / tf.math.log(10.0) if log else profile


def high_frequency_ratio(images, cutoff: float = 0.5, window: bool = True):
    """Share of each image's (mean-removed, windowed) power at radii >= `cutoff` x Nyquist, [B].

    Natural images put almost all their power at low frequencies (a 1/f^2 fall-off), so the share
    is small; the up-sampling of GAN generators adds periodic high-frequency energy that raises
    it (Durall et al. 2020; Frank et al. 2020; Wang et al. 2022, Fig. 1E).
    """
    power = power_spectrum_2d(images, window)
    h, w = power.shape[1], power.shape[2]
    high = tf.constant(normalised_radius(h, w) >= cutoff, tf.float32)
    total = tf.reduce_sum(power, axis=[1, 2])
    return tf.reduce_sum(power * high[None], axis=[1, 2]) / tf.maximum(total, 1e-12)
