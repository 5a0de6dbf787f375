"""Training the western-blot WGAN-GP (`python -m keras_forensics.train wgan`).

model_dir holds what every trainer writes (config.json, split.json, checkpoints/, logs/,
metrics.json; see training/common.py) plus model.keras (the final WGAN), generator.json (what
`generate` needs: latent size, resolution, bit depth of the data, the split's groups) and
samples/ (the fixed-noise sample grid as PNG every `sample_every` steps). With --ema_decay, the
samples, the validation figures, the final test figures and the export all come from the moving
average of the generator's weights (`WGAN.sampling_generator`).

TensorBoard (`tensorboard --logdir runs`): train_step/wasserstein (the critic's estimate of the
Wasserstein distance, Wang et al.'s Figure 1B), train_step/gradient_penalty, the losses, every
`log_every` steps; the "samples" image every `sample_every` steps; quality/swd (per pyramid level
too) and quality/spectral_distance against the validation blots every `validate_every` steps.
"""

from __future__ import annotations

import logging
from pathlib import Path

import keras
import numpy as np

from keras_forensics import artifacts
from keras_forensics.config import WGANTrainConfig
from keras_forensics.data import blots
from keras_forensics.data.io import write_png
from keras_forensics.data.patches import PatchSet
from keras_forensics.data.gan_batches import critic_batches
from keras_forensics.data.grid import image_grid
from keras_forensics.errors import ForensicsError
from keras_forensics.metrics import gan_quality
from keras_forensics.models.wgan import WGAN, sample_noise
from keras_forensics.serving.export import export_generator
from keras_forensics.training import common

logger = logging.getLogger(__name__)

BEST_FILE = "checkpoints/best.keras"  # the lowest validation SWD


def load_blots(config: WGANTrainConfig) -> tuple[PatchSet, int]:
    """The configured blot folders (or rendered blots) as resolution-sized tiles, and their bit depth."""
    size, channels = config.model.resolution, config.model.channels
    if not config.data:
        if channels != 1:
            raise ForensicsError("the rendered default blots are grayscale; pass --data DIR with colour images "
                                 "for --channels 3")
        return blots.synthetic_blots(config.synthetic_count, size, seed=config.seed), 8
    return blots.folders_as_tiles(config.data, "--data", size=size, scale=config.data_scale,
                                  stride=config.patch_stride or None, min_std=config.min_std,
                                  polarity=config.polarity, group_by=config.group_by, channels=channels)


def as_model_images(patches: np.ndarray) -> np.ndarray:
    """uint patches [N, S, S] or [N, S, S, C] -> float32 [N, S, S, C] in [0, 1]."""
    images = blots.to_unit(patches)
    return images[..., None] if images.ndim == 3 else images


def fixed_real_images(patchset: PatchSet, count: int, seed: int) -> np.ndarray:
    """Up to `count` patches drawn without replacement, fixed by the seed (validation and test)."""
    rng = np.random.default_rng(seed)
    index = np.sort(rng.choice(len(patchset), min(count, len(patchset)), replace=False))
    return as_model_images(patchset.patches[index])


def build_model(config: WGANTrainConfig, total_steps: int, precision: str | None = None) -> WGAN:
    """The compiled WGAN: Adam for both networks, decayed over the run's generator steps (the
    critic's schedule counts its own, `critic_steps` times as many). The networks are built under
    `precision` (default: the config's); the train step is XLA-compiled with `config.jit_compile`."""
    with common.dtype_policy(precision or config.precision):
        model = WGAN.from_wgan_config(config.model, seed=config.seed)
    critic_steps = config.model.critic_steps

    def optimizer(learning_rate, steps):
        schedule = common.learning_rate_schedule(learning_rate, steps, decay=config.decay)
        return keras.optimizers.Adam(schedule, beta_1=config.beta_1, beta_2=config.beta_2)

    model.compile(optimizer(config.generator_learning_rate, total_steps),
                  optimizer(config.critic_learning_rate, total_steps * critic_steps), jit_compile=config.jit_compile)
    return model


def float32_copy(model: WGAN, config: WGANTrainConfig, total_steps: int) -> WGAN:
    """`model` rebuilt in float32 with its weights (the moving average too): what model.keras
    holds, so that generation, evaluation and export compute in float32 (and 16-bit output keeps
    its precision) whatever precision trained it."""
    if config.precision == "float32":
        return model
    copy = build_model(config, total_steps, precision="float32")
    copy.generator.set_weights(model.generator.get_weights())
    copy.critic.set_weights(model.critic.get_weights())
    if model.ema_generator is not None:
        copy.ema_generator.set_weights(model.ema_generator.get_weights())
    return copy


