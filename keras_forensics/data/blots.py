"""Western blots as training data for the WGAN: procedural renderings and real blots cut into tiles.

* `render_blots(count, size, seed, style)`: western-blot-like images drawn from a few physical
  ingredients -- lanes, bands with Gaussian vertical profiles and a slight "smile" (the curvature
  that uneven heating of a gel gives a band), lane-to-lane loading differences, film/camera
  saturation, smears below overloaded bands, an uneven membrane background, dust and noise. Image k
  depends only on (seed, k), so the first n images of any larger set are the same n images.
* `blot_folder(directory, size, ...)`: real blots of any size, made dark-on-light (chemiluminescence
  captures are bright-on-dark), scaled, and cut into tiles; empty background tiles are dropped.
* `tile_folder(directory, size, ...)`: the same for any images (CycleGAN's domains), grayscale
  or colour.
* `overexpose(patches)`: the same blots as if exposed longer (bands spread and saturate to black,
  the membrane greys): a condition imposed on real blots, CycleGAN's domain B for real data.

All return a `keras_forensics.data.patches.PatchSet` (uint8, or uint16 when the source was 16-bit;
[N, S, S] grayscale or [N, S, S, 3] colour). All blots here are dark bands on a light background,
as they appear in figures.

Reference for what a blot looks like and what generated ones must match: Wang et al., Deepfakes: a
new threat to image fabrication in scientific publications? Patterns 3 (2022), Figure 1.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from keras_forensics.data import io
from keras_forensics.data.io import quantize
from keras_forensics.data.patches import PatchSet, field_group, fit_to_patch, regex_group
from keras_forensics.errors import ForensicsError
from keras_forensics.ops import tiling

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class BlotStyle:
    """Ranges the renderer draws each blot's parameters from (lengths are fractions of the side).

    Args:
        lanes: number of lanes (inclusive range).
        band_rows: number of bands (molecular weights) per lane.
        band_thickness: standard deviation of a band's Gaussian vertical profile.
        lane_fill: share of the lane pitch a band covers horizontally.
        smile: vertical offset of a band's ends relative to its centre (> 0: ends higher).
        intensity: darkness of a band row before lane-to-lane variation.
        lane_variation: standard deviation of the multiplicative lane-to-lane loading difference.
        empty_lane_probability: chance that a lane shows no band in a row.
        saturation_probability: chance that a blot is over-exposed (band cores clip to black).
        smear_probability: chance that a band trails a smear below it.
        background: level of the membrane (1 = white).
        background_gradient: amplitude of a linear illumination gradient.
        blotch_amplitude: amplitude of wide, faint background blotches.
        noise: standard deviation of the pixel noise.
        dust_count: maximum number of dark dust specks.
    """

    lanes: tuple[int, int] = (3, 10)
    band_rows: tuple[int, int] = (1, 4)
    band_thickness: tuple[float, float] = (0.008, 0.03)
    lane_fill: tuple[float, float] = (0.6, 0.9)
    smile: tuple[float, float] = (-0.004, 0.012)
    intensity: tuple[float, float] = (0.25, 1.0)
    lane_variation: float = 0.3
    empty_lane_probability: float = 0.1
    saturation_probability: float = 0.2
    smear_probability: float = 0.2
    background: tuple[float, float] = (0.82, 0.98)
    background_gradient: tuple[float, float] = (0.0, 0.08)
    blotch_amplitude: tuple[float, float] = (0.0, 0.05)
    noise: tuple[float, float] = (0.004, 0.03)
    dust_count: int = 3

    @classmethod
    def clean(cls) -> "BlotStyle":
        """Sharp, evenly exposed blots on an even background (the CycleGAN demo's domain A)."""
        return cls(saturation_probability=0.0, smear_probability=0.0, background=(0.95, 0.98),
                   background_gradient=(0.0, 0.01), blotch_amplitude=(0.0, 0.0), noise=(0.003, 0.008),
                   intensity=(0.3, 0.7), dust_count=0)

    @classmethod
    def overexposed(cls) -> "BlotStyle":
        """Saturated, smeared blots on an uneven, grainy membrane (the CycleGAN demo's domain B)."""
        return cls(saturation_probability=1.0, smear_probability=0.8, background=(0.78, 0.9),
                   background_gradient=(0.04, 0.12), blotch_amplitude=(0.03, 0.08), noise=(0.02, 0.04),
                   intensity=(0.6, 1.0), band_thickness=(0.015, 0.04), dust_count=8)


def _uniform(rng, bounds, size=None):
    return rng.uniform(bounds[0], bounds[1], size)


def render_blot(size: int, rng: np.random.Generator, style: BlotStyle) -> np.ndarray:
    """One float32 [size, size] blot in [0, 1]; all lanes and bands are drawn in one broadcast."""
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size
    y, x = axis[:, None], axis[None, :]

    num_lanes = int(rng.integers(style.lanes[0], style.lanes[1] + 1))
    margin = rng.uniform(0.0, 0.12)
    pitch = (1.0 - 2.0 * margin) / num_lanes
    centres = margin + pitch * (np.arange(num_lanes) + 0.5) + rng.normal(0, 0.03 * pitch, num_lanes)
    half_widths = 0.5 * pitch * _uniform(rng, style.lane_fill, num_lanes)
    edge = rng.uniform(0.002, 0.012)  # softness of a band's ends
    # [lanes, 1, size]: where each lane is, horizontally, and where in the lane (-1 .. 1)
    offset = (x[None] - centres[:, None, None]) / half_widths[:, None, None]
    lane_mask = 1.0 / (1.0 + np.exp(-(1.0 - np.abs(offset)) * half_widths[:, None, None] / edge))

    num_rows = int(rng.integers(style.band_rows[0], style.band_rows[1] + 1))
    rows = np.sort(rng.uniform(0.12, 0.88, num_rows))
    thickness = _uniform(rng, style.band_thickness, num_rows)
    smile = _uniform(rng, style.smile)
    # [lanes, rows]: lane-to-lane loading differences, a treatment trend, and empty lanes
    trend = rng.normal(0, 0.3) * (np.arange(num_lanes) / max(num_lanes - 1, 1) - 0.5)
    amplitude = _uniform(rng, style.intensity, num_rows)[None, :] * np.clip(
        1.0 + trend[:, None] + rng.normal(0, style.lane_variation, (num_lanes, num_rows)), 0.05, None)
    amplitude *= rng.random((num_lanes, num_rows)) >= style.empty_lane_probability
    lane_shift = rng.normal(0, 0.004, num_lanes)  # lanes run slightly unevenly

    # [lanes, rows, size, size]: a Gaussian profile around a parabola (the smile) in each lane
    centre_y = (rows[None, :, None, None] + lane_shift[:, None, None, None]
                - smile * np.clip(offset, -1.5, 1.5)[:, None] ** 2)
    distance = y[None, None] - centre_y
    sigma = thickness[None, :, None, None] * (1.0 + 0.15 * np.abs(np.clip(offset, -1, 1)))[:, None]
    profile = np.exp(-0.5 * (distance / sigma) ** 2)
    if rng.random() < style.smear_probability:
        # Overloaded bands trail downwards (towards the anode): an exponential tail below the band.
        length = rng.uniform(0.03, 0.15)
        tail = np.where(distance > 0, np.exp(-distance / length), 0.0) * rng.uniform(0.15, 0.45)
        profile = np.maximum(profile, tail)
    darkness = np.sum(amplitude[:, :, None, None] * profile * lane_mask[:, None], axis=(0, 1))

    gain = rng.uniform(1.8, 4.0) if rng.random() < style.saturation_probability else rng.uniform(0.9, 1.3)
    # Film or a camera responds like 1 - exp(-exposure); over-exposure clips the band cores.
    density = 1.0 - np.exp(-gain * darkness)
    if gain > 1.5:
        density = np.minimum(density / rng.uniform(0.8, 0.95), 1.0)

    angle = rng.uniform(0, 2 * np.pi)
    background = (_uniform(rng, style.background)
                  + _uniform(rng, style.background_gradient) * ((x - 0.5) * np.cos(angle) + (y - 0.5) * np.sin(angle)))
    blotches = rng.integers(0, 4)
    for _ in range(blotches):
        cy, cx, radius = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.1, 0.4)
        background = background - _uniform(rng, style.blotch_amplitude) * np.exp(
            -((y - cy) ** 2 + (x - cx) ** 2) / (2 * radius ** 2))
    image = background * (1.0 - density)
    for _ in range(int(rng.integers(0, style.dust_count + 1))):
        cy, cx, radius = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.5, 1.5) / size
        image = image * (1.0 - rng.uniform(0.2, 0.6) * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * radius ** 2)))
    image = image + rng.normal(0, _uniform(rng, style.noise), (size, size))
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def render_blots(count: int, size: int = 128, seed: int = 0, style: BlotStyle | None = None) -> np.ndarray:
    """`count` float32 [count, size, size] blots; image k depends only on (seed, k)."""
    if count < 1 or size < 8:
        raise ForensicsError(f"need count >= 1 and size >= 8, got count={count}, size={size}")
    style = style or BlotStyle()
    return np.stack([render_blot(size, np.random.default_rng([seed, index]), style) for index in range(count)])


