"""Every hyper-parameter of every experiment, as one frozen dataclass per experiment.

Each command line flag of `python -m keras_forensics.train ...` maps to a field of these classes,
and the resolved config is written as config.json beside each run, so a run is described by its
config alone (TF Model Garden's convention).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

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
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name.startswith("p_") and not 0.0 <= value <= 1.0:
                raise ForensicsError(f"{field.name} must be a probability in [0, 1], got {value}")
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


def to_dict(config) -> dict:
    """A JSON-ready dict of a (possibly nested) config dataclass."""
    return dataclasses.asdict(config)


def from_dict(cls, values: dict):
    """Rebuild a config dataclass from `to_dict` output (nested dataclasses and tuples restored)."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for field in dataclasses.fields(cls):
        if field.name not in values:
            continue
        value = values[field.name]
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = from_dict(hint, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[field.name] = value
    return cls(**kwargs)


def replace(config, **overrides):
    """`dataclasses.replace` with a clear error for unknown fields and dotted nested names.

    `replace(cfg, **{"deformation.p_jpeg": 0.0})` changes a field of a nested config; flat names
    that match exactly one nested field (`p_jpeg=0.0`) are accepted too, so every field is a flag.
    """
    direct, nested = {}, {}
    names = {f.name: f for f in dataclasses.fields(config)}
    hints = typing.get_type_hints(type(config))
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if rest:
            if head not in names or not dataclasses.is_dataclass(getattr(config, head)):
                raise ForensicsError(f"unknown option --{key}")
            nested.setdefault(head, {})[rest] = value
        elif key in names:
            direct[key] = _coerce(getattr(config, key), value, key, hints.get(key))
        else:
            owners = [
                n for n, f in names.items()
                if dataclasses.is_dataclass(getattr(config, n))
                and key in {g.name for g in dataclasses.fields(getattr(config, n))}
            ]
            if len(owners) != 1:
                known = ", ".join(sorted(names))
                raise ForensicsError(f"unknown option --{key} (known: {known})")
            nested.setdefault(owners[0], {})[key] = value
    for head, values in nested.items():
        direct[head] = replace(getattr(config, head), **values)
    try:
        return dataclasses.replace(config, **direct)
    except TypeError as error:
        raise ForensicsError(str(error)) from None


def _coerce(current, value, name, hint=None):
    """Make a CLI value match the type of the field it sets (fire parses '1' as int, '1,2' as tuple).

    A `tuple[X, ...]` field takes any number of values; a `tuple[X, Y]` field exactly that many.
    """
    if isinstance(current, bool):
        if isinstance(value, str):
            value = value.lower() in ("1", "true", "yes")
        return bool(value)
    if isinstance(current, tuple):
        if isinstance(value, str):
            value = [v for v in value.replace("(", "").replace(")", "").split(",") if v.strip()]
        if isinstance(value, (str, int, float)):
            value = (value,)
        value = tuple(type(current[0])(v) for v in value) if current else tuple(value)
        variable = Ellipsis in typing.get_args(hint) or not current
        if not variable and len(value) != len(current):
            raise ForensicsError(f"--{name} takes {len(current)} values, got {len(value)}")
        return value
    if isinstance(current, float) and isinstance(value, (int, float)):
        return float(value)
    if isinstance(current, int) and not isinstance(current, bool):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if not isinstance(value, int):
            raise ForensicsError(f"--{name} takes a whole number, got {value!r}")
    return value


def save(config, path: str | Path) -> None:
    Path(path).write_text(json.dumps(to_dict(config), indent=2) + "\n")


def load(cls, path: str | Path):
    return from_dict(cls, json.loads(Path(path).read_text()))


@dataclasses.dataclass(frozen=True)
class SiameseConfig:
    """The embedding branch of Cicconet et al. (ImageForensics V01/Models.py), 128x128x1 -> 128-d.

    The defaults are the paper's network: per-image normalisation, batch norm, two 3x3 convs with
    `filters[0]` channels, then one stage per further entry of `filters`, each [batch norm ->
    LRN -> 1x1 conv (network in network) -> two 3x3 convs -> 2x2 max-pool], then batch norm ->
    LRN -> 1x1 conv -> flatten -> dense `dense_units` -> batch norm -> dense `embedding_dim`.
    `residual` adds V02's 1x1-projection shortcut around each stage.
    """

    input_size: int = 128
    filters: tuple[int, ...] = (16, 32, 64, 128)
    kernel_size: int = 3
    dense_units: int = 1024
    dense_activation: str | None = None  # the original's 1024-unit layer is linear
    embedding_dim: int = 128
    pixel_normalization: bool = True
    local_response_normalization: bool = True
    network_in_network: bool = True
    residual: bool = False
    lrn_depth_radius: int = 5
    lrn_bias: float = 1.0
    lrn_alpha: float = 1.0
    lrn_beta: float = 0.5
    batch_norm_momentum: float = 0.9  # the original's moving-average decay
    batch_norm_epsilon: float = 1e-6
    initial_alpha: float = 0.01


@dataclasses.dataclass(frozen=True)
class SiameseTrainConfig:
    """Everything `python -m keras_forensics.train siamese` does, and the data it does it on.

    The default schedule is CPU-friendly (about 15 minutes on 2 cores); `preset="paper"` sets the
    paper's batch of 256, ~5000 steps and a momentum optimiser.
    """

    model: SiameseConfig = dataclasses.field(default_factory=SiameseConfig)
    deformation: DeformationConfig = dataclasses.field(default_factory=DeformationConfig)
    data: tuple[str, ...] = ()  # folders; empty = the embedded sample micrographs
    include_embedded: bool = False  # add the embedded sample micrographs to --data folders
    group_by: str | None = None  # regex naming the field group of a file (see datasets.folder)
    patch_mode: str = "tiles"
    # resolutions the training patches are cut at (1 = native; 0.5 = the image shrunk to half, as a
    # figure panel shrinks a micrograph); see datasets.multiscale_patches
    patch_scales: tuple[float, ...] = (1.0,)
    # start from the weights of this run directory or .keras file (fine-tuning); used only when
    # the run starts, not when it resumes
    init_from: str | None = None
    steps: int = 800
    batch_size: int = 32
    optimizer: str = "adam"  # "adam" or "momentum"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    warmup_steps: int = 100
    decay: str = "cosine"  # "cosine" or "constant"
    validate_every: int = 100
    validation_triplets: int = 512
    test_triplets: int = 1000
    patience: int = 0  # validation intervals without improvement before stopping; 0 = never
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    strategy: str = "default"  # "default", "mirrored" or "multiworker"
    # "float32", or "mixed_bfloat16" (about 1.5x faster training on CPUs with AVX512-BF16/AMX and on
    # recent GPUs; the saved model is loaded back in float32 for inference and export)
    precision: str = "float32"
    image_every: int = 500  # steps between TensorBoard triplet grids
    projector_size: int = 256  # validation embeddings written for TensorBoard's projector

    def __post_init__(self):
        if self.optimizer not in ("adam", "momentum"):
            raise ForensicsError(f"--optimizer must be 'adam' or 'momentum', got {self.optimizer!r}")
        if self.strategy not in ("default", "mirrored", "multiworker"):
            raise ForensicsError(f"--strategy must be default, mirrored or multiworker, got {self.strategy!r}")
        if self.precision not in ("float32", "mixed_bfloat16", "mixed_float16"):
            raise ForensicsError(f"--precision must be float32, mixed_bfloat16 or mixed_float16, got {self.precision!r}")
        if self.steps < 1 or self.batch_size < 1 or self.validate_every < 1:
            raise ForensicsError("--steps, --batch_size and --validate_every must be positive")
        if not self.patch_scales or not all(0 < s <= 1 for s in self.patch_scales):
            raise ForensicsError(f"--patch_scales must be numbers in (0, 1], got {self.patch_scales!r}")
        if self.model.input_size != self.deformation.crop_size:
            raise ForensicsError(
                f"--input_size ({self.model.input_size}) must equal --crop_size ({self.deformation.crop_size})"
            )


#: The field groups of ../shared/data/micrographs (SOURCES.md, "Field groups"): channels, time
#: points, modalities and z-planes of one field. Used by the shipped model's training run.
SHARED_MICROGRAPH_GROUPS = (
    r"_w\d_?[0-9A-F-]{36}$|(?<=f\d\d)d\d$|_[DFRG]$|^cpex__Channel_\d-|(h2ax2|hoe2)$|_t\d+$"
    r"|(?<=30-2A1)[bf]$|s?_?2d$|Sequence\d-|_\d{4}$|_(actin|mito|nuclei)$"
)

SIAMESE_PRESETS = {
    # Cicconet et al.: batch 256, momentum optimiser; the original summed the loss over the batch
    # with lr 1e-5, which is a mean loss with lr 256 * 1e-5.
    "paper": dict(batch_size=256, steps=5000, optimizer="momentum", learning_rate=2.56e-3,
                  momentum=0.9, warmup_steps=0, decay="constant", validate_every=100, patience=100),
    # A few minutes, for trying the whole path.
    "quick": dict(steps=200, validate_every=50, validation_triplets=256, test_triplets=256),
    # The shipped saved_models/siamese: ../shared/data/micrographs (run from the repository root)
    # plus the embedded data, split by field group.
    "shipped": dict(data=("../shared/data/micrographs",), include_embedded=True,
                    group_by=SHARED_MICROGRAPH_GROUPS, steps=6000, batch_size=64, validate_every=200,
                    warmup_steps=200, learning_rate=1e-3, validation_triplets=1024, test_triplets=2000),
}
# The shipped model's second stage: the "shipped" run (trained for 3600 steps at native resolution)
# fine-tuned on patches cut at native, half and quarter resolution (figure panels are micrographs
# shrunk to fit) and with quarter turns (panels are often re-used turned by 90 degrees); see
# README, "The Siamese duplicate detector".
SIAMESE_PRESETS["shipped_finetune"] = dict(
    SIAMESE_PRESETS["shipped"], patch_scales=(1.0, 0.5, 0.25), p_rotate90=0.5, init_from="runs/siamese/shipped",
    steps=1600, warmup_steps=100, learning_rate=5e-4, precision="mixed_bfloat16",
)


@dataclasses.dataclass(frozen=True)
class DetectorConfig:
    """The real-vs-synthetic patch classifier (keras_forensics/models/detector.py).

    kind="cnn": per-image normalisation, a full-resolution stem of two 3x3 convs (no early
    down-sampling, so the high-frequency traces of GAN up-sampling survive; Wang et al. CVPR 2020,
    Frank et al. 2020), then one residual stage per further entry of `filters` (each halves the
    resolution), global average pooling, dropout and a sigmoid unit. `spectrum_branch` adds a
    second branch fed by the centred log spectrum of the same patch (computed in the graph),
    concatenated before the classifier.

    kind="spectral": the Durall et al. 2020 baseline, logistic regression on the azimuthally
    averaged 1-D log power spectrum (`spectral_bins` rings; 0 = input_size // 2), with an L2
    penalty `l2`.
    """

    kind: str = "cnn"
    input_size: int = 64
    filters: tuple[int, ...] = (16, 32, 64, 128)
    blocks_per_stage: int = 1
    dropout: float = 0.2
    pixel_normalization: bool = True
    spectrum_branch: bool = True  # measured: test AUC 0.84 with it vs 0.78 without (equal budget)
    spectrum_filters: tuple[int, ...] = (8, 16, 32)
    spectral_bins: int = 0
    l2: float = 1e-4
    batch_norm_momentum: float = 0.99

    def __post_init__(self):
        if self.kind not in ("cnn", "spectral"):
            raise ForensicsError(f"--kind must be 'cnn' or 'spectral', got {self.kind!r}")
        if self.input_size < 16 or self.input_size % 2 ** max(len(self.filters) - 1, 0):
            raise ForensicsError(
                f"--input_size ({self.input_size}) must be >= 16 and divisible by "
                f"2 ** (number of stages - 1) = {2 ** max(len(self.filters) - 1, 0)}"
            )
        if not self.filters or not 0.0 <= self.dropout < 1.0:
            raise ForensicsError("--filters needs at least one entry and --dropout must lie in [0, 1)")


@dataclasses.dataclass(frozen=True)
class RobustnessConfig:
    """The detector's training augmentations (Wang et al. CVPR 2020, "CNN-generated images are
    surprisingly easy to spot... for now": blur and JPEG make a detector generalise).

    Applied per image, in this order: flips, polarity inversion (real blots come both as dark
    bands on light and light on dark), rescaling by a factor in `scale_range` (above 1: a random
    crop enlarged back to the patch; below 1: down-sampled and up-sampled back, as inference does
    for small images), Gaussian blur with sigma in `blur_sigma_range`, then JPEG at a quality in
    `jpeg_quality_range`, each with its own probability.
    """

    # Lighter than Wang et al.'s 0.5: measured better on clean and as good on JPEG(75) at the
    # CPU budget of the shipped run (README, "Detecting GAN-made images").
    p_flip: float = 0.5
    p_invert: float = 0.5
    p_resize: float = 0.3
    scale_range: tuple[float, float] = (0.5, 1.5)
    p_blur: float = 0.1
    blur_sigma_range: tuple[float, float] = (0.0, 2.0)
    p_jpeg: float = 0.3
    jpeg_quality_range: tuple[int, int] = (30, 100)

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name.startswith("p_") and not 0.0 <= value <= 1.0:
                raise ForensicsError(f"{field.name} must be a probability in [0, 1], got {value}")
        low, high = self.scale_range
        if not 0.0 < low <= high:
            raise ForensicsError(f"scale_range must be positive and increasing, got {self.scale_range}")
        low, high = self.jpeg_quality_range
        if not 1 <= low <= high <= 100:
            raise ForensicsError(f"jpeg_quality_range must lie in [1, 100], got {self.jpeg_quality_range}")

    @classmethod
    def identity(cls) -> "RobustnessConfig":
        return cls(**{f.name: 0.0 for f in dataclasses.fields(cls) if f.name.startswith("p_")})


@dataclasses.dataclass(frozen=True)
class DetectorTrainConfig:
    """Everything `python -m keras_forensics.train detector` does, and the data it does it on.

    Sources: every --real folder gives real patches; every --fake is a folder of synthetic
    images, a masked set (a folder with tampered/ and mask/, as polimi-ispl's synthetic western
    blots: the masked squares are fake, patches outside them real) or a saved generator
    (a SavedModel or a run dir with model.keras) sampled on the fly. Each folder source is split
    by source image (`group_by` regex, default the file, or the host blot of a masked set).
    With neither --real nor --fake, a demo runs on the embedded sample micrographs against
    fakes made from them by transposed-convolution up-sampling (checkerboard artefacts).
    """

    model: DetectorConfig = dataclasses.field(default_factory=DetectorConfig)
    augmentation: RobustnessConfig = dataclasses.field(default_factory=RobustnessConfig)
    real: tuple[str, ...] = ()
    fake: tuple[str, ...] = ()
    group_by: str | None = None
    real_per_masked_image: int = 2  # real patches cut outside the square of each masked image
    max_patches_per_image: int = 32  # tiles kept per image of a plain folder
    steps: int = 2400
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    decay: str = "cosine"
    weight_decay: float = 1e-4
    validate_every: int = 200
    patience: int = 0
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    seed: int = 0
    strategy: str = "default"

    def __post_init__(self):
        if self.strategy not in ("default", "mirrored", "multiworker"):
            raise ForensicsError(f"--strategy must be default, mirrored or multiworker, got {self.strategy!r}")
        if self.steps < 1 or self.batch_size < 2 or self.validate_every < 1:
            raise ForensicsError("--steps and --validate_every must be positive and --batch_size at least 2")
        if self.decay not in ("cosine", "constant"):
            raise ForensicsError(f"--decay must be 'cosine' or 'constant', got {self.decay!r}")


DETECTOR_PRESETS = {
    # A couple of minutes, for trying the whole path.
    "quick": dict(steps=200, validate_every=50),
    # The shipped saved_models/detector (run from the repository root): the synthetic western
    # blot squares with their hosts, plus the real blots; the near-duplicate strips 3 and 5 of
    # athenaz2 are one group.
    "shipped": dict(real=("../shared/data/western_blots/real",),
                    fake=("../shared/data/western_blots/synthetic_patches",),
                    group_by=r"(?<=wetsern_blot_)[35](?=_orig$)"),
}


# ---------------------------------------------------------------------------------------------
# Generating fakes: WGAN-GP western blots and CycleGAN translation (Wang et al. 2022)

_UPSAMPLING_MODES = ("resize_conv", "transposed")


def _check_resolution(resolution: int, flag: str = "--resolution") -> None:
    if resolution < 8 or resolution & (resolution - 1):
        raise ForensicsError(f"{flag} must be a power of two >= 8 (64, 128 or 256), got {resolution}")


@dataclasses.dataclass(frozen=True)
class WGANConfig:
    """The networks of the western-blot WGAN-GP (Wang et al. 2022, after Gulrajani et al. 2017).

    Generator: latent -> dense -> reshape to base_size x base_size -> `generator_extra_blocks`
    residual blocks there -> per doubling one residual up-sampling block (two 3x3 convs each) and
    `generator_blocks_per_stage - 1` further residual blocks at the same resolution -> batch norm,
    ReLU, 3x3 conv, tanh. Filters per stage are min(width * 2**k, max_filters), k counted from the
    output, so the network keeps its shape when the resolution changes. `upsampling="resize_conv"`
    (nearest-neighbour resize then conv, Odena et al. 2016) avoids checkerboard artefacts;
    "transposed" makes the stride-2 transposed convolutions that leave them, for detector studies.
    Critic: per halving one residual down-sampling block (the first reads the image directly),
    `critic_extra_blocks` residual blocks at base_size, dense 1. No batch norm (WGAN-GP's penalty
    is per sample): layer norm over height, width and channels (`critic_norm="layer"`) or none.

    Depth, counted as papers do (conv and dense layers on the main path; 1x1 shortcut convs not
    counted), with S = log2(resolution / base_size) stages (`generator_depth`, `critic_depth`):
    generator 2 + 2 (generator_extra_blocks + S generator_blocks_per_stage), critic
    1 + 2 (S critic_blocks_per_stage + critic_extra_blocks). The "paper" preset (256 px, base 8,
    so S = 5; 3 blocks per generator stage plus 1 at base; 1 per critic stage plus 2 extra) gives
    Wang et al.'s 34-layer generator and 15-layer critic; "shipped" (128 px, base 4) gives 12 and
    15, "quick" (32 px) 8 and 11, these defaults (64 px) 10 and 13.
    """

    resolution: int = 64
    channels: int = 1
    latent_dim: int = 128
    base_size: int = 4
    generator_width: int = 8
    generator_max_filters: int = 256
    generator_blocks_per_stage: int = 1
    generator_extra_blocks: int = 0  # residual blocks at base_size, before the first up-sampling
    generator_norm: str = "batch"  # "batch" or "none"
    upsampling: str = "resize_conv"  # "resize_conv" or "transposed"
    upsampling_interpolation: str = "nearest"  # resize_conv only: "nearest" or "bilinear"
    critic_width: int = 8
    critic_max_filters: int = 256
    critic_blocks_per_stage: int = 1
    critic_extra_blocks: int = 2
    critic_norm: str = "layer"  # "layer" or "none"
    critic_steps: int = 5  # critic updates per generator update
    gradient_penalty_weight: float = 10.0
    gradient_norm_epsilon: float = 1e-12  # inside the sqrt of the penalty's gradient norm
    drift_weight: float = 0.0  # ProGAN's epsilon_drift * E[D(x)^2]; 0 = plain WGAN-GP

    def __post_init__(self):
        _check_resolution(self.resolution)
        if self.channels not in (1, 3):
            raise ForensicsError(f"--channels must be 1 (grayscale) or 3 (RGB), got {self.channels}")
        if self.base_size < 1 or self.resolution % self.base_size or self.resolution <= self.base_size:
            raise ForensicsError(f"--base_size ({self.base_size}) must divide --resolution ({self.resolution}) "
                                 "and be smaller")
        if self.upsampling not in _UPSAMPLING_MODES:
            raise ForensicsError(f"--upsampling must be one of {_UPSAMPLING_MODES}, got {self.upsampling!r}")
        if self.upsampling_interpolation not in ("nearest", "bilinear"):
            raise ForensicsError("--upsampling_interpolation must be 'nearest' or 'bilinear'")
        if self.generator_norm not in ("batch", "none"):
            raise ForensicsError(f"--generator_norm must be 'batch' or 'none', got {self.generator_norm!r}")
        if self.critic_norm not in ("layer", "none"):
            raise ForensicsError(f"--critic_norm must be 'layer' or 'none' (no batch norm in a WGAN-GP critic), "
                                 f"got {self.critic_norm!r}")
        if min(self.critic_steps, self.latent_dim, self.generator_width, self.critic_width,
               self.generator_blocks_per_stage, self.critic_blocks_per_stage) < 1:
            raise ForensicsError("--critic_steps, --latent_dim, widths and blocks per stage must be positive")
        if min(self.generator_extra_blocks, self.critic_extra_blocks) < 0:
            raise ForensicsError("--generator_extra_blocks and --critic_extra_blocks must be >= 0")
        if self.gradient_norm_epsilon <= 0:
            raise ForensicsError("--gradient_norm_epsilon must be positive (the sqrt of 0 has no gradient)")

    @property
    def stages(self) -> int:
        """Doublings from base_size to the resolution."""
        return (self.resolution // self.base_size).bit_length() - 1

    @property
    def generator_depth(self) -> int:
        """Conv and dense layers on the generator's main path."""
        return 2 + 2 * (self.generator_extra_blocks + self.stages * self.generator_blocks_per_stage)

    @property
    def critic_depth(self) -> int:
        """Conv and dense layers on the critic's main path."""
        return 1 + 2 * (self.stages * self.critic_blocks_per_stage + self.critic_extra_blocks)


@dataclasses.dataclass(frozen=True)
class WGANTrainConfig:
    """Everything `python -m keras_forensics.train wgan` does, and the data it does it on.

    Data: `data` folders of blots of any size (each image is scaled by `data_scale`, turned
    dark-on-light by `polarity`, and cut into resolution-sized tiles with `patch_stride`; nearly
    flat tiles are dropped), or, when empty, `synthetic_count` procedurally rendered blots
    (`keras_forensics.datasets.synthetic_blots`). Images are split by source (`group_by`) into
    train / validation / test; SWD and spectral distance are measured against the validation
    blots every `validate_every` generator steps. Optimiser: Adam with Gulrajani et al.'s
    (lr 1e-4, beta1 0, beta2 0.9) and a linear decay to 0 (`decay="linear"`).

    The defaults are a CPU demo: 64 px, narrow networks, 1,000 steps (measured about 1.2
    CPU-seconds per step with one thread, so roughly 20 minutes); `preset="shipped"` is the
    128 px run on real blots (bfloat16), `preset="paper"` Wang et al.'s 256 px for a GPU.
    """

    model: WGANConfig = dataclasses.field(default_factory=WGANConfig)
    data: tuple[str, ...] = ()  # folders; empty = procedurally rendered blots
    polarity: str = "auto"  # "auto" (invert images whose median is dark), "keep" or "invert"
    data_scale: float = 0.5  # resize factor applied to each image before tiling
    patch_stride: int = 0  # 0 = a quarter of the resolution
    min_std: float = 0.04  # tiles with a smaller intensity std are empty background
    group_by: str | None = None  # regex naming the source group of a file (see datasets.folder)
    synthetic_count: int = 2048
    flip: bool = True  # random left-right flips (lanes have no handedness)
    steps: int = 1000  # generator steps
    batch_size: int = 16
    generator_learning_rate: float = 1e-4
    critic_learning_rate: float = 1e-4
    beta_1: float = 0.0
    beta_2: float = 0.9
    decay: str = "linear"  # "linear" (to 0 at the last step) or "constant"
    validate_every: int = 100
    validation_images: int = 256  # generated and real images compared by SWD / spectrum
    swd_patches_per_image: int = 64
    swd_directions: int = 128
    swd_repeats: int = 4
    log_every: int = 10  # steps between TensorBoard scalars
    sample_every: int = 100  # steps between fixed-noise sample grids
    sample_grid: int = 8  # the grid is sample_grid x sample_grid images
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    strategy: str = "default"  # "default", "mirrored" or "multiworker"
    # "float32", or "mixed_bfloat16" (bfloat16 arithmetic on CPUs with AVX512-BF16/AMX and on recent
    # GPUs; the penalty and losses stay float32, and model.keras is saved in float32)
    precision: str = "float32"
    jit_compile: bool = False  # XLA-compile the train step (see the shipped preset's measurements)
    export_base: str = ""  # write the final generator to <export_base>/wgan/<next version>

    def __post_init__(self):
        if self.polarity not in ("auto", "keep", "invert"):
            raise ForensicsError(f"--polarity must be auto, keep or invert, got {self.polarity!r}")
        if self.decay not in ("linear", "constant"):
            raise ForensicsError(f"--decay must be 'linear' or 'constant', got {self.decay!r}")
        if self.strategy not in ("default", "mirrored", "multiworker"):
            raise ForensicsError(f"--strategy must be default, mirrored or multiworker, got {self.strategy!r}")
        if self.precision not in ("float32", "mixed_bfloat16"):
            # mixed_float16 would need loss scaling in the GAN's own train_step
            raise ForensicsError(f"--precision must be float32 or mixed_bfloat16, got {self.precision!r}")
        if min(self.steps, self.batch_size, self.validate_every, self.validation_images,
               self.synthetic_count, self.log_every, self.sample_grid) < 1:
            raise ForensicsError("--steps, --batch_size, --validate_every, --validation_images, "
                                 "--synthetic_count, --log_every and --sample_grid must be positive")
        if not 0.0 < self.data_scale <= 4.0:
            raise ForensicsError(f"--data_scale must be in (0, 4], got {self.data_scale}")


@dataclasses.dataclass(frozen=True)
class CycleGANConfig:
    """CycleGAN (Zhu et al. 2017): two ResNet generators and two 70x70 PatchGAN discriminators.

    Generator (Johnson et al. 2016): reflection pad, 7x7 conv, `down_blocks` stride-2 convs,
    `residual_blocks` residual blocks (9 in the paper at 256 px, 6 at 128 px), as many up-sampling
    steps (resize-conv or transposed conv, as in the WGAN), 7x7 conv, tanh; instance norm is
    `GroupNormalization(groups=-1)`. Discriminator: `discriminator_layers` stride-2 4x4 convs from
    `discriminator_width` filters, one stride-1 conv, a 1-channel output map (3 layers = the 70x70
    PatchGAN). Losses: least squares (Mao et al. 2017), cycle weight 10, identity weight
    `identity_fraction` x cycle weight; discriminators see a pool of `pool_size` past fakes
    (Shrivastava et al. 2017).
    """

    image_size: int = 64
    channels: int = 1
    generator_width: int = 16
    down_blocks: int = 2
    residual_blocks: int = 6
    upsampling: str = "resize_conv"  # "resize_conv" or "transposed"
    discriminator_width: int = 32
    discriminator_layers: int = 3
    cycle_weight: float = 10.0
    identity_fraction: float = 0.5
    pool_size: int = 50

    def __post_init__(self):
        _check_resolution(self.image_size, "--image_size")
        if self.channels not in (1, 3):
            raise ForensicsError(f"--channels must be 1 or 3, got {self.channels}")
        if self.upsampling not in _UPSAMPLING_MODES:
            raise ForensicsError(f"--upsampling must be one of {_UPSAMPLING_MODES}, got {self.upsampling!r}")
        if self.image_size % (2 ** self.down_blocks):
            raise ForensicsError(f"--image_size must be divisible by 2**down_blocks ({2 ** self.down_blocks})")
        if self.pool_size < 0 or self.residual_blocks < 0 or self.discriminator_layers < 1:
            raise ForensicsError("--pool_size and --residual_blocks must be >= 0, --discriminator_layers >= 1")


@dataclasses.dataclass(frozen=True)
class CycleGANTrainConfig:
    """Everything `python -m keras_forensics.train cyclegan` does.

    Unpaired data: every image below `domain_a` and `domain_b` is cut into `load_size` tiles;
    each training example is a random `image_size` crop of a tile, flipped left-right at random
    (Zhu et al.: load 286, crop 256). Without folders, a demo on embedded data: procedurally
    rendered blots, "clean" (domain A: sharp bands, even background, little noise) to
    "overexposed" (domain B: saturated bands, smears, uneven background, grain) -- a condition
    imposed on a blot, as Wang et al. imposed cancer on endoscopy images. Four Adam optimisers
    (2e-4, beta1 0.5), constant for the first half of `steps`, then linearly to 0.

    The defaults are a CPU demo (64 px, measured 0.22 CPU-seconds per step: a few minutes);
    `preset="paper"` is Zhu et al.'s 256 px with 9 residual blocks.
    """

    model: CycleGANConfig = dataclasses.field(default_factory=CycleGANConfig)
    domain_a: tuple[str, ...] = ()  # folders; empty = the embedded demo domains
    domain_b: tuple[str, ...] = ()
    load_size: int = 0  # tile size before the random crop; 0 = image_size * 286 / 256
    demo_count: int = 256  # rendered blots per embedded domain
    steps: int = 1000
    batch_size: int = 1  # the paper's
    learning_rate: float = 2e-4
    beta_1: float = 0.5
    beta_2: float = 0.999
    decay_start_fraction: float = 0.5  # linear decay to 0 from this fraction of the steps
    validate_every: int = 250
    validation_images: int = 32
    sample_every: int = 250
    sample_count: int = 4  # rows of the TensorBoard grid (a, G(a), F(G(a)), b, F(b), G(F(b)))
    log_every: int = 10
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    strategy: str = "default"
    export_base: str = ""  # write the final generators to <export_base>/cyclegan/<next version>

    def __post_init__(self):
        if bool(self.domain_a) != bool(self.domain_b):
            raise ForensicsError("give both --domain_a and --domain_b (or neither, for the embedded demo)")
        if self.load_size and self.load_size < self.model.image_size:
            raise ForensicsError(f"--load_size ({self.load_size}) must be at least --image_size "
                                 f"({self.model.image_size})")
        if self.strategy not in ("default", "mirrored", "multiworker"):
            raise ForensicsError(f"--strategy must be default, mirrored or multiworker, got {self.strategy!r}")
        if min(self.steps, self.batch_size, self.validate_every, self.validation_images, self.log_every,
               self.sample_count, self.demo_count) < 1:
            raise ForensicsError("--steps, --batch_size, --validate_every, --validation_images, --log_every, "
                                 "--sample_count and --demo_count must be positive")
        if not 0.0 <= self.decay_start_fraction <= 1.0:
            raise ForensicsError("--decay_start_fraction must be in [0, 1]")

    @property
    def tile_size(self) -> int:
        return self.load_size or int(round(self.model.image_size * 286 / 256))


#: The source groups of ../shared/data/western_blots/real (SOURCES.md): a raw capture and its
#: GAPDH re-probe share a date (all 2013); figure crops of one experiment share a stem; blot_3
#: and blot_5 show the same strip.
SHARED_BLOT_GROUPS = (
    r"\.2013|_B\dAR.*$|_(BMI1|GAPDH)_orig$|(?<=revised)_.*$|(?<=blot_)[35](?=_orig)|(?<=s004)_\d"
)

WGAN_PRESETS = {
    # Wang et al.'s 256 px blots: a 34-layer generator and a 15-layer critic with two extra
    # residual blocks (see WGANConfig for the count); needs a GPU.
    "paper": dict(model=WGANConfig(resolution=256, base_size=8, generator_width=64, generator_max_filters=512,
                                   generator_blocks_per_stage=3, generator_extra_blocks=1, critic_width=64,
                                   critic_max_filters=512, critic_extra_blocks=2),
                  batch_size=64, steps=100000, validate_every=1000, sample_every=1000, validation_images=1024),
    # A couple of minutes on a CPU, for trying the whole path.
    "quick": dict(model=WGANConfig(resolution=32, generator_width=8, critic_width=8), steps=200,
                  validate_every=50, sample_every=50, synthetic_count=512, validation_images=128),
    # The shipped saved_models/wgan: the real blots of ../shared/data at 128 px (run from the
    # repository root). Narrow networks and batch 16 because it trains on 2 CPU cores. Measured
    # CPU-seconds per generator step (5 critic steps, 1 thread, AVX512-BF16 CPU, median of 4
    # after warm-up): float32 5.3; XLA (jit_compile) 7.4, plus 10 min of compilation;
    # mixed_bfloat16 3.7 (1.45x faster; 1.41x in wall time with the two interleaved in one
    # process). Hence bf16: on these blots its first 20 steps tracked float32's within 1%
    # (Wasserstein estimate 219.2 vs 218.1, penalty 3.86 vs 3.84), and resuming in it continued
    # smoothly. If val_swd ever collapses, --precision float32 is the fallback.
    "shipped": dict(model=WGANConfig(resolution=128, generator_width=8, critic_width=8),
                    data=("../shared/data/western_blots/real",),
                    group_by=SHARED_BLOT_GROUPS, steps=20000, batch_size=16, validate_every=250,
                    sample_every=250, validation_images=256, precision="mixed_bfloat16",
                    export_base="saved_models"),
}

CYCLEGAN_PRESETS = {
    # Zhu et al.: 256 px, 9 residual blocks, 200 epochs of batch 1.
    "paper": dict(model=CycleGANConfig(image_size=256, residual_blocks=9, generator_width=64, discriminator_width=64),
                  steps=200000, validate_every=5000, sample_every=5000),
    # A couple of minutes on a CPU.
    "quick": dict(model=CycleGANConfig(image_size=32, generator_width=8, residual_blocks=2,
                                       discriminator_width=16),
                  steps=100, validate_every=50, sample_every=50, demo_count=128, validation_images=16),
}


# ---------------------------------------------------------------------------------------------
# the copy-detection descriptor (issue 14): SSCD-style training of the Siamese embedding


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

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name.startswith("p_") and not 0.0 <= value <= 1.0:
                raise ForensicsError(f"{field.name} must be a probability in [0, 1], got {value}")
        low, high = self.downscale_range
        if not 0.0 < low <= high <= 1.0:
            raise ForensicsError(f"downscale_range must lie in (0, 1], got {self.downscale_range}")


#: The re-use geometry of the descriptor: any of the 8 orientations, crops down to about 30 % of
#: the area (scale 1.8), mild perspective and rotation, JPEG 15-95.
DESCRIPTOR_DEFORMATION = dict(
    p_geometric=0.95, p_reflection=0.5, p_perspective=0.3, perspective_max_shift=10.0, p_similarity=0.8,
    max_rotation_degrees=10.0, scale_range=(0.75, 1.8), max_translation=24.0, p_rotate90=0.75,
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
        if self.strategy not in ("default", "mirrored", "multiworker"):
            raise ForensicsError(f"--strategy must be default, mirrored or multiworker, got {self.strategy!r}")
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


DESCRIPTOR_PRESETS = {
    # A few minutes, for trying the whole path.
    "quick": dict(steps=100, validate_every=50, batch_size=32, validation_pairs=128, test_pairs=256),
    # The shipped saved_models/siamese/2: ../shared/data/micrographs and micrographs_dsb2018 (run
    # from the repository root) plus the embedded data, split by field group.
    "shipped": dict(data=("../shared/data/micrographs", "../shared/data/micrographs_dsb2018"),
                    include_embedded=True, group_by=SHARED_MICROGRAPH_GROUPS, steps=4000, batch_size=64,
                    validate_every=200, warmup_steps=200, validation_pairs=1024, test_pairs=2000),
}
