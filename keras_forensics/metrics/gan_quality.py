"""How close generated images are to real ones, without a pretrained network.

No Inception weights can be downloaded here, so no FID. Two measures instead, both batched
TensorFlow ops:

* `sliced_wasserstein_distance`: the SWD of Karras et al. (2018, ProGAN, appendix D) between the
  distributions of 7x7 neighbourhoods of each Laplacian-pyramid level, from 16 px up to full
  resolution. Each level compares the detail of one scale: the finest level sees noise and
  up-sampling artefacts, the coarse ones the band layout. Reported x 10^3 as in the paper.
* `spectral_distance`: the root mean square difference, in decades (log10 units), between the mean
  azimuthally averaged power spectra of the two sets (`keras_forensics.spectrum`), which is where
  the periodic artefacts of GAN up-sampling show (Durall et al. 2020; Wang et al. 2022, Fig. 1E).
* `periodic_peak`: how far the mean 2-D power spectrum of one set stands out, in decades, at the
  frequencies of a `period`-pixel lattice (the blocks of nearest-neighbour up-sampling, the
  checkerboard of transposed convolutions) above (> 0) or below (< 0) its neighbouring
  frequencies.

Both are 0 for identical sets and grow as the sets differ; both depend on the number of images,
so compare figures measured with the same counts. `compare` gives both plus the figure of two
real sets (the floor that no generator can beat).

References:
    Karras, Aila, Laine, Lehtinen. Progressive growing of GANs for improved quality, stability,
    and variation. ICLR 2018 (github.com/tkarras/progressive_growing_of_gans,
    metrics/sliced_wasserstein.py).
    Rabin, Peyre, Delon, Bernot. Wasserstein barycenter and its application to texture mixing.
    SSVM 2011 (the sliced Wasserstein distance).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_forensics.errors import ForensicsError
from keras_forensics.ops.spectrum import azimuthal_power_spectrum, power_spectrum_2d

#: The 5-tap binomial filter of Burt and Adelson's pyramid, as in ProGAN's code.
_BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0], np.float32) / 16.0


def _as_images(images) -> tf.Tensor:
    """[N, H, W] or [N, H, W, C] floats (or uint8 / uint16) -> [N, H, W, C] float32."""
    array = np.asarray(images) if not isinstance(images, tf.Tensor) else images
    if isinstance(array, np.ndarray) and np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.float32) / np.iinfo(array.dtype).max
    images = tf.convert_to_tensor(array, tf.float32)
    if images.shape.rank == 3:
        images = images[..., None]
    if images.shape.rank != 4:
        raise ForensicsError(f"expected images [N, H, W] or [N, H, W, C], got shape {images.shape}")
    return images


def _blur(images):
    """Separable binomial blur with mirrored borders, per channel."""
    channels = images.shape[-1]
    padded = tf.pad(images, [[0, 0], [2, 2], [2, 2], [0, 0]], mode="REFLECT")
    vertical = tf.tile(tf.constant(_BINOMIAL)[:, None, None, None], [1, 1, channels, 1])
    horizontal = tf.tile(tf.constant(_BINOMIAL)[None, :, None, None], [1, 1, channels, 1])
    blurred = tf.nn.depthwise_conv2d(padded, vertical, [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(blurred, horizontal, [1, 1, 1, 1], "VALID")


def _downsample(images):
    return _blur(images)[:, ::2, ::2, :]


def _upsample(images, shape):
    """Zero insertion then the blur x 4 (the inverse step of Burt and Adelson's pyramid)."""
    batch, height, width, channels = tf.unstack(tf.shape(images))
    zeros = tf.zeros_like(images)
    rows = tf.reshape(tf.stack([images, zeros], axis=2), [batch, 2 * height, width, channels])
    grid = tf.reshape(tf.stack([rows, tf.zeros_like(rows)], axis=3), [batch, 2 * height, 2 * width, channels])
    return 4.0 * _blur(grid[:, :shape[1], :shape[2], :])


def laplacian_pyramid(images, min_size: int = 16) -> list[tf.Tensor]:
    """Levels [N, h, w, C] from the finest (full resolution, detail only) to the coarsest
    (`min_size` or just above, the blurred image itself)."""
    images = _as_images(images)
    levels, current = [], images
    while min(current.shape[1], current.shape[2]) // 2 >= min_size:
        smaller = _downsample(current)
        levels.append(current - _upsample(smaller, current.shape))
        current = smaller
    levels.append(current)
    return levels


def neighbourhood_descriptors(level, patches_per_image: int = 128, patch_size: int = 7, seed: int = 0):
    """[N * patches_per_image, patch_size^2 * C] random neighbourhoods of a pyramid level, each
    channel normalised to zero mean and unit std over the set (Karras et al.). The positions
    depend only on (seed, image index), so two sets of equal shape are sampled alike."""
    level = tf.convert_to_tensor(level, tf.float32)
    count, height, width, channels = level.shape
    half = patch_size // 2
    if min(height, width) < patch_size:
        raise ForensicsError(f"pyramid level {height}x{width} is smaller than the {patch_size} px neighbourhood")
    seeds = tf.random.experimental.stateless_split(tf.constant([seed, 0], tf.int64), 2)
    shape = [count, patches_per_image]
    y = tf.random.stateless_uniform(shape, seeds[0], half, height - half, tf.int32)
    x = tf.random.stateless_uniform(shape, seeds[1], half, width - half, tf.int32)
    offsets = tf.range(-half, half + 1)
    rows = y[..., None, None] + offsets[:, None]  # [N, P, k, 1]
    cols = x[..., None, None] + offsets[None, :]  # [N, P, 1, k]
    flat = (tf.range(count)[:, None, None, None] * height + rows) * width + cols
    patches = tf.gather(tf.reshape(level, [-1, channels]), flat)  # [N, P, k, k, C]
    patches = tf.reshape(patches, [-1, patch_size, patch_size, channels])
    mean, variance = tf.nn.moments(patches, axes=[0, 1, 2], keepdims=True)
    patches = (patches - mean) * tf.math.rsqrt(variance + 1e-12)
    return tf.reshape(patches, [tf.shape(patches)[0], -1])


def sliced_wasserstein(first, second, directions: int = 128, repeats: int = 4, seed: int = 0) -> float:
    """Mean over `repeats` x `directions` random unit directions of the mean absolute difference
    between the sorted projections of two equally sized descriptor sets [M, D] (the 1-D
    Wasserstein-1 distance along each direction)."""
    first = tf.convert_to_tensor(first, tf.float32)
    second = tf.convert_to_tensor(second, tf.float32)
    if first.shape != second.shape:
        raise ForensicsError(f"descriptor sets differ in shape: {first.shape} vs {second.shape}")
    results = []
    for repeat in range(repeats):
        basis = tf.random.stateless_normal([first.shape[1], directions], [seed, repeat + 1])
        basis = basis / tf.norm(basis, axis=0, keepdims=True)
        projected_first = tf.sort(tf.matmul(first, basis), axis=0)
        projected_second = tf.sort(tf.matmul(second, basis), axis=0)
        results.append(tf.reduce_mean(tf.abs(projected_first - projected_second)))
    return float(tf.reduce_mean(results))


def _same_count(real, fake):
    real, fake = _as_images(real), _as_images(fake)
    if real.shape[1:] != fake.shape[1:]:
        raise ForensicsError(f"real and generated images differ in shape: {real.shape[1:]} vs {fake.shape[1:]}")
    count = min(real.shape[0], fake.shape[0])
    if count < 2:
        raise ForensicsError("need at least 2 images in each set")
    return real[:count], fake[:count]


def sliced_wasserstein_distance(real, fake, patches_per_image: int = 128, patch_size: int = 7,
                                directions: int = 128, repeats: int = 4, min_size: int = 16,
                                seed: int = 0) -> dict[str, float]:
    """SWD x 10^3 per Laplacian level ("swd_<size>") and their mean ("swd"), Karras et al. 2018.

    `real` and `fake`: [N, H, W(, C)] in [0, 1] of equal size; the larger set is truncated to the
    smaller one's count. The defaults are the paper's (7x7 neighbourhoods, 128 per image, 4 x 128
    directions, levels down to 16 px).
    """
    real, fake = _same_count(real, fake)
    result = {}
    pyramids = zip(laplacian_pyramid(real, min_size), laplacian_pyramid(fake, min_size))
    for index, (real_level, fake_level) in enumerate(pyramids):
        level_seed = seed * 1000 + index
        distance = sliced_wasserstein(
            neighbourhood_descriptors(real_level, patches_per_image, patch_size, level_seed),
            neighbourhood_descriptors(fake_level, patches_per_image, patch_size, level_seed),
            directions, repeats, level_seed)
        result[f"swd_{real_level.shape[1]}"] = 1e3 * distance
    result["swd"] = float(np.mean(list(result.values())))
    return result


def mean_log_spectrum(images, batch_size: int = 256) -> np.ndarray:
    """The mean over images of the log10 azimuthal power spectrum, [bins] (luminance for RGB)."""
    images = _as_images(images)
    if images.shape[-1] == 3:
        images = tf.image.rgb_to_grayscale(images)
    profiles = [azimuthal_power_spectrum(images[start:start + batch_size])
                for start in range(0, images.shape[0], batch_size)]
    return tf.reduce_mean(tf.concat(profiles, axis=0), axis=0).numpy()


def periodic_peak(images, period: int = 8, batch_size: int = 256) -> float:
    """Mean over the frequencies of a `period`-pixel lattice of log10(P(f) / median of P over the
    8 frequencies around f), P the mean centred power spectrum (Hann-windowed) of `images`.

    The lattice is every (k_y H / period, k_x W / period) but the origin and the outermost row and
    column of the spectrum (so `period` >= 4). Periodic blocks of `period` pixels put peaks there
    (> 0); nearest-neighbour up-sampling, which zeroes the spectrum at the Nyquist frequency of the
    resolution it up-samples from, troughs (< 0); an image without periodic structure about 0.
    Compare a generated set with a real one: real blots are not exactly 0 (bands are horizontal).
    """
    images = _as_images(images)
    if images.shape[-1] == 3:
        images = tf.image.rgb_to_grayscale(images)
    height, width = images.shape[1], images.shape[2]
    if period < 4 or height % period or width % period:
        raise ForensicsError(f"period must be >= 4 and divide the image size {height}x{width}, got {period}")
    power = tf.add_n([tf.reduce_sum(power_spectrum_2d(images[start:start + batch_size]), axis=0)
                      for start in range(0, images.shape[0], batch_size)]).numpy() / images.shape[0]
    log_power = np.log10(np.maximum(power, 1e-30))
    centre_y, centre_x = height // 2, width // 2
    rows = [centre_y + k * (height // period) for k in range(-period // 2, period // 2 + 1)]
    columns = [centre_x + k * (width // period) for k in range(-period // 2, period // 2 + 1)]
    heights = []
    for y in rows:
        for x in columns:
            if (y, x) == (centre_y, centre_x) or not (0 < y < height - 1 and 0 < x < width - 1):
                continue
            around = np.delete(log_power[y - 1:y + 2, x - 1:x + 2].ravel(), 4)
            heights.append(log_power[y, x] - np.median(around))
    return float(np.mean(heights))


def spectral_distance(real, fake) -> float:
    """Root mean square difference of the mean log10 power spectra, in decades (0 = same)."""
    real, fake = _same_count(real, fake)
    difference = mean_log_spectrum(real) - mean_log_spectrum(fake)
    return float(np.sqrt(np.mean(np.square(difference))))


def compare(real, fake, reference=None, seed: int = 0, **swd_options) -> dict[str, float]:
    """SWD (per level and mean) and spectral distance of `fake` against `real`; with `reference`
    (other real images, e.g. the training set), the same figures for reference against real as
    "*_real_reference": what a perfect generator would score with these counts."""
    result = dict(sliced_wasserstein_distance(real, fake, seed=seed, **swd_options))
    result["spectral_distance"] = spectral_distance(real, fake)
    if reference is not None:
        floor = sliced_wasserstein_distance(real, reference, seed=seed, **swd_options)
        result.update({f"{key}_real_reference": value for key, value in floor.items()})
        result["spectral_distance_real_reference"] = spectral_distance(real, reference)
    return result