def synthetic_blots(count: int = 2048, size: int = 128, seed: int = 0, style=None, bit_depth: int = 8) -> PatchSet:
    """Embedded default data for the WGAN: `count` procedurally rendered western blots, dark bands
    on a light membrane, each its own group. Deterministic: the same seed gives the same blots.

    `style` is a `keras_forensics.data.blots.BlotStyle` (default: a mix of clean and over-exposed
    blots); `bit_depth` 16 gives uint16 patches.
    """
    images = quantize(render_blots(count, size, seed, style), bit_depth)
    return PatchSet(images, np.arange(count), [f"synthetic_blot_{i:05d}" for i in range(count)])


def to_unit(patches: np.ndarray) -> np.ndarray:
    """uint8 / uint16 patches -> float32 in [0, 1]."""
    return patches.astype(np.float32) / np.float32(np.iinfo(patches.dtype).max)


def overexpose(patches: np.ndarray, gain: float = 2.0, spread: float = 1.0) -> np.ndarray:
    """Dark-on-light blots [N, S, S] or [N, S, S, C] (uint8 / uint16, or floats in [0, 1]) as if
    exposed `gain` times longer on a film or sensor that saturates: the darkness 1 - x is blurred
    by a Gaussian of `spread` px (the signal bleeds around a band), multiplied by `gain` and
    clipped at 1 (the band cores turn flat black; the membrane greys by the same factor).

    Deterministic, batched, and the same type out as in: the CycleGAN demo's "overexposed" domain
    imposed on real blots (`train cyclegan --domain_b_from_a overexposed`). Lossy on purpose: the
    clipped cores cannot be undone, so even a perfect B -> A generator leaves a cycle error there.
    """
    from scipy.ndimage import gaussian_filter

    if gain <= 0 or spread < 0:
        raise ForensicsError(f"overexpose needs gain > 0 and spread >= 0, got {gain}, {spread}")
    integer = np.issubdtype(patches.dtype, np.integer)
    images = to_unit(patches) if integer else np.asarray(patches, np.float32)
    darkness = 1.0 - images
    if spread:
        sigma = (0, spread, spread) + (0,) * (images.ndim - 3)
        darkness = gaussian_filter(darkness, sigma, mode="reflect")
    exposed = (1.0 - np.clip(gain * darkness, 0.0, 1.0)).astype(np.float32)
    return quantize(exposed, 16 if patches.dtype == np.uint16 else 8) if integer else exposed


