"""The random manipulations that train the Siamese network (Cicconet et al., section 2.1)."""

from __future__ import annotations

import dataclasses

from keras_forensics.config.base import check_probabilities
from keras_forensics.errors import ForensicsError


@dataclasses.dataclass(frozen=True)
class DeformationConfig:
    """The random manipulations of Cicconet et al. (section 2.1, and V02/image_distortions.py).

    Geometry: with probability `p_geometric` the geometric group (reflection, perspective,
    similarity, each with its own probability) is applied, composed into one projective warp that
    also performs the centre crop; then the photometric group (JPEG, gamma, one local edit). With
    probability 1 - `p_geometric` the image is only cropped, as in the paper. Clutter (text or a
    rectangle outline) is applied to every image of a triplet, anchors included.

    Lengths are in pixels of the `patch_size` input; radii of local edits are fractions of
    `crop_size`.
    """

    patch_size: int = 256
    crop_size: int = 128
    p_geometric: float = 0.9
    # geometric group
    p_reflection: float = 0.5
    p_perspective: float = 0.5
    perspective_max_shift: float = 20.0
    p_similarity: float = 0.5
    max_rotation_degrees: float = 45.0
    scale_range: tuple[float, float] = (0.5, 1.5)
    max_translation: float = 20.0
    # a quarter, half or three-quarter turn (uniform), on top of the above: re-used panels are
    # often turned by 90 degrees, which the paper's +-45 degrees and flips never produce (flips make
    # 180 degrees, not 90); 0 = the paper's recipe
    p_rotate90: float = 0.0
    # photometric group
    p_jpeg: float = 0.5
    jpeg_quality_range: tuple[int, int] = (10, 50)
    p_gamma: float = 0.5
    gamma_range: tuple[float, float] = (0.5, 2.0)
    p_local_edit: float = 0.5
    # erase / local contrast / copy-move are chosen with equal probability
    erase_radius_range: tuple[float, float] = (0.05, 0.2)
    contrast_radius_range: tuple[float, float] = (0.05, 0.2)
    contrast_factor_range: tuple[float, float] = (1.5, 2.0)
    copy_move_radius_range: tuple[float, float] = (0.05, 0.15)
    soft_edge: float = 0.04
    # clutter, on all three images of a triplet
    p_text: float = 0.25
    p_rectangle: float = 0.25
    text_intensity_range: tuple[float, float] = (0.75, 1.0)
    text_bank_size: int = 128
    text_length_range: tuple[int, int] = (5, 15)
    max_rectangle_thickness: int = 2

    def __post_init__(self):
        if self.crop_size > self.patch_size:
            raise ForensicsError(
                f"crop_size ({self.crop_size}) must not exceed patch_size ({self.patch_size})"
            )
        check_probabilities(self)
        if self.p_text + self.p_rectangle > 1.0:
            raise ForensicsError("p_text + p_rectangle must not exceed 1")
        lo, hi = self.jpeg_quality_range
        if not 1 <= lo <= hi <= 100:
            raise ForensicsError(f"jpeg_quality_range must lie in [1, 100], got {self.jpeg_quality_range}")

    @classmethod
    def identity(cls, **overrides) -> "DeformationConfig":
        """A config that changes nothing but the crop: every probability is 0."""
        zeros = {f.name: 0.0 for f in dataclasses.fields(cls) if f.name.startswith("p_")}
        zeros.update(overrides)
        return cls(**zeros)
