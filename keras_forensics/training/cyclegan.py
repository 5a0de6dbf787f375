"""Training CycleGAN (`python -m keras_forensics.train cyclegan`).

model_dir holds what every trainer writes (config.json, split_a.json, split_b.json, checkpoints/,
logs/, metrics.json; see training/common.py) plus model.keras, generator.json and samples/.
TensorBoard: the losses every `log_every` steps, a grid of fixed validation images and their
translations every `sample_every` steps (rows: a, G(a), F(G(a)), b, F(b), G(F(b))), and at each
validation the SWD and spectral distance of G(a) against real b and of F(b) against real a, and
the cycle loss on validation images.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import keras
import numpy as np

from keras_forensics import artifacts
from keras_forensics import config as config_lib
from keras_forensics.config import CycleGANTrainConfig
from keras_forensics.data import blots
from keras_forensics.data.io import write_png
from keras_forensics.data.patches import PatchSet
from keras_forensics.data.gan_batches import unpaired_batches
from keras_forensics.data.grid import image_grid
from keras_forensics.errors import ForensicsError
from keras_forensics.metrics import gan_quality
from keras_forensics.models.cyclegan import CycleGAN
from keras_forensics.serving.export import export_generator
from keras_forensics.training import common

logger = logging.getLogger(__name__)

BEST_FILE = "checkpoints/best.keras"  # the lowest validation SWD, both directions averaged
DEMO_DOMAINS = ("clean", "overexposed")


def load_domain(folders: tuple[str, ...], config: CycleGANTrainConfig, demo_style, demo_seed: int,
                flag: str) -> tuple[PatchSet, int]:
    """Tiles of one domain and their bit depth: every image of the folders (grayscale or RGB
    as the model; oriented by --polarity, scaled by --data_scale), cut into overlapping tile_size
    tiles, nearly flat ones dropped; or rendered demo blots."""
    size, channels = config.tile_size, config.model.channels
    if not folders:
        if channels != 1:
            raise ForensicsError("the embedded demo domains are grayscale blots; pass --domain_a DIR --domain_b DIR "
                                 "with colour images for --channels 3")
        return blots.synthetic_blots(config.demo_count, size, seed=demo_seed, style=demo_style), 8
    return blots.folders_as_tiles(folders, flag, size=size, stride=size // 2, min_std=config.min_std,
                                  channels=channels, scale=config.data_scale, polarity=config.polarity,
                                  group_by=config.group_by)


def load_domains(config: CycleGANTrainConfig) -> tuple[PatchSet, PatchSet, int]:
    """(domain A, domain B, bit depth): two folder sets or the demo domains, or with
    --domain_b_from_a domain A and the same tiles translated (same groups, so the same split)."""
    domain_a, depth_a = load_domain(config.domain_a, config, blots.BlotStyle.clean(), config.seed, "--domain_a")
    if config.domain_b_from_a:
        transform = blots.DOMAIN_TRANSFORMS[config.domain_b_from_a]
        return domain_a, PatchSet(transform(domain_a.patches), domain_a.groups, list(domain_a.names)), depth_a
    domain_b, depth_b = load_domain(config.domain_b, config, blots.BlotStyle.overexposed(), config.seed + 1,
                                    "--domain_b")
    return domain_a, domain_b, max(depth_a, depth_b)


def domain_names(config: CycleGANTrainConfig) -> tuple[str, str]:
    """What domains A and B are, in words (metrics.json, generator.json)."""
    a = list(config.domain_a) or [f"embedded demo: {DEMO_DOMAINS[0]} rendered blots"]
    if config.domain_b_from_a:
        return a, [f"domain A {config.domain_b_from_a} (keras_forensics.data.blots.overexpose)"]
    return a, list(config.domain_b) or [f"embedded demo: {DEMO_DOMAINS[1]} rendered blots"]


def build_model(config: CycleGANTrainConfig, total_steps: int) -> CycleGAN:
    """The compiled CycleGAN: four Adam optimisers (lr, beta1 0.5), constant for the first
    `decay_start_fraction` of the steps, then linearly to 0 (Zhu et al.)."""
    model = CycleGAN.from_cyclegan_config(config.model, seed=config.seed)
    hold = int(round(config.decay_start_fraction * total_steps))

    def optimizer():
        schedule = common.learning_rate_schedule(config.learning_rate, total_steps, decay="linear", hold_steps=hold)
        return keras.optimizers.Adam(schedule, beta_1=config.beta_1, beta_2=config.beta_2)

    model.compile(optimizer(), optimizer(), optimizer(), optimizer())
    return model


def data_record(config: CycleGANTrainConfig) -> dict:
    """The run's config and the absolute paths of its folders, for generator.json: enough to
    rebuild both domains' tiles where the run's relative paths no longer resolve."""
    return {"config": config_lib.to_dict(config),
            "domain_a_absolute": [str(Path(folder).resolve()) for folder in config.domain_a],
            "domain_b_absolute": [str(Path(folder).resolve()) for folder in config.domain_b]}


def read_split(path) -> dict:
    return json.loads(Path(path).read_text())


def held_out_domains(info: dict) -> tuple[CycleGANTrainConfig, dict]:
    """(the run's config, {"a": {split: PatchSet}, "b": {split: PatchSet}}) rebuilt from a
    CycleGAN's generator.json: its data (folders as recorded, else their absolute paths, or the
    embedded demo) cut as in training and split as in training."""
    record = info.get("data")
    if not record or "splits" not in info:
        raise ForensicsError("this CycleGAN carries no record of its data and split (generator.json from before "
                             "`evaluate cyclegan` existed); retrain it, or export a newer run")
    config = config_lib.from_dict(CycleGANTrainConfig, record["config"])

    def folders(recorded, absolute, flag):
        chosen = tuple(folder if Path(folder).is_dir() else other for folder, other in zip(recorded, absolute))
        missing = [folder for folder in chosen if not Path(folder).is_dir()]
        if missing:
            raise ForensicsError(f"the training data {missing[0]} ({flag}) is not here")
        return chosen

    config = dataclasses.replace(
        config, domain_a=folders(config.domain_a, record.get("domain_a_absolute", config.domain_a), "--domain_a"),
        domain_b=folders(config.domain_b, record.get("domain_b_absolute", config.domain_b), "--domain_b"))
    domain_a, domain_b, _ = load_domains(config)
    parts = {}
    for name, domain in (("a", domain_a), ("b", domain_b)):
        split = info["splits"][name]
        known = set(domain.names)
        parts[name] = {part: domain.subset([group for group in groups if group in known])
                       for part, groups in split.items()}
        if not len(parts[name]["test"]):
            raise ForensicsError(f"none of the CycleGAN's held-out groups of domain {name.upper()} are in its data")
    return config, parts


def center_crop(images: np.ndarray, size: int) -> np.ndarray:
    """The central size x size crop of [N, S, S(, C)] images, of any type."""
    offset = (images.shape[1] - size) // 2
    return images[:, offset:offset + size, offset:offset + size]


def as_model_images(patches: np.ndarray) -> np.ndarray:
    """uint patches [N, S, S] or [N, S, S, C] -> float32 [N, S, S, C] in [0, 1]."""
    images = blots.to_unit(patches)
    return images[..., None] if images.ndim == 3 else images


def fixed_images(patchset, count: int, config: CycleGANTrainConfig, seed: int) -> np.ndarray:
    """Up to `count` centre crops of tiles, fixed by the seed, [N, S, S, channels] in [0, 1]."""
    rng = np.random.default_rng(seed)
    index = np.sort(rng.choice(len(patchset), min(count, len(patchset)), replace=False))
    return as_model_images(center_crop(patchset.patches[index], config.model.image_size))


def _predict(network: keras.Model, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
    return np.concatenate([keras.ops.convert_to_numpy(network(images[start:start + batch_size], training=False))
                           for start in range(0, len(images), batch_size)])


class CycleGANMonitor(common.GANMonitor):
    """Translation grids every `sample_every` steps; SWD and spectral distance of each direction
    and the validation cycle loss at each interval's end (added to the logs as val_*)."""

    def __init__(self, model_dir, config: CycleGANTrainConfig, validation_a, validation_b, steps_per_epoch: int):
        super().__init__(model_dir, config.sample_every, steps_per_epoch)
        self.config = config
        count = min(len(validation_a), len(validation_b))
        self.validation_a, self.validation_b = validation_a[:count], validation_b[:count]

    def write_samples(self, step: int) -> Path:
        count = self.config.sample_count
        a, b = self.validation_a[:count], self.validation_b[:count]
        fake_b, fake_a = _predict(self.model.generator_ab, a), _predict(self.model.generator_ba, b)
        columns = [a, fake_b, _predict(self.model.generator_ba, fake_b), b, fake_a,
                   _predict(self.model.generator_ab, fake_a)]
        grid = image_grid(np.stack(columns, axis=1).reshape((-1,) + a.shape[1:]), len(columns))
        self.write_image("translations", grid, step)
        return write_png(self.model_dir / "samples" / f"step_{step:07d}.png", grid)

    def measure(self) -> dict:
        fake_b = _predict(self.model.generator_ab, self.validation_a)
        fake_a = _predict(self.model.generator_ba, self.validation_b)
        to_b = gan_quality.compare(self.validation_b, fake_b, seed=self.config.seed)
        to_a = gan_quality.compare(self.validation_a, fake_a, seed=self.config.seed)
        cycle = float(np.mean(np.abs(_predict(self.model.generator_ba, fake_b) - self.validation_a))
                      + np.mean(np.abs(_predict(self.model.generator_ab, fake_a) - self.validation_b)))
        return {"swd_a_to_b": to_b["swd"], "swd_b_to_a": to_a["swd"],
                "spectral_distance_a_to_b": to_b["spectral_distance"],
                "spectral_distance_b_to_a": to_a["spectral_distance"],
                "swd": (to_b["swd"] + to_a["swd"]) / 2, "cycle_loss": cycle}