#: The translations `train cyclegan --domain_b_from_a NAME` imposes on domain A to make domain B.
DOMAIN_TRANSFORMS = {"overexposed": overexpose}


def file_bit_depth(path) -> int:
    """16 for 16-bit (or float) image files, else 8, from the header only (`io.file_bit_depth`)."""
    return io.file_bit_depth(path)


def is_grayscale(image: np.ndarray, tolerance: float = 1.0 / 512) -> bool:
    """True for [H, W] images and for [H, W, 3] images whose three channels are equal."""
    return image.ndim == 2 or float(np.max(np.ptp(image, axis=-1))) <= tolerance


def dark_on_light(image: np.ndarray, polarity: str = "auto") -> np.ndarray:
    """Make bands dark on a light background.

    polarity "auto" inverts images whose median is below 0.5 (a chemiluminescence capture is mostly
    dark membrane with bright bands); "invert" always inverts; "keep" never does. Colour images
    [H, W, 3] are judged by their mean over channels.
    """
    if polarity not in ("auto", "keep", "invert"):
        raise ForensicsError(f"polarity must be auto, keep or invert, got {polarity!r}")
    brightness = image if image.ndim == 2 else image.mean(axis=-1)
    if polarity == "invert" or (polarity == "auto" and float(np.median(brightness)) < 0.5):
        return 1.0 - image
    return image


def tiles(image: np.ndarray, size: int, stride: int) -> np.ndarray:
    """All size x size tiles of `image` ([H, W] or [H, W, C]) on the grid of
    `ops.tiling.patch_corners` (every `stride`, the last row and column touching the far edges):
    [K, size, size(, C)]. Images smaller than a tile are reflect-padded (`patches.fit_to_patch`,
    per channel)."""
    if image.ndim == 3:
        image = np.stack([fit_to_patch(image[..., channel], size) for channel in range(image.shape[-1])], axis=-1)
    else:
        image = fit_to_patch(image, size)
    corners = tiling.patch_corners(image.shape[0], image.shape[1], size, stride)
    windows = np.lib.stride_tricks.sliding_window_view(image, (size, size), axis=(0, 1))
    if image.ndim == 3:  # [rows, columns, C, size, size] -> [rows, columns, size, size, C]
        windows = np.moveaxis(windows, 2, -1)
    return windows[corners[:, 0], corners[:, 1]]


