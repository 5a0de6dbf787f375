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
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if rest:
            if head not in names or not dataclasses.is_dataclass(getattr(config, head)):
                raise ForensicsError(f"unknown option --{key}")
            nested.setdefault(head, {})[rest] = value
        elif key in names:
            direct[key] = _coerce(getattr(config, key), value, key)
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


def _coerce(current, value, name):
    """Make a CLI value match the type of the field it sets (fire parses '1' as int, '1,2' as tuple)."""
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
        if current and len(value) != len(current):
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
    steps: int = 1200
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
    image_every: int = 500  # steps between TensorBoard triplet grids
    projector_size: int = 256  # validation embeddings written for TensorBoard's projector

    def __post_init__(self):
        if self.optimizer not in ("adam", "momentum"):
            raise ForensicsError(f"--optimizer must be 'adam' or 'momentum', got {self.optimizer!r}")
        if self.strategy not in ("default", "mirrored", "multiworker"):
            raise ForensicsError(f"--strategy must be default, mirrored or multiworker, got {self.strategy!r}")
        if self.steps < 1 or self.batch_size < 1 or self.validate_every < 1:
            raise ForensicsError("--steps, --batch_size and --validate_every must be positive")


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