def generate_images(generator: keras.Model, noise: np.ndarray, batch_size: int = 64) -> np.ndarray:
    return np.concatenate([keras.ops.convert_to_numpy(generator(noise[start:start + batch_size], training=False))
                           for start in range(0, len(noise), batch_size)])


class WGANMonitor(common.GANMonitor):
    """Fixed-noise sample grids every `sample_every` steps (TensorBoard and samples/*.png), and the
    SWD and spectral distance of generated against real validation images at each interval's
    end, added to the logs as val_swd, val_spectral_distance (so TimeLeft prints them,
    TensorBoard records them and the best model is chosen by val_swd)."""

    logged = ("swd", "spectral_distance")

    def __init__(self, model_dir, config: WGANTrainConfig, validation: np.ndarray, steps_per_epoch: int,
                 bit_depth: int):
        super().__init__(model_dir, config.sample_every, steps_per_epoch)
        self.config = config
        self.validation = validation
        self.bit_depth = bit_depth
        latent = config.model.latent_dim
        self.grid_noise = sample_noise(config.sample_grid ** 2, latent, config.seed + 7)
        self.validation_noise = sample_noise(len(validation), latent, config.seed + 8)

    def write_samples(self, step: int) -> Path:
        grid = image_grid(generate_images(self.model.sampling_generator, self.grid_noise), self.config.sample_grid)
        self.write_image("samples", grid, step)
        return write_png(self.model_dir / "samples" / f"step_{step:07d}.png", grid, self.bit_depth)

    def measure(self) -> dict:
        fake = generate_images(self.model.sampling_generator, self.validation_noise)
        return gan_quality.compare(self.validation, fake, seed=self.config.seed, **swd_options(self.config))


def swd_options(config: WGANTrainConfig) -> dict:
    return {"patches_per_image": config.swd_patches_per_image, "directions": config.swd_directions,
            "repeats": config.swd_repeats}


def generator_info(config: WGANTrainConfig, bit_depth: int, split: dict) -> dict:
    model = config.model
    return {"kind": "wgan", "latent_dim": model.latent_dim, "resolution": model.resolution,
            "channels": model.channels, "bit_depth": bit_depth, "upsampling": model.upsampling,
            "upsampling_interpolation": model.upsampling_interpolation, "generator_padding": model.generator_padding,
            "noise_injection": model.noise_injection, "diffaugment": list(model.diffaugment),
            "ema_decay": model.ema_decay,
            "data": list(config.data), "data_absolute": [str(Path(folder).resolve()) for folder in config.data],
            "data_scale": config.data_scale, "polarity": config.polarity,
            "group_by": config.group_by, "patch_stride": config.patch_stride, "min_std": config.min_std,
            "synthetic_count": config.synthetic_count, "seed": config.seed, "test_groups": split["test"],
            "validation_groups": split["validation"], "train_groups": split["train"]}