def blot_folder(directory, size: int = 128, scale: float = 0.5, stride: int | None = None,
                min_std: float = 0.04, polarity: str = "auto", group_by: str | None = None, channels: int = 1):
    """Real blots below `directory` as dark-on-light tiles: (PatchSet, bit_depth).

    `tile_folder` with the blots' defaults: each image is made dark-on-light (`dark_on_light`),
    resized by `scale` and cut into `size` tiles every `stride` pixels (default size // 4); tiles
    whose std is below `min_std` are empty membrane and dropped.
    """
    return tile_folder(directory, size, scale, stride, min_std, polarity, group_by, channels)


def tile_folder(directory, size: int, scale: float = 1.0, stride: int | None = None, min_std: float = 0.0,
                polarity: str = "keep", group_by: str | None = None, channels: int = 1):
    """Every image below `directory` as `size` tiles: (PatchSet, bit_depth).

    Each image is read (`io.scan_images`, which skips unreadable files with a warning) as
    grayscale (`channels=1`; colour is reduced to luminance, with a warning) or RGB
    (`channels=3`; a folder of only grayscale images is an error, since a colour model would
    learn three equal channels), oriented by `polarity` (`dark_on_light`), resized by `scale`
    with anti-aliasing, and cut into tiles every `stride` pixels (default size // 4). Tiles whose
    std is below `min_std` are dropped (each image keeps its best tile). Groups follow
    `patches.field_group`, or the `group_by` regex. The patches are uint16 if any file was
    16-bit, else uint8.
    """
    from skimage.transform import resize

    if channels not in (1, 3):
        raise ForensicsError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    directory = Path(directory)
    if not directory.exists():
        raise ForensicsError(f"{directory}: no such folder")
    group_of = regex_group(group_by) if group_by else field_group
    report = io.ScanReport()
    stride = stride or max(1, size // 4)
    images, groups, names, bit_depth, colour_files = [], [], [], 8, []
    for path, image in io.scan_images(directory, report=report, color=True):
        bit_depth = max(bit_depth, file_bit_depth(path))
        gray = is_grayscale(image)
        if not gray:
            colour_files.append(path.name)
        if channels == 1:  # luminance with the weights of io.read_image
            image = image[..., 0] if gray else np.clip(image @ io.LUMA_WEIGHTS, 0.0, 1.0)
        image = dark_on_light(image, polarity)
        if scale != 1.0:
            shape = (max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale)))
            image = resize(image, shape + image.shape[2:], order=1, anti_aliasing=scale < 1.0, preserve_range=True)
        cut = tiles(image.astype(np.float32), size, stride)
        spread = cut.reshape(len(cut), -1).std(axis=1)
        keep = spread >= min_std
        keep[np.argmax(spread)] = True
        name = str(path.relative_to(directory).with_suffix("")) if directory.is_dir() else path.stem
        group = group_of(name)
        if group not in names:
            names.append(group)
        images.append(cut[keep])
        groups.append(np.full(int(keep.sum()), names.index(group)))
    if not images:
        raise ForensicsError(f"{directory}: no readable images ({report.summary()})")
    if channels == 3 and not colour_files:
        raise ForensicsError(f"{directory}: every image is grayscale, but the model is RGB (--channels 3); "
                             "use --channels 1 for grayscale images")
    if channels == 1 and colour_files:
        logger.warning("%s: %d colour image(s) (e.g. %s) reduced to grayscale; use --channels 3 for an RGB model",
                       directory, len(colour_files), colour_files[0])
    if report.skipped:
        logger.warning("%s: %s", directory, report.summary())
    patches = quantize(np.concatenate(images), bit_depth)
    return PatchSet(patches, np.concatenate(groups), names), bit_depth


def folders_as_tiles(folders, flag: str = "--data", **tile_options):
    """`tile_folder` over several folders, as one (PatchSet, bit_depth): group names are prefixed
    with their folder's name, and one 16-bit folder makes every tile 16-bit. `flag` names the
    command-line option in the error for a missing folder."""
    parts = []
    for folder in folders:
        if not Path(folder).is_dir():
            raise ForensicsError(f"{flag} {folder}: no such folder")
        part, depth = tile_folder(folder, **tile_options)
        part.names = [f"{Path(folder).name}/{name}" for name in part.names]
        parts.append((part, depth))
    if not parts:
        raise ForensicsError(f"{flag}: no folders given")
    bit_depth = max(depth for _, depth in parts)
    patchset = None
    for part, depth in parts:
        if depth != bit_depth:
            part.patches = quantize(to_unit(part.patches), bit_depth)
        patchset = part if patchset is None else patchset.concatenate(part)
    return patchset, bit_depth
