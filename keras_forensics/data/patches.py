"""Patches grouped by source image: `PatchSet`, cutting images into patches, and group keys.

A `PatchSet` holds uint8 patches plus, for each patch, the index of its *group* (the source
image, or the set of images showing the same field). Splits are made by group, never by patch, so
no source image appears in two splits. The patch grid is keras_forensics.ops.tiling's, the one
the detector and its serving signature use too. Folders and the embedded data are
keras_forensics.data.folders.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from pathlib import Path

import numpy as np

from keras_forensics.errors import ForensicsError
from keras_forensics.ops import tiling

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
        position = {name: number for number, name in enumerate(self.names)}
        keep = [position[n] for n in group_names]
        mapping = np.full(self.num_groups, -1)
        mapping[keep] = np.arange(len(keep))
        mask = np.isin(self.groups, keep)
        return PatchSet(self.patches[mask], mapping[self.groups[mask]], list(group_names))

    def take(self, indices) -> "PatchSet":
        """The patches at `indices`, each keeping its group (renumbered over the groups present),
        so a "different" patch is still drawn from another image or field."""
        indices = np.asarray(indices, np.int64)
        present, groups = np.unique(self.groups[indices], return_inverse=True)
        return PatchSet(self.patches[indices], groups.astype(self.groups.dtype), [self.names[g] for g in present])

    def split_patches(self, fractions=(0.8, 0.1, 0.1), seed: int = 0) -> dict[str, list[int]]:
        """Patch indices assigned at random to train/validation/test, fixed by `seed`: the protocol
        of Cicconet et al., whose non-overlapping 256 px patches were split at random, so one
        image gives patches to train and test alike (`--split_by patch`; `take` makes the parts)."""
        if len(self) < 3:
            raise ForensicsError(f"need at least 3 patches to split into train/validation/test, got {len(self)}")
        parts = _random_parts(len(self), fractions, seed)
        return {name: sorted(int(i) for i in part) for name, part in parts.items()}

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
        parts = _random_parts(self.num_groups, fractions, seed)
        return {name: sorted(self.names[i] for i in part) for name, part in parts.items()}


def _random_parts(count: int, fractions, seed: int) -> dict[str, np.ndarray]:
    """{train, validation, test}: a seeded permutation of range(count) cut by `fractions`, each
    of validation and test holding at least one item (the rest is train)."""
    order = np.random.default_rng(seed).permutation(count)
    n_val = max(1, int(round(fractions[1] * count)))
    n_test = max(1, int(round(fractions[2] * count)))
    n_train = count - n_val - n_test
    return {"train": order[:n_train], "validation": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}


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
        corners = tiling.patch_corners(height, width, patch_size, stride or patch_size // 2)
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


def patchset_from_images(named_images, patch_size, mode, stride, num_random, seed, group_of,
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
