"""`python -m keras_forensics.train <kind> [--flag value ...]`: train a model.

Every field of the experiment's config dataclass (keras_forensics/config/) is a flag, nested
ones by their own name (`--p_jpeg 0.3`) or dotted (`--deformation.p_jpeg 0.3`). Re-running the same
command with the same --model_dir resumes from the last checkpoint.
"""

from __future__ import annotations

import dataclasses
from keras_forensics import config as config_lib  # noqa: E402
from keras_forensics.errors import ForensicsError, run_cli


def _flag_help(cls) -> str:
    lines = []
    for field in dataclasses.fields(cls):
        default = field.default_factory() if field.default is dataclasses.MISSING else field.default
        if dataclasses.is_dataclass(default):
            for inner in dataclasses.fields(default):
                lines.append(f"    --{inner.name} (= {getattr(default, inner.name)!r}, in {field.name})")
        else:
            lines.append(f"    --{field.name} (= {default!r})")
    return "\n".join(lines)


def _with_preset(config, presets: dict, preset: str | None, flags: dict):
    if preset:
        if preset not in presets:
            raise ForensicsError(f"unknown preset {preset!r} (known: {', '.join(presets)})")
        config = config_lib.replace(config, **presets[preset])
    return config_lib.replace(config, **flags)


def siamese(preset: str | None = None, model_dir: str | None = None, **flags):
    """Train the Siamese duplicate detector (Cicconet et al.) on triplets of deformed patches.

    Data: --data DIR[,DIR...] (default: the embedded sample micrographs). Writes model_dir
    (default runs/siamese/<timestamp>): config.json, split.json, checkpoints/, logs/ (TensorBoard),
    metrics.json and model.keras. --preset paper uses the paper's schedule (batch 256, ~5000
    steps, momentum); --preset quick is a few minutes long. Flags:
    """
    from keras_forensics.training import siamese as trainer

    config = _with_preset(config_lib.SiameseTrainConfig(), config_lib.SIAMESE_PRESETS, preset, flags)
    return str(trainer.train(config, model_dir))


siamese.__doc__ += "\n" + _flag_help(config_lib.SiameseTrainConfig)


def detector(preset: str | None = None, model_dir: str | None = None, **flags):
    """Train the GAN-image detector: a CNN (or, with --kind spectral, the Durall et al. spectral
    baseline) telling real from synthetic grayscale patches.

    Data: --real DIR and --fake DIR (several as --fake DIR1,DIR2; --fake: a folder of synthetic images, a masked
    set with tampered/ and mask/ such as ../shared/data/western_blots/synthetic_patches, or a saved
    generator: a SavedModel or a run dir with model.keras, sampled on the fly); with neither, a demo
    on the embedded sample micrographs against transposed-convolution fakes. Each source is split by
    source image. Augmentations (JPEG 30-100, resize 0.5-1.5, blur, crop, flips, inversion) follow
    Wang et al. CVPR 2020. Writes model_dir (default runs/detector/<timestamp>): config.json,
    split.json, checkpoints/, logs/ (TensorBoard, with ROC/PR curves), metrics.json and model.keras.
    --preset shipped trains on ../shared/data; --preset quick is a few minutes long. Flags:
    """
    from keras_forensics.training import detector as trainer

    config = _with_preset(config_lib.DetectorTrainConfig(), config_lib.DETECTOR_PRESETS, preset, flags)
    return str(trainer.train(config, model_dir))


detector.__doc__ += "\n" + _flag_help(config_lib.DetectorTrainConfig)



def wgan(preset: str | None = None, model_dir: str | None = None, **flags):
    """Train the western-blot WGAN-GP (Wang et al. 2022; Gulrajani et al. 2017).

    Data: --data DIR[,DIR...] (blots of any size, made dark-on-light, scaled by --data_scale, cut
    into --resolution tiles; default: procedurally rendered blots). Writes model_dir (default
    runs/wgan/<timestamp>): config.json, split.json, generator.json, checkpoints/, logs/
    (TensorBoard: Wasserstein estimate, gradient penalty, losses, fixed-noise samples, SWD and
    spectral distance), samples/*.png, metrics.json and model.keras. Re-running the same command
    resumes. --preset quick is a couple of minutes; --preset shipped trains on
    ../shared/data/western_blots/real at 128 px and exports to saved_models/wgan; --preset paper
    is Wang et al.'s 256 px. Flags:
    """
    from keras_forensics.training import wgan as trainer

    config = _with_preset(config_lib.WGANTrainConfig(), config_lib.WGAN_PRESETS, preset, flags)
    return str(trainer.train(config, model_dir))


wgan.__doc__ += "\n" + _flag_help(config_lib.WGANTrainConfig)


def cyclegan(preset: str | None = None, model_dir: str | None = None, **flags):
    """Train CycleGAN (Zhu et al. 2017) on unpaired images of two domains.

    Data: --domain_a DIR[,DIR...] --domain_b DIR[,DIR...] (images of any size, cut into tiles,
    randomly cropped to --image_size and flipped). Without them, a demo on embedded data:
    rendered blots, "clean" (A) to "overexposed" (B: saturated bands, smears, uneven membrane).
    Writes model_dir (default runs/cyclegan/<timestamp>) like `train wgan`. --preset quick is a
    couple of minutes; --preset paper is Zhu et al.'s 256 px, 9 residual blocks. Flags:
    """
    from keras_forensics.training import cyclegan as trainer

    config = _with_preset(config_lib.CycleGANTrainConfig(), config_lib.CYCLEGAN_PRESETS, preset, flags)
    return str(trainer.train(config, model_dir))


cyclegan.__doc__ += "\n" + _flag_help(config_lib.CycleGANTrainConfig)

def descriptor(preset: str | None = None, model_dir: str | None = None, **flags):
    """Train the copy-detection descriptor (SSCD-style; the Siamese model's modern backbone).

    Two augmented views of each patch (8 orientations, crops to 30 % of the area, rescaling to
    1/4, JPEG 15-95, contrast, gamma, blur, sharpening, text, scale bars, erasing, copy-move),
    InfoNCE over in-batch negatives plus the KoLeo regulariser, hard negatives from the same field.
    Data: --data DIR[,DIR...] (default: the embedded sample micrographs). Writes model_dir
    (default runs/descriptor/<timestamp>): config.json, split.json, checkpoints/, logs/
    (TensorBoard), metrics.json and model.keras (the calibrated pair model; export it with
    `python tools/export.py siamese --model_dir RUN`). --preset shipped trains saved_models/siamese/2
    on ../shared/data; --preset quick is a few minutes long. Flags:
    """
    from keras_forensics.training import descriptor as trainer

    config = _with_preset(config_lib.DescriptorTrainConfig(), config_lib.DESCRIPTOR_PRESETS, preset, flags)
    return str(trainer.train(config, model_dir))


descriptor.__doc__ += "\n" + _flag_help(config_lib.DescriptorTrainConfig)

COMMANDS = {"siamese": siamese, "descriptor": descriptor, "detector": detector, "wgan": wgan, "cyclegan": cyclegan}


def main(argv=None):
    run_cli(COMMANDS, name="python -m keras_forensics.train", argv=argv)


if __name__ == "__main__":
    main()
