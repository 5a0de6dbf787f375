"""Training the Siamese duplicate detector (`python -m keras_forensics.train siamese`)."""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_forensics.data import folders
from keras_forensics.data.patches import PatchSet, save_split
from keras_forensics.config import SiameseTrainConfig
from keras_forensics.data.pipeline import TRIPLET_KEYS, fixed_triplets, triplet_dataset
from keras_forensics.data.preview import triplet_grid
from keras_forensics.errors import ForensicsError
from keras_forensics.models import siamese
from keras_forensics.training import common

logger = logging.getLogger(__name__)

MODEL_FILE = "model.keras"  # the final triplet model (best weights), input of tools/export.py
BEST_FILE = "checkpoints/best.keras"


def load_patches(config: SiameseTrainConfig) -> PatchSet:
    """The configured folders (or the embedded sample micrographs), as grouped patches."""
    size = config.deformation.patch_size
    scales = config.patch_scales
    if not config.data:
        return folders.sample_micrographs(patch_size=size, seed=config.seed, scales=scales)
    patchset = None
    for folder in config.data:
        if not Path(folder).is_dir():
            raise ForensicsError(f"--data {folder}: no such folder")
        part = folders.folder(folder, patch_size=size, mode=config.patch_mode, seed=config.seed,
                               group_by=config.group_by, scales=scales)
        part.names = [f"{Path(folder).name}/{n}" for n in part.names]
        patchset = part if patchset is None else patchset.concatenate(part)
    if config.include_embedded:
        patchset = patchset.concatenate(folders.sample_micrographs(patch_size=size, seed=config.seed,
                                                                     scales=scales))
    return patchset


def initial_weights(source) -> Path:
    """The weights file `--init_from` names: a run directory (its best checkpoint, else its final
    model) or a .keras file of a triplet model with the same architecture."""
    path = Path(source)
    if path.is_dir():
        for candidate in (path / BEST_FILE, path / MODEL_FILE):
            if candidate.exists():
                return candidate
        raise ForensicsError(f"--init_from {source}: neither {BEST_FILE} nor {MODEL_FILE} is in that folder")
    if path.suffix != ".keras" or not path.exists():
        raise ForensicsError(f"--init_from {source}: not a run directory or an existing .keras file")
    return path


#: The parts of a split.json.
SPLIT_PARTS = ("train", "validation", "test")


def split_kind(split: dict) -> str:
    """"patch" for a split.json of `--split_by patch` (patch indices), else "group" (group names)."""
    return "patch" if split.get("split_by") == "patch" else "group"


def apply_split(patchset, split: dict, source: str = "split.json") -> dict:
    """{part: PatchSet} of a split.json: whole groups by name, or (`--split_by patch`) patches by
    index, each keeping its group so that negatives still come from other images."""
    if split_kind(split) == "patch":
        if split.get("patches") != len(patchset):
            raise ForensicsError(f"{source} splits {split.get('patches')} patches by index, but these settings "
                                 f"cut {len(patchset)}: use the run's own --data and patch settings")
        return {part: patchset.take(split[part]) for part in SPLIT_PARTS}
    unknown = sorted(set(sum((split[part] for part in SPLIT_PARTS), [])) - set(patchset.names))
    if unknown:
        raise ForensicsError(f"{source} names groups these images do not have (e.g. {unknown[0]!r}): "
                             "use the run's own --data")
    return {part: patchset.subset(split[part]) for part in SPLIT_PARTS}


def split_patches(patchset, config: SiameseTrainConfig, model_dir) -> dict:
    """Split by group (source image / field), fixed by the seed, written to split.json; with
    `--split_by patch`, by patch (`PatchSet.split_patches`, the paper's protocol: split.json then
    holds patch indices and `"split_by": "patch"`).

    A fine-tuning run (`--init_from` a run directory) takes over that run's split when it covers
    the same groups (or patches), so its test part stays unseen by both runs.
    """
    import json

    path = Path(model_dir) / "split.json"
    inherited = Path(config.init_from or "") / "split.json"
    if path.exists():
        split = json.loads(path.read_text())
    elif config.init_from and inherited.is_file():
        split = json.loads(inherited.read_text())
        if split_kind(split) != config.split_by:
            raise ForensicsError(f"--init_from {config.init_from} was split by {split_kind(split)} and this run "
                                 f"by {config.split_by}: give the same --split_by, or start from a .keras file")
        covered = (split.get("patches") == len(patchset) if config.split_by == "patch"
                   else sorted(sum((split[part] for part in SPLIT_PARTS), [])) == sorted(patchset.names))
        if not covered:
            raise ForensicsError(
                f"--init_from {config.init_from} was trained on other images (its split.json names "
                "other groups or another patch count), so its training images could be in this run's "
                "test split; fine-tune on the same --data, or start from a .keras file"
            )
        save_split(split, path)
    elif config.split_by == "patch":
        split = {"split_by": "patch", "patches": len(patchset),
                 **patchset.split_patches(config.split_fractions, seed=config.seed)}
        save_split(split, path)
    else:
        split = patchset.split(config.split_fractions, seed=config.seed)
        save_split(split, path)
    if split_kind(split) != config.split_by:
        raise ForensicsError(f"{path} was split by {split_kind(split)}; resume with --split_by {split_kind(split)}")
    return apply_split(patchset, split, str(path))


