"""The data API of the README in one import: `from keras_forensics import datasets`.

A facade only (nothing inside the package imports it): the code lives in
keras_forensics.data.patches (PatchSet, patch cutting, group keys), data.folders (folders of
images, the embedded micrographs) and data.blots (western blots).
"""

from __future__ import annotations

from keras_forensics.data.blots import synthetic_blots
from keras_forensics.data.folders import folder, sample_micrographs
from keras_forensics.data.patches import (PatchSet, downscale, field_group, fit_to_patch, image_patches,
                                          multiscale_patches, regex_group, save_split, to_uint8)

__all__ = ["PatchSet", "blot_folder", "downscale", "field_group", "fit_to_patch", "folder", "image_patches",
           "multiscale_patches", "regex_group", "sample_micrographs", "save_split", "synthetic_blots", "to_uint8"]


def blot_folder(directory, size: int = 128, scale: float = 0.5, polarity: str = "auto",
                group_by: str | None = None, **options) -> PatchSet:
    """Real western blots from a folder (e.g. ../shared/data/western_blots/real) as dark-on-light
    `size` tiles of the images resized by `scale`; see `keras_forensics.data.blots.blot_folder`."""
    from keras_forensics.data import blots

    patchset, _ = blots.blot_folder(directory, size, scale, polarity=polarity, group_by=group_by, **options)
    return patchset
