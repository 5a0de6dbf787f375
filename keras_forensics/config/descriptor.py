"""The copy-detection descriptor (issue 14): SSCD-style training of the Siamese embedding
(`python -m keras_forensics.train descriptor`)."""

from __future__ import annotations

import dataclasses

from keras_forensics.config.base import check_probabilities, check_strategy
from keras_forensics.config.deformation import DeformationConfig
from keras_forensics.errors import ForensicsError


@dataclasses.dataclass(frozen=True)
class DescriptorConfig:
    """The copy-detection descriptor (keras_forensics/models/descriptor.py), 128x128x1 -> 128-d.

    Per-image normalisation, a `backbone` from keras.applications trained from scratch
    (`weights=None`), GeM pooling, a linear projection to `embedding_dim` and L2 normalisation
    (Pizzi et al., SSCD, CVPR 2022). With `orientation_pooling`, inference embeds each image in its
    8 orientations and averages them, so the descriptor is exactly invariant to quarter turns and
    mirroring (training learns it from augmentations, at 1/8 of the cost).
    """

    input_size: int = 128
    backbone: str = "mobilenet_v3_small"  # or "mobilenet_v3_large", "efficientnet_b0"
    minimalistic: bool = False  # MobileNetV3's variant without squeeze-excite and hard-swish
    width: float = 1.0  # MobileNetV3's alpha
    embedding_dim: int = 128
    gem_p: float = 3.0
    pixel_normalization: bool = True
    orientation_pooling: bool = True

    def __post_init__(self):
        if self.backbone not in DESCRIPTOR_BACKBONES:
            raise ForensicsError(f"--backbone must be one of {', '.join(DESCRIPTOR_BACKBONES)}, got {self.backbone!r}")
        if self.input_size < 32 or self.embedding_dim < 2 or self.gem_p < 1 or self.width <= 0:
            raise ForensicsError("--input_size must be >= 32, --embedding_dim >= 2, --gem_p >= 1, --width > 0")


DESCRIPTOR_BACKBONES = ("mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0")


@dataclasses.dataclass(frozen=True)
class CopyAugmentConfig:
    """Re-use edits on top of `DeformationConfig`'s, each with its own probability: resolution
    loss (down-sampled by a factor in `downscale_range` and up-sampled back, as a panel shrunk in
    a figure and enlarged again), Gaussian blur or unsharp-mask sharpening, a global intensity
    change x * a + b, and a scale bar (a filled bar near a corner)."""

    p_downscale: float = 0.4
    downscale_range: tuple[float, float] = (0.25, 1.0)
    p_blur: float = 0.15
    blur_sigma_range: tuple[float, float] = (0.5, 1.5)
    p_sharpen: float = 0.15
    sharpen_amount_range: tuple[float, float] = (0.5, 1.5)
    p_intensity: float = 0.5
    intensity_scale_range: tuple[float, float] = (0.6, 1.4)
    intensity_shift_range: tuple[float, float] = (-0.2, 0.2)
    p_scale_bar: float = 0.2
    # both views of a patch share one random orientation of it; the turns between a panel and its
    # re-use are the orbit pooling's job (DescriptorConfig.orientation_pooling), not the views'
    shared_orientation: bool = True

    def __post_init__(self):
        check_probabilities(self)
        low, high = self.downscale_range
        if not 0.0 < low <= high <= 1.0:
            raise ForensicsError(f"downscale_range must lie in (0, 1], got {self.downscale_range}")


#: The re-use geometry between the two views: crops down to about 30 % of the area (scale 1.8),
#: mild perspective and rotation, JPEG 15-95. No turns or mirrors between the views: measured on
#: the first shipped run, a from-scratch MobileNetV3 with turns between the views stayed below
#: chance (InfoNCE 5.4 > log 127 after 600 steps); the orbit pooling makes the embedding
#: exactly invariant to them instead, and `shared_orientation` shows the content in all 8.
DESCRIPTOR_DEFORMATION = dict(
    p_geometric=0.95, p_reflection=0.0, p_perspective=0.3, perspective_max_shift=10.0, p_similarity=0.8,
    max_rotation_degrees=10.0, scale_range=(0.75, 1.8), max_translation=24.0, p_rotate90=0.0,
    p_jpeg=0.5, jpeg_quality_range=(15, 95), p_gamma=0.4, p_local_edit=0.4, p_text=0.3, p_rectangle=0.15,
)


@dataclasses.dataclass(frozen=True)
class DescriptorTrainConfig:
    """Everything `python -m keras_forensics.train descriptor` does, and the data it does it on.

    Each batch holds `batch_size` patches, a `sibling_fraction` of them other patches of the same
    field group as other members (hard negatives: another crop of the same micrograph, another
    channel or time point of the same field), each in two independently augmented views. The loss
    is InfoNCE over the 2 `batch_size` views (every other view is a negative) at `temperature`,
    plus `koleo_weight` times the KoLeo entropy regulariser (SSCD).
    """

    model: DescriptorConfig = dataclasses.field(default_factory=DescriptorConfig)
    deformation: DeformationConfig = dataclasses.field(
        default_factory=lambda: DeformationConfig(**DESCRIPTOR_DEFORMATION))
    augmentation: CopyAugmentConfig = dataclasses.field(default_factory=CopyAugmentConfig)
    data: tuple[str, ...] = ()  # folders; empty = the embedded sample micrographs
    include_embedded: bool = False
    group_by: str | None = None
    patch_mode: str = "tiles"
    patch_scales: tuple[float, ...] = (1.0,)
    steps: int = 600
    batch_size: int = 64
    sibling_fraction: float = 0.25
    temperature: float = 0.05
    koleo_weight: float = 10.0
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    decay: str = "cosine"
    validate_every: int = 100
    validation_pairs: int = 512
    test_pairs: int = 1000
    patience: int = 0
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    strategy: str = "default"
    precision: str = "float32"

    def __post_init__(self):
        check_strategy(self.strategy)
        if self.precision not in ("float32", "mixed_bfloat16", "mixed_float16"):
            raise ForensicsError(f"--precision must be float32, mixed_bfloat16 or mixed_float16, got {self.precision!r}")
        if self.steps < 1 or self.batch_size < 4 or self.validate_every < 1:
            raise ForensicsError("--steps and --validate_every must be positive and --batch_size at least 4")
        if not 0.0 <= self.sibling_fraction <= 0.5:
            raise ForensicsError(f"--sibling_fraction must lie in [0, 0.5], got {self.sibling_fraction}")
        if self.temperature <= 0 or self.koleo_weight < 0 or self.learning_rate <= 0 or self.weight_decay < 0:
            raise ForensicsError("--temperature and --learning_rate must be positive, --koleo_weight and "
                                 "--weight_decay non-negative")
        if self.decay not in ("cosine", "constant"):
            raise ForensicsError(f"--decay must be 'cosine' or 'constant', got {self.decay!r}")
        if not self.patch_scales or not all(0 < s <= 1 for s in self.patch_scales):
            raise ForensicsError(f"--patch_scales must be numbers in (0, 1], got {self.patch_scales!r}")
        if self.model.input_size != self.deformation.crop_size:
            raise ForensicsError(
                f"--input_size ({self.model.input_size}) must equal --crop_size ({self.deformation.crop_size})")
