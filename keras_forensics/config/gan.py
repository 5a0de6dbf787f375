"""Generating fakes: WGAN-GP western blots and CycleGAN translation (Wang et al. 2022)."""

from __future__ import annotations

import dataclasses

from keras_forensics.errors import ForensicsError
from keras_forensics.config.base import check_strategy

# Generating fakes: WGAN-GP western blots and CycleGAN translation (Wang et al. 2022)

_UPSAMPLING_MODES = ("resize_conv", "transposed")
_PADDING_MODES = ("zero", "reflect")
#: CycleGAN's --domain_b_from_a values (keras_forensics.data.blots.DOMAIN_TRANSFORMS; "" = none).
_DOMAIN_TRANSFORMS = ("", "overexposed")
#: The ops of a DiffAugment policy (keras_forensics.ops.diff_augment), in the order they apply.
DIFFAUGMENT_OPS = ("color", "translation", "cutout")


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

    Against the artefacts of saved_models/wgan/1 (8-16 px blocks, a frame near the border):
    `upsampling_interpolation="bilinear"` (no nearest-neighbour blocks to smooth away),
    `generator_padding="reflect"` (every generator conv pads by mirroring, so no conv sees the
    zeros beyond the border that draw a frame; the transposed convs of "transposed" cannot) and
    `noise_injection` (per-pixel noise with a learnt strength per channel after every conv of
    every generator block, Karras et al. 2019; the noise is a fixed function of the latent vector,
    see `layers.NoiseInjection`). Data-efficient training (Zhao et al. 2020): `diffaugment`, the
    ops applied to real and generated images alike before the critic ("color", "translation",
    "cutout"; `diffaugment_translation` and `diffaugment_cutout` are the paper's 1/8 and 1/2 of
    the side), and `ema_decay`, the exponential moving average of the generator's weights that is
    sampled, validated and exported (0 = none). The defaults are the legacy model's, so old
    config.json files and model.keras files load as they were trained.
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
    generator_padding: str = "zero"  # "zero" (legacy: convs pad with zeros) or "reflect"
    noise_injection: bool = False  # per-pixel noise, learnt strength per channel, in every generator block
    diffaugment: tuple[str, ...] = ()  # DiffAugment ops before the critic, e.g. color,translation,cutout
    diffaugment_translation: float = 0.125  # largest shift, as a fraction of the side
    diffaugment_cutout: float = 0.5  # side of the cutout square, as a fraction of the side
    ema_decay: float = 0.0  # EMA of the generator's weights (e.g. 0.999); 0 = none

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
        if self.generator_padding not in _PADDING_MODES:
            raise ForensicsError(f"--generator_padding must be 'zero' or 'reflect', got {self.generator_padding!r}")
        unknown = [op for op in self.diffaugment if op not in DIFFAUGMENT_OPS]
        if unknown or len(set(self.diffaugment)) != len(self.diffaugment):
            raise ForensicsError(f"--diffaugment takes distinct ops among {','.join(DIFFAUGMENT_OPS)}, "
                                 f"got {','.join(self.diffaugment)!r}")
        if not 0.0 <= self.diffaugment_translation <= 0.5:
            raise ForensicsError(f"--diffaugment_translation must be in [0, 0.5], got {self.diffaugment_translation}")
        if not 0.0 <= self.diffaugment_cutout <= 1.0:
            raise ForensicsError(f"--diffaugment_cutout must be in [0, 1], got {self.diffaugment_cutout}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ForensicsError(f"--ema_decay must be in [0, 1) (0 = no moving average), got {self.ema_decay}")

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
        check_strategy(self.strategy)
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
    upsampling_interpolation: str = "nearest"  # resize_conv only: "nearest" (legacy) or "bilinear"
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
        if self.upsampling_interpolation not in ("nearest", "bilinear"):
            raise ForensicsError("--upsampling_interpolation must be 'nearest' or 'bilinear'")
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

    Real blots: `domain_b_from_a="overexposed"` makes domain B from domain A's own tiles
    (`data.blots.overexpose`: bands spread and saturate, the membrane greys), so a translation of
    real blots has a known answer; folders are tiled with `polarity` (dark-on-light), `data_scale`,
    `min_std` and grouped by `group_by`, as `train wgan` does.

    The defaults are a CPU demo (64 px, measured 0.22 CPU-seconds per step: a few minutes);
    `preset="paper"` is Zhu et al.'s 256 px with 9 residual blocks.
    """

    model: CycleGANConfig = dataclasses.field(default_factory=CycleGANConfig)
    domain_a: tuple[str, ...] = ()  # folders; empty = the embedded demo domains
    domain_b: tuple[str, ...] = ()
    domain_b_from_a: str = ""  # "overexposed": domain B = domain A's tiles overexposed (no --domain_b)
    polarity: str = "keep"  # folders: "keep", "auto" (dark-on-light, as the WGAN) or "invert"
    data_scale: float = 1.0  # folders: resize factor applied to each image before tiling
    min_std: float = 0.02  # folders: tiles with a smaller intensity std are dropped
    group_by: str | None = None  # folders: regex naming the source group of a file
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
        if self.domain_b_from_a not in _DOMAIN_TRANSFORMS:
            raise ForensicsError(f"--domain_b_from_a must be one of {', '.join(_DOMAIN_TRANSFORMS[1:])} (or empty), "
                                 f"got {self.domain_b_from_a!r}")
        if self.domain_b_from_a and self.domain_b:
            raise ForensicsError("give --domain_b or --domain_b_from_a, not both")
        if not self.domain_b_from_a and bool(self.domain_a) != bool(self.domain_b):
            raise ForensicsError("give both --domain_a and --domain_b (or neither, for the embedded demo)")
        if self.polarity not in ("auto", "keep", "invert"):
            raise ForensicsError(f"--polarity must be auto, keep or invert, got {self.polarity!r}")
        if not 0.0 < self.data_scale <= 4.0:
            raise ForensicsError(f"--data_scale must be in (0, 4], got {self.data_scale}")
        if self.load_size and self.load_size < self.model.image_size:
            raise ForensicsError(f"--load_size ({self.load_size}) must be at least --image_size "
                                 f"({self.model.image_size})")
        check_strategy(self.strategy)
        if min(self.steps, self.batch_size, self.validate_every, self.validation_images, self.log_every,
               self.sample_count, self.demo_count) < 1:
            raise ForensicsError("--steps, --batch_size, --validate_every, --validation_images, --log_every, "
                                 "--sample_count and --demo_count must be positive")
        if not 0.0 <= self.decay_start_fraction <= 1.0:
            raise ForensicsError("--decay_start_fraction must be in [0, 1]")

    @property
    def tile_size(self) -> int:
        return self.load_size or int(round(self.model.image_size * 286 / 256))