def _with_dummy_targets(batch):
    """Keras losses take (y_true, y_pred); the triplet loss needs no labels."""
    size = tf.shape(batch["anchor"])[0]
    return batch, tf.zeros([size, 2])


def as_dataset(triplets: dict, batch_size: int) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(triplets).batch(batch_size).map(_with_dummy_targets)


def build_models(config: SiameseTrainConfig, total_steps: int):
    """The compiled triplet model (embedding and distance layer inside), its layers built under
    `config.precision` (the distance and the loss stay float32)."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(config.precision)
    try:
        embedding = siamese.build_embedding(config.model)
        distance = siamese.WeightedL1Distance(config.model.initial_alpha, name="distance", dtype="float32")
        triplet = siamese.build_triplet_model(embedding, distance)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    schedule = common.learning_rate_schedule(config.learning_rate, total_steps, config.warmup_steps,
                                             config.decay)
    if config.optimizer == "adam":
        optimizer = keras.optimizers.Adam(schedule)
    else:
        optimizer = keras.optimizers.SGD(schedule, momentum=config.momentum)
    triplet.compile(optimizer=optimizer, loss=siamese.TripletLoss(), metrics=siamese.triplet_metrics())
    return triplet


class TripletImages(keras.callbacks.Callback):
    """Every `every` steps: a TensorBoard image of a few validation triplets with their scores."""

    def __init__(self, log_dir, triplets: dict, every: int, steps_per_epoch: int, count: int = 6):
        super().__init__()
        self.writer = tf.summary.create_file_writer(str(Path(log_dir) / "validation"))
        self.triplets = {k: v[:count] for k, v in triplets.items()}
        self.every = every
        self.steps_per_epoch = steps_per_epoch

    def on_epoch_end(self, epoch, logs=None):
        step = (epoch + 1) * self.steps_per_epoch
        if self.every and step % self.every >= self.steps_per_epoch:
            return
        logits = self.model.predict(self.triplets, verbose=0)
        grid = triplet_grid(*(self.triplets[k] for k in TRIPLET_KEYS), scores=1 / (1 + np.exp(-logits)))
        with self.writer.as_default():
            tf.summary.image("triplets", grid[None, ..., None], step=step)
        self.writer.flush()


def write_projector(log_dir, embedding_model, images: np.ndarray, labels: list[str]) -> None:
    """TensorBoard's embedding projector for `images` (thumbnails as a sprite), as the paper's Fig. 5."""
    from PIL import Image
    from tensorboard.plugins import projector

    projector_dir = Path(log_dir) / "projector"
    projector_dir.mkdir(parents=True, exist_ok=True)
    vectors = embedding_model.predict(images, batch_size=64, verbose=0)
    thumb = 32
    per_row = int(np.ceil(np.sqrt(len(images))))
    sprite = np.ones((per_row * thumb, per_row * thumb), np.uint8) * 255
    small = tf.image.resize(images, (thumb, thumb), antialias=True).numpy()[..., 0]
    for i, tile in enumerate(small):
        r, c = divmod(i, per_row)
        sprite[r * thumb:(r + 1) * thumb, c * thumb:(c + 1) * thumb] = np.clip(tile * 255, 0, 255)
    Image.fromarray(sprite).save(projector_dir / "sprite.png")
    (projector_dir / "metadata.tsv").write_text("\n".join(labels) + "\n")
    checkpoint = tf.train.Checkpoint(embedding=tf.Variable(vectors, name="embedding"))
    checkpoint.save(str(projector_dir / "embedding.ckpt"))
    config = projector.ProjectorConfig()
    item = config.embeddings.add()
    item.tensor_name = "embedding/.ATTRIBUTES/VARIABLE_VALUE"
    item.metadata_path = "metadata.tsv"
    item.sprite.image_path = "sprite.png"
    item.sprite.single_image_dim.extend([thumb, thumb])
    projector.visualize_embeddings(str(projector_dir), config)


def synthetic_accuracy(model, triplets: dict, batch_size: int = 128) -> dict:
    """The paper's synthetic test: pairs (A, S) are "same", (A, D) "different", half and half."""
    logits = model.predict({k: triplets[k] for k in TRIPLET_KEYS}, batch_size=batch_size, verbose=0)
    same_ok = logits[:, 0] > 0.0
    diff_ok = logits[:, 1] <= 0.0
    return {
        "accuracy": float(np.mean(np.concatenate([same_ok, diff_ok]))),
        "true_positive_rate": float(np.mean(same_ok)),
        "true_negative_rate": float(np.mean(diff_ok)),
        "pairs": int(2 * len(logits)),
    }


