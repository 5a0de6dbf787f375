"""Training data from folders of images and the embedded default data, as grouped patches.

* `sample_micrographs()`: embedded default data, built from images that ship inside
  scikit-image (nothing is downloaded), so every command runs on a fresh machine.
* `folder(DIR)`: the same from a user's folder of images of any size.

Both return a `keras_forensics.data.patches.PatchSet` of 256x256 grayscale patches by default.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from keras_forensics.data import io
from keras_forensics.data.patches import PatchSet, field_group, patchset_from_images, regex_group

logger = logging.getLogger(__name__)

__all__ = ["folder", "sample_micrographs", "PatchSet"]


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
    patches = patchset_from_images(named, patch_size, mode, stride, num_random, seed, group_of, max_per_image, scales)
    if report.skipped:
        logger.warning("%s: %s", directory, report.summary())
    return patches


#: scikit-image's bundled images used by `sample_micrographs`: (name, loader, role).
_MICROSCOPY = ("cell", "immunohistochemistry", "retina", "microaneurysms")
_TEXTURES = ("camera", "coins", "moon", "page", "text", "brick", "grass", "gravel", "clock",
             "hubble_deep_field", "astronaut", "coffee", "chelsea", "rocket", "horse")
#: every embedded image, by name (`embedded_image(name)` reads one)
EMBEDDED_IMAGES = _MICROSCOPY + _TEXTURES


def embedded_image(name: str) -> np.ndarray:
    """One of `EMBEDDED_IMAGES` as a float32 [H, W] image in [0, 1] (grayscale)."""
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
            named.append((name, embedded_image(name)))
    if include_textures:
        named.extend((name, embedded_image(name)) for name in _TEXTURES)
    # Tiles overlapping by 3/4 give many patches from few images; the cap keeps the large retina
    # from dominating the set.
    return patchset_from_images(named, patch_size, "tiles", patch_size // 4, 0, seed, field_group, max_per_image=48,
                  scales=scales)
