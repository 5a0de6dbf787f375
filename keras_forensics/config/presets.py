"""Named presets (`--preset NAME`) of every experiment: flag values on top of the defaults.

The "shipped" presets name ../shared/data folders relative to the repository root: they
reproduce the shipped saved_models/ from a source checkout and are not needed anywhere else.
"""

from __future__ import annotations

from keras_forensics.config.gan import CycleGANConfig, WGANConfig

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
# The next shipped saved_models/wgan (issue 16): "shipped" with the artefacts of saved_models/wgan/1
# removed at their cause -- bilinear resize-convolution (no nearest-neighbour blocks), reflection
# padding (no frame), per-pixel noise inputs -- and data-efficient training: DiffAugment
# (color, translation, cutout; Zhao et al. 2020) on real and generated images before the critic,
# x-flips of the real tiles, and the moving average of the generator's weights, which is what is
# sampled, validated and exported. Same widths and critic steps as "shipped". Measured side by side
# in one process (1 thread, float32, median of 2 steps after warm-up, on a shared 2-core AMD EPYC
# without AVX512): CPU-seconds per generator step 18.2 for "shipped" at batch 16, 18.8 for these
# networks at batch 16, 8.7 at batch 8 -- hence batch 8, which DiffAugment makes affordable. float32,
# not bfloat16: this machine has no AVX512-BF16, and there bfloat16 is emulated and slower (its
# first step took 244 CPU-s against 135); --precision mixed_bfloat16 may be given on resuming on a
# CPU that has it (precision is a resumable field).
WGAN_PRESETS["realistic"] = dict(
    WGAN_PRESETS["shipped"],
    model=WGANConfig(resolution=128, generator_width=8, critic_width=8, upsampling_interpolation="bilinear",
                     generator_padding="reflect", noise_injection=True, diffaugment=("color", "translation", "cutout"),
                     ema_decay=0.999),
    flip=True, batch_size=8, steps=20000, precision="float32",
)

CYCLEGAN_PRESETS = {
    # Zhu et al.: 256 px, 9 residual blocks, 200 epochs of batch 1.
    "paper": dict(model=CycleGANConfig(image_size=256, residual_blocks=9, generator_width=64, discriminator_width=64),
                  steps=200000, validate_every=5000, sample_every=5000),
    # A couple of minutes on a CPU.
    "quick": dict(model=CycleGANConfig(image_size=32, generator_width=8, residual_blocks=2,
                                       discriminator_width=16),
                  steps=100, validate_every=50, sample_every=50, demo_count=128, validation_images=16),
    # Real blots (../shared/data, run from the repository root) to overexposed versions of
    # themselves (`data.blots.overexpose`), at half resolution and 64 px crops of 72 px tiles as
    # the demo: a translation with a known answer (`evaluate cyclegan` reports the paired error).
    "blots_overexposed": dict(model=CycleGANConfig(image_size=64, upsampling_interpolation="bilinear"),
                              domain_a=("../shared/data/western_blots/real",), domain_b_from_a="overexposed",
                              polarity="auto", data_scale=0.5, min_std=0.04, group_by=SHARED_BLOT_GROUPS,
                              steps=20000, validate_every=500, sample_every=500, validation_images=64),
}


DESCRIPTOR_PRESETS = {
    # A few minutes, for trying the whole path.
    "quick": dict(steps=100, validate_every=50, batch_size=32, validation_pairs=128, test_pairs=256),
    # The shipped saved_models/siamese/2: ../shared/data/micrographs and micrographs_dsb2018 (run
    # from the repository root) plus the embedded data, split by field group.
    "shipped": dict(data=("../shared/data/micrographs", "../shared/data/micrographs_dsb2018"),
                    include_embedded=True, group_by=SHARED_MICROGRAPH_GROUPS, steps=4000, batch_size=64,
                    validate_every=200, warmup_steps=200, validation_pairs=1024, test_pairs=2000),
}
