"""Training data as 256x256 grayscale patches, grouped by source image.

* `sample_micrographs()`: embedded default data, built from images that ship inside
  scikit-image (nothing is downloaded), so every command runs on a fresh machine.
* `folder(DIR)`: the same from a user's folder of images of any size.

Both return a `PatchSet`: uint8 patches plus, for each patch, the index of its *group* (the source
image, or the set of images showing the same field). Splits are made by group, never by patch, so
no source image appears in two splits.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from pathlib import Path

import numpy as np

from keras_forensics.data import io
from keras_forensics.errors import ForensicsError

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class PatchSet:
    """Patches [N, S, S] uint8, `groups` [N] int (index into `names`), `names` of the groups."""

    patches: np.ndarray
    groups: np.ndarray
    names: list[str]

    def __len__(self) -> int:
        return len(self.patches)

    @property
    def num_groups(self) -> int:
        return len(self.names)

    def subset(self, group_names) -> "PatchSet":
        """The patches of the named groups, renumbered."""
        keep = [self.names.index(n) for n in group_names]
        mapping = np.full(self.num_groups, -1)
        mapping[keep] = np.arange(len(keep))
        mask = np.isin(self.groups, keep)
        return PatchSet(self.patches[mask], mapping[self.groups[mask]], list(group_names))

    def concatenate(self, other: "PatchSet") -> "PatchSet":
        return PatchSet(
            np.concatenate([self.patches, other.patches]),
            np.concatenate([self.groups, other.groups + self.num_groups]),
            self.names + other.names,
        )

    def split(self, fractions=(0.8, 0.1, 0.1), seed: int = 0) -> dict[str, list[str]]:
        """Assign whole groups to train/validation/test, fixed by `seed`.

        Every split gets at least one group when there are at least three.
        """
        if self.num_groups < 3:
            raise ForensicsError(
                f"need at least 3 distinct source images to split into train/validation/test, "
                f"got {self.num_groups}"
            )
        order = np.random.default_rng(seed).permutation(self.num_groups)
        n_val = max(1, int(round(fractions[1] * self.num_groups)))
        n_test = max(1, int(round(fractions[2] * self.num_groups)))
        n_train = self.num_groups - n_val - n_test
        names = [self.names[i] for i in order]
        return {
            "train": sorted(names[:n_train]),
            "validation": sorted(names[n_train:n_train + n_val]),
            "test": sorted(names[n_train + n_val:]),
        }


def save_split(split: dict, path) -> None:
    Path(path).write_text(json.dumps(split, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------
# turning images into patches


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def fit_to_patch(image: np.ndarray, patch_size: int) -> np.ndarray:
    """Make an image at least `patch_size` on each side.

    Images at least half the patch size are reflect-padded (no resampling of real pixels);
    smaller ones are upscaled first (bilinear) so the padding does not dominate.
    """
    from skimage.transform import resize

    height, width = image.shape
    if min(height, width) < patch_size // 2:
        factor = (patch_size // 2) / min(height, width)
        image = resize(
            image, (int(np.ceil(height * factor)), int(np.ceil(width * factor))),
            order=1, anti_aliasing=False, preserve_range=True,
        ).astype(np.float32)
        height, width = image.shape
    pad_h, pad_w = max(0, patch_size - height), max(0, patch_size - width)
    if pad_h or pad_w:
        image = np.pad(
            image, ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2)), mode="reflect"
        )
    return image


def image_patches(
    image: np.ndarray,
    patch_size: int = 256,
    mode: str = "tiles",
    stride: int | None = None,
    num_random: int = 8,
    rng: np.random.Generator | None = None,
    min_std: float = 0.02,
) -> np.ndarray:
    """Cut uint8 patches [K, S, S] from one float image.

    mode="tiles": a regular grid with `stride` (default: half a patch), anchored so the last tile
    touches the far edge. mode="random": `num_random` uniformly placed patches.
    Nearly flat patches (std below `min_std`) are dropped, since empty background is not a
    useful training example; the image's best patch is always kept.
    """
    image = fit_to_patch(image, patch_size)
    height, width = image.shape
    if mode == "tiles":
        stride = stride or patch_size // 2

        def starts(extent):
            positions = list(range(0, extent - patch_size + 1, stride))
            if positions[-1] != extent - patch_size:
                positions.append(extent - patch_size)
            return positions

        corners = [(y, x) for y in starts(height) for x in starts(width)]
    elif mode == "random":
        rng = rng or np.random.default_rng(0)
        corners = list(zip(
            rng.integers(0, height - patch_size + 1, num_random),
            rng.integers(0, width - patch_size + 1, num_random),
        ))
    else:
        raise ForensicsError(f"unknown patch mode {mode!r} (use 'tiles' or 'random')")
    patches = np.stack([image[y:y + patch_size, x:x + patch_size] for y, x in corners])
    spread = patches.reshape(len(patches), -1).std(axis=1)
    keep = spread >= min_std
    if not keep.any():
        keep[np.argmax(spread)] = True
    return to_uint8(patches[keep])


def downscale(image: np.ndarray, scale: float) -> np.ndarray:
    """`image` resized by `scale` (< 1) with anti-aliasing, as a figure panel shrinks a micrograph."""
    from skimage.transform import resize

    height, width = image.shape
    shape = (max(1, round(height * scale)), max(1, round(width * scale)))
    return resize(image, shape, order=1, anti_aliasing=True, preserve_range=True).astype(np.float32)


def multiscale_patches(image: np.ndarray, patch_size: int, mode: str, stride, num_random, rng,
                       scales=(1.0,), max_per_image: int | None = None) -> np.ndarray:
    """Patches of `image` at each of `scales` (1 = native resolution).

    A figure panel is usually a micrograph shrunk to fit, so a model that only saw native-resolution
    crops meets an unfamiliar scale at screening time. Scales at which the image's short side
    would fall below 3/4 of a patch are skipped (the patch would be mostly padding); the first
    scale is always used. Every scale used contributes as many patches as the first one (smaller
    sets are repeated; the deformations make each repeat a different example), so the shrunken
    views are not a small minority of the training set. `max_per_image` caps each scale's count.
    """
    views = []
    for index, scale in enumerate(scales):
        if index and min(image.shape) * scale < 0.75 * patch_size:
            continue
        view = image if scale == 1.0 else downscale(image, scale)
        cut = image_patches(view, patch_size, mode, stride, num_random, rng)
        if max_per_image and len(cut) > max_per_image:
            cut = cut[np.sort(rng.choice(len(cut), max_per_image, replace=False))]
        views.append(cut)
    target = len(views[0])
    return np.concatenate([np.resize(v, (target, *v.shape[1:])) if len(v) < target else v for v in views])


def _build(named_images, patch_size, mode, stride, num_random, seed, group_of,
           max_per_image: int | None = None, scales=(1.0,)) -> PatchSet:
    rng = np.random.default_rng(seed)
    patches, groups, names = [], [], []
    for name, image in named_images:
        group = group_of(name)
        if group not in names:
            names.append(group)
        cut = multiscale_patches(image, patch_size, mode, stride, num_random, rng, scales, max_per_image)
        patches.append(cut)
        groups.append(np.full(len(cut), names.index(group)))
    if not patches:
        raise ForensicsError("no readable images to make patches from")
    return PatchSet(np.concatenate(patches), np.concatenate(groups), names)


# ---------------------------------------------------------------------------------------------
# grouping of files that show the same field

_CHANNEL_SUFFIX = re.compile(r"(__c\d+|__z\d+)$")


def field_group(name: str) -> str:
    """The group key of a file stem: channel / plane siblings (`..__c0`, `..__c1`) share one.

    Pass a `group_by` regex to `folder()` for other naming schemes: every part of the name it
    matches is removed, and files whose names become equal form one group.
    """
    return _CHANNEL_SUFFIX.sub("", name)


def regex_group(pattern: str):
    """A group key that removes every match of `pattern` (after `field_group`)."""
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise ForensicsError(f"--group_by {pattern!r} is not a valid regular expression: {error}") from None

    def key(name: str) -> str:
        return compiled.sub("", field_group(name))

    return key


# ---------------------------------------------------------------------------------------------
# the datasets


def folder(
    directory,
    patch_size: int = 256,
    mode: str = "tiles",
    stride: int | None = None,
    num_random: int = 8,
    seed: int = 0,
    group_by: str | None = None,
    max_pixels: int = io.DEFAULT_MAX_PIXELS,
    max_per_image: int | None = None,
    scales=(1.0,),
) -> PatchSet:
    """Patches from every readable image below `directory` (recursive), at each of `scales`
    (see `multiscale_patches`).

    Unreadable files are skipped with a warning (see `io.scan_images`). Each file is its own
    group, except channel siblings (`name__c0`, `name__c1`); `group_by` is a regex whose match
    (or first group) names the group, for other conventions.
    """
    directory = Path(directory)
    report = io.ScanReport()
    group_of = regex_group(group_by) if group_by else field_group
    named = (
        (str(path.relative_to(directory).with_suffix("")) if directory.is_dir() else path.stem, image)
        for path, image in io.scan_images(directory, max_pixels=max_pixels, report=report)
    )
    patches = _build(named, patch_size, mode, stride, num_random, seed, group_of, max_per_image, scales)
    if report.skipped:
        logger.warning("%s: %s", directory, report.summary())
    return patches


#: scikit-image's bundled images used by `sample_micrographs`: (name, loader, role).
_MICROSCOPY = ("cell", "immunohistochemistry", "retina", "microaneurysms")
_TEXTURES = ("camera", "coins", "moon", "page", "text", "brick", "grass", "gravel", "clock",
             "hubble_deep_field", "astronaut", "coffee", "chelsea", "rocket", "horse")


def _skimage_image(name: str) -> np.ndarray:
    import skimage.data

    image = np.asarray(getattr(skimage.data, name)())
    if image.dtype == bool:
        image = image.astype(np.float32)
    elif np.issubdtype(image.dtype, np.integer):
        image = image.astype(np.float32) / np.iinfo(image.dtype).max
    image = image.astype(np.float32)
    if image.ndim == 3:
        image = image[..., :3] @ io.LUMA_WEIGHTS
    return image


def sample_micrographs(patch_size: int = 256, include_textures: bool = True, seed: int = 0,
                       scales=(1.0,)) -> PatchSet:
    """The embedded default training data: patches of scikit-image's bundled images.

    Microscopy: `cell`, `immunohistochemistry` (split into its 3 stain channels), `retina` (its
    channels), and `microaneurysms` (upscaled). Textures (`camera`, `coins`, `moon`, `page`, ...)
    are distractors that make the "different" examples harder and the groups more numerous.
    Every image ships inside the scikit-image wheel; nothing is downloaded.
    """
    import skimage.data

    named = []
    for name in _MICROSCOPY:
        image = np.asarray(getattr(skimage.data, name)())
        if image.ndim == 3:  # colour stains: each channel is a different view of the tissue
            for channel in range(3):
                plane = image[..., channel].astype(np.float32) / 255.0
                # Channels of one image share a field: one group (see field_group).
                named.append((f"{name}__c{channel}", plane))
        else:
            named.append((name, _skimage_image(name)))
    if include_textures:
        named.extend((name, _skimage_image(name)) for name in _TEXTURES)
    # Tiles overlapping by 3/4 give many patches from few images; the cap keeps the large retina
    # from dominating the set.
    return _build(named, patch_size, "tiles", patch_size // 4, 0, seed, field_group, max_per_image=48,
                  scales=scales)


# ---------------------------------------------------------------------------------------------
# western blots (the WGAN's data; see keras_forensics.data.blots)


def synthetic_blots(count: int = 2048, size: int = 128, seed: int = 0, style=None, bit_depth: int = 8) -> PatchSet:
    """Embedded default data for the WGAN: `count` procedurally rendered western blots, dark bands
    on a light membrane, each its own group. Deterministic: the same seed gives the same blots.

    `style` is a `keras_forensics.data.blots.BlotStyle` (default: a mix of clean and over-exposed
    blots); `bit_depth` 16 gives uint16 patches.
    """
    from keras_forensics.data import blots

    images = blots.quantize(blots.render_blots(count, size, seed, style), bit_depth)
    return PatchSet(images, np.arange(count), [f"synthetic_blot_{i:05d}" for i in range(count)])


def blot_folder(directory, size: int = 128, scale: float = 0.5, polarity: str = "auto",
                group_by: str | None = None, **options) -> PatchSet:
    """Real western blots from a folder (e.g. ../shared/data/western_blots/real) as dark-on-light
    `size` tiles of the images resized by `scale`; see `keras_forensics.data.blots.blot_folder`."""
    from keras_forensics.data import blots

    patchset, _ = blots.blot_folder(directory, size, scale, polarity=polarity, group_by=group_by, **options)
    return patchset
