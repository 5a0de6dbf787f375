"""The Siamese duplicate detector's experiment: the network and its training run."""

from __future__ import annotations

import dataclasses

from keras_forensics.errors import ForensicsError
from keras_forensics.config.deformation import DeformationConfig
from keras_forensics.config.base import check_strategy


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
    # "group": whole field groups go to train, validation or test (no image is seen in two
    # splits); "patch": the paper's protocol, each patch split at random, so one image gives
    # train and test patches (to compare with the paper's 0.97 like with like)
    split_by: str = "group"
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
        if self.split_by not in ("group", "patch"):
            raise ForensicsError(f"--split_by must be 'group' or 'patch', got {self.split_by!r}")
        if self.split_by == "patch" and tuple(self.patch_scales) != (1.0,):
            # a shrunk copy of a test patch would be a training patch: more leakage than the paper had
            raise ForensicsError("--split_by patch (the paper's protocol) takes native patches only: "
                                 "leave --patch_scales at 1")
        check_strategy(self.strategy)
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