def train(config: WGANTrainConfig, model_dir=None) -> Path:
    """Train (or resume) and return the model_dir. See `python -m keras_forensics.train wgan --help`."""
    # The data first: a mistyped --data must not leave a model_dir behind that the corrected
    # command would then refuse as "a different configuration".
    patchset, bit_depth = load_blots(config)
    patchset.split(config.split_fractions, seed=config.seed)  # too few source images: an error now
    model_dir, config, _ = common.prepare_model_dir("wgan", model_dir, config)
    keras.utils.set_random_seed(config.seed)
    splits = common.split_by_group(patchset, config.split_fractions, config.seed, model_dir / "split.json")
    logger.info("tiles: %s", {k: (len(v), v.num_groups) for k, v in splits.items()})
    split_names = {name: part.names for name, part in splits.items()}
    artifacts.write_info(model_dir, generator_info(config, bit_depth, split_names))

    steps_per_epoch = config.validate_every
    epochs = common.epochs_for(config.steps, steps_per_epoch)
    start_epoch = common.completed_epochs(model_dir)
    validation = fixed_real_images(splits["validation"], config.validation_images, config.seed + 1)
    data = critic_batches(splits["train"].patches, config.batch_size, config.model.critic_steps, seed=config.seed,
                          start_step=start_epoch * steps_per_epoch, flip=config.flip)

    strategy = common.make_strategy(config.strategy)
    with strategy.scope():
        model = build_model(config, epochs * steps_per_epoch)
    monitor = WGANMonitor(model_dir, config, validation, steps_per_epoch, bit_depth)
    wall_time, wall = common.fit_gan(model, data, model_dir, monitor, epochs, steps_per_epoch, start_epoch,
                                     config.log_every, BEST_FILE)

    steps = int(keras.ops.convert_to_numpy(model.generator_optimizer.iterations))
    model = float32_copy(model, config, epochs * steps_per_epoch)
    model.save(model_dir / artifacts.MODEL_FILE)
    monitor.set_model(model)
    final_grid = monitor.write_samples(steps)
    test = fixed_real_images(splits["test"], config.validation_images, config.seed + 2)
    fake = generate_images(model.sampling_generator, sample_noise(len(test), config.model.latent_dim, config.seed + 9))
    reference = fixed_real_images(splits["train"], len(test), config.seed + 3)
    metrics = {
        "steps": steps,
        "batch_size": config.batch_size,
        "wall_time_s_this_run": round(wall, 1),
        "wall_time_s_total": wall_time.total(),
        "seconds_per_step": round(wall / max(steps - start_epoch * steps_per_epoch, 1), 3),
        "test": gan_quality.compare(test, fake, reference=reference, seed=config.seed, **swd_options(config)),
        "test_images": len(test),
        "train_tiles": len(splits["train"]),
        "source_groups": {k: v.num_groups for k, v in splits.items()},
        "sample_grid": str(final_grid),
    }
    common.write_metrics(model_dir, metrics)
    test_figures = metrics["test"]
    print(f"test SWD x1e3 {test_figures['swd']:.2f} (real vs real {test_figures['swd_real_reference']:.2f}), "
          f"spectral distance {test_figures['spectral_distance']:.3f} "
          f"(real vs real {test_figures['spectral_distance_real_reference']:.3f}); model: "
          f"{model_dir / artifacts.MODEL_FILE}", flush=True)
    if config.export_base:
        print(f"exported {export_generator('wgan', model_dir, config.export_base)}", flush=True)
    return model_dir


def real_blot_sets(info: dict, data: tuple[str, ...] | None = None) -> dict:
    """The real blots a generator is measured against, from its generator.json: {"held_out": the
    held-out test groups' tiles, "others": every other tile (train and validation), "train":
    the training groups' tiles, "validation": the validation groups' tiles}, each a PatchSet (or
    None when unknown). With `data` folders: "held_out" is every tile of them, the rest None.

    The training data folder is found as recorded (relative to the working directory), else by
    its absolute path. Runs from before generator.json listed the train and validation groups
    get them by splitting again with the run's seed, used only if that reproduces its test groups.
    """
    from keras_forensics.config import WGANConfig

    channels = int(info["channels"])
    if not data and "data" not in info:
        raise ForensicsError("this generator carries no record of its training data (generator.json); "
                             "pass --data DIR with real blots to compare against")
    if data:
        config = WGANTrainConfig(model=WGANConfig(resolution=int(info["resolution"]), channels=channels),
                                 data=tuple(data), data_scale=info.get("data_scale", 0.5),
                                 polarity=info.get("polarity", "auto"))
        patchset, _ = load_blots(config)
        return {"held_out": patchset, "others": None, "train": None, "validation": None}
    folders = [folder if Path(folder).is_dir() else absolute
               for folder, absolute in zip(info["data"], info.get("data_absolute", info["data"]))]
    config = WGANTrainConfig(
        model=WGANConfig(resolution=int(info["resolution"]), channels=channels), data=tuple(folders),
        data_scale=info["data_scale"], polarity=info["polarity"], group_by=info["group_by"],
        patch_stride=info["patch_stride"], min_std=info["min_std"], synthetic_count=info["synthetic_count"],
        seed=info["seed"])
    missing = [folder for folder in config.data if not Path(folder).is_dir()]
    if missing:
        raise ForensicsError(f"the training data {missing[0]} is not here; pass --data DIR with held-out blots")
    patchset, _ = load_blots(config)
    known = set(patchset.names)
    test = [name for name in info["test_groups"] if name in known]
    if not test:
        raise ForensicsError("none of the generator's held-out groups are in its training data; pass --data DIR")
    others = [name for name in patchset.names if name not in set(test)]
    if "train_groups" in info:
        split = {"train": info["train_groups"], "validation": info["validation_groups"]}
    else:
        split = patchset.split(config.split_fractions, seed=config.seed)
        if sorted(split["test"]) != sorted(info["test_groups"]):
            split = {"train": None, "validation": None}
    parts = {name: None if groups is None else patchset.subset([g for g in groups if g in known])
             for name, groups in split.items() if name in ("train", "validation")}
    return {"held_out": patchset.subset(test), "others": patchset.subset(others), **parts}