def train(config: SiameseTrainConfig, model_dir=None) -> Path:
    """Train (or resume) and return the model_dir. See `python -m keras_forensics.train siamese --help`."""
    patchset = load_patches(config)  # bad --data fails here, before a run directory is made
    init_weights = initial_weights(config.init_from) if config.init_from else None
    model_dir, config, _ = common.prepare_model_dir("siamese", model_dir, config)
    keras.utils.set_random_seed(config.seed)
    splits = split_patches(patchset, config, model_dir)
    logger.info("patches: %s", {k: (len(v), v.num_groups) for k, v in splits.items()})

    steps_per_epoch = config.validate_every
    epochs = common.epochs_for(config.steps, steps_per_epoch)
    start_epoch = common.completed_epochs(model_dir)
    validation = fixed_triplets(splits["validation"], config.deformation, config.validation_triplets,
                                seed=config.seed + 1)
    train_data = triplet_dataset(splits["train"], config.deformation, config.batch_size, seed=config.seed,
                                 start_step=start_epoch * steps_per_epoch).map(_with_dummy_targets)

    strategy = common.make_strategy(config.strategy)
    with strategy.scope():
        model = build_models(config, epochs * steps_per_epoch)
    if init_weights is not None and start_epoch == 0:
        with warnings.catch_warnings():  # the optimizer starts afresh on purpose: say nothing of its state
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            model.load_weights(init_weights)
        print(f"starting from the weights of {config.init_from}", flush=True)
    callbacks = common.standard_callbacks(model_dir, epochs, steps_per_epoch, patience=config.patience,
                                          best_path=model_dir / BEST_FILE)
    callbacks.append(TripletImages(model_dir / "logs", validation, config.image_every, steps_per_epoch))
    # last: keeps wall_time_s_total in metrics.json current at every interval's end, so the time
    # of a run killed before its end counts when it is resumed
    wall_time = common.WallTime(model_dir)
    callbacks.append(wall_time)
    started = time.perf_counter()
    if start_epoch < epochs:
        if start_epoch:
            print(f"resuming {model_dir} at step {start_epoch * steps_per_epoch}", flush=True)
        model.fit(train_data, epochs=epochs, steps_per_epoch=steps_per_epoch,
                  validation_data=as_dataset(validation, 128), callbacks=callbacks, verbose=2)
    wall = time.perf_counter() - started

    best = model_dir / BEST_FILE
    if best.exists():
        model.load_weights(best)
    model.save(model_dir / MODEL_FILE)
    embedding, _ = siamese.parts_of(model)
    count = min(config.projector_size, len(validation["anchor"]))
    write_projector(model_dir / "logs", embedding, validation["anchor"][:count],
                    [f"validation {i}" for i in range(count)])
    test = fixed_triplets(splits["test"], config.deformation, config.test_triplets, seed=config.seed + 2)
    metrics = {
        "steps": int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
        "batch_size": config.batch_size,
        "wall_time_s_this_run": round(wall, 1),
        "validation": synthetic_accuracy(model, validation),
        "synthetic_test": synthetic_accuracy(model, test),
        "train_patches": len(splits["train"]),
        "source_groups": {k: v.num_groups for k, v in splits.items()},
        "wall_time_s_total": wall_time.total(),
    }
    common.write_metrics(model_dir, metrics)
    print(f"synthetic test accuracy {metrics['synthetic_test']['accuracy']:.4f} "
          f"({metrics['synthetic_test']['pairs']} pairs); model: {model_dir / MODEL_FILE}", flush=True)
    return model_dir