def train(config: CycleGANTrainConfig, model_dir=None) -> Path:
    """Train (or resume) and return the model_dir. See `python -m keras_forensics.train cyclegan --help`."""
    # The data first: a mistyped folder must not leave a model_dir behind (see training/wgan.py).
    domain_a, domain_b, bit_depth = load_domains(config)
    for domain in (domain_a, domain_b):
        domain.split(config.split_fractions, seed=config.seed)  # too few source images: an error now
    model_dir, config, _ = common.prepare_model_dir("cyclegan", model_dir, config)
    keras.utils.set_random_seed(config.seed)
    split_a = common.split_by_group(domain_a, config.split_fractions, config.seed, model_dir / "split_a.json")
    split_b = common.split_by_group(domain_b, config.split_fractions, config.seed, model_dir / "split_b.json")
    logger.info("tiles: a %s, b %s", len(split_a["train"]), len(split_b["train"]))
    model_config = config.model
    names_a, names_b = domain_names(config)
    artifacts.write_info(model_dir, {
        "kind": "cyclegan", "image_size": model_config.image_size, "channels": model_config.channels,
        "down_blocks": model_config.down_blocks, "bit_depth": bit_depth, "upsampling": model_config.upsampling,
        "domain_a": names_a, "domain_b": names_b, "seed": config.seed,
        # What `evaluate cyclegan` needs to rebuild the held-out tiles of both domains.
        "data": data_record(config), "splits": {"a": read_split(model_dir / "split_a.json"),
                                                "b": read_split(model_dir / "split_b.json")}})

    steps_per_epoch = config.validate_every
    epochs = common.epochs_for(config.steps, steps_per_epoch)
    start_epoch = common.completed_epochs(model_dir)
    validation_a = fixed_images(split_a["validation"], config.validation_images, config, config.seed + 1)
    validation_b = fixed_images(split_b["validation"], config.validation_images, config, config.seed + 2)

    data = unpaired_batches(split_a["train"].patches, split_b["train"].patches, config.batch_size,
                            model_config.image_size, seed=config.seed, start_step=start_epoch * steps_per_epoch)
    strategy = common.make_strategy(config.strategy)
    with strategy.scope():
        model = build_model(config, epochs * steps_per_epoch)
    monitor = CycleGANMonitor(model_dir, config, validation_a, validation_b, steps_per_epoch)
    wall_time, wall = common.fit_gan(model, data, model_dir, monitor, epochs, steps_per_epoch, start_epoch,
                                     config.log_every, BEST_FILE)

    model.save(model_dir / artifacts.MODEL_FILE)
    monitor.set_model(model)
    steps = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    final_grid = monitor.write_samples(steps)
    metrics = {
        "steps": steps,
        "batch_size": config.batch_size,
        "wall_time_s_this_run": round(wall, 1),
        "wall_time_s_total": wall_time.total(),
        "validation": monitor.measure(),
        "domains": {"a": names_a, "b": names_b},
        "train_tiles": {"a": len(split_a["train"]), "b": len(split_b["train"])},
        "sample_grid": str(final_grid),
    }
    common.write_metrics(model_dir, metrics)
    print(f"validation SWD x1e3 a->b {metrics['validation']['swd_a_to_b']:.2f}, b->a "
          f"{metrics['validation']['swd_b_to_a']:.2f}, cycle loss {metrics['validation']['cycle_loss']:.4f}; "
          f"model: {model_dir / artifacts.MODEL_FILE}", flush=True)
    if config.export_base:
        print(f"exported {export_generator('cyclegan', model_dir, config.export_base)}", flush=True)
    return model_dir
