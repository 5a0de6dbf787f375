"""Training the GAN-image detector (`python -m keras_forensics.train detector`).

Balanced batches (half real, half synthetic, the synthetic half shared equally among the fake
sources) of grayscale patches, each batch a function of (seed, step) so a resumed run continues
the same stream, augmented for robustness (`detection.augment`, after Wang et al. CVPR 2020).
Sources are split by source image (the host blot of a masked set), written to split.json. The
validation set is the validation split three times: as is, JPEG(75)-recompressed and 0.5x
resized, so the kept checkpoint is the one that does best across the conditions the targets
name. At the end, the test split is scored the same way (metrics.json), ROC and PR curves are
drawn to TensorBoard, and model.keras holds the best weights.

--kind spectral trains the Durall et al. 2020 baseline (logistic regression on the 1-D log
spectrum) on the same stream, for comparison in `evaluate detector`.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_forensics.data import folders
from keras_forensics.config import DetectorTrainConfig
from keras_forensics.data.deformations import split_seed
from keras_forensics.data.augment import RobustnessAugmenter
from keras_forensics.detection import evaluation
from keras_forensics.detection import sources as data_sources
from keras_forensics.errors import ForensicsError
from keras_forensics.models import detector as detector_model
from keras_forensics.training import common

logger = logging.getLogger(__name__)

MODEL_FILE = "model.keras"  # the final model (best weights): input of detect, evaluate and tools/export.py
BEST_FILE = "checkpoints/best.keras"
GENERATED_VALIDATION = 512  # fixed generated patches per generator in validation and test


def load_sources(config: DetectorTrainConfig) -> list[data_sources.Source]:
    """Every --real and --fake argument as a `data_sources.Source` (or the embedded demo without either)."""
    size = config.model.input_size
    if not config.real and not config.fake:
        real = folders.sample_micrographs(patch_size=size, seed=config.seed)
        return [data_sources.Source("sample_micrographs", real=real, fake=data_sources.upsampling_fakes(real, config.seed))]
    kwargs = dict(patch_size=size, real_per_masked_image=config.real_per_masked_image,
                  max_patches_per_image=config.max_patches_per_image, seed=config.seed,
                  group_by=config.group_by)
    sources = [data_sources.load_source(path, "real", **kwargs) for path in config.real]
    reals = [s.real for s in sources if s.real is not None]
    demo_real = None
    if reals:
        demo_real = reals[0]
        for part in reals[1:]:
            demo_real = demo_real.concatenate(part)
    sources += [data_sources.load_source(path, "fake", demo_real=demo_real, **kwargs) for path in config.fake]
    seen = {}
    for source in sources:  # unique names: they key split.json
        count = seen.get(source.name, 0)
        seen[source.name] = count + 1
        if count:
            source.name = f"{source.name}_{count}"
    if not any(s.real is not None for s in sources):
        raise ForensicsError("no real patches: pass --real DIR (a masked set given as --fake adds its own)")
    if not any(s.fake is not None or s.generator is not None for s in sources):
        raise ForensicsError("no synthetic patches: pass --fake DIR (a folder, masked set or saved generator)")
    return sources


def split_sources(sources, config: DetectorTrainConfig, model_dir) -> dict[str, list[data_sources.Source]]:
    """Each source split by group, fixed by the seed; split.json maps source -> split -> groups."""
    path = Path(model_dir) / "split.json"
    if path.exists():
        split = json.loads(path.read_text())
    else:
        split = {s.name: data_sources.split_source(s, config.split_fractions, config.seed) for s in sources}
        path.write_text(json.dumps(split, indent=2) + "\n")
    out = {}
    for part in ("train", "validation", "test"):
        out[part] = [s if s.generator is not None else s.subset(split.get(s.name, {}).get(part, []))
                     for s in sources]
    return out


def _stack(patchsets) -> np.ndarray | None:
    parts = [p.patches for p in patchsets if p is not None and len(p)]
    return np.concatenate(parts) if parts else None


def training_dataset(sources, config: DetectorTrainConfig, start_step: int = 0) -> tf.data.Dataset:
    """Endless balanced, augmented batches (images [B, S, S, 1], labels [B, 1]); batch k depends
    only on (seed, k)."""
    real = _stack([s.real for s in sources])
    fakes = [s.fake.patches for s in sources if s.fake is not None and len(s.fake)]
    generators = [s.generator for s in sources if s.generator is not None]
    if real is None or not (fakes or generators):
        raise ForensicsError("the training split has no real or no synthetic patches; add data")
    batch = config.batch_size
    num_real = batch // 2
    shares = np.full(len(fakes) + len(generators), (batch - num_real) // (len(fakes) + len(generators)))
    shares[: (batch - num_real) - shares.sum()] += 1
    real_tensor = tf.constant(real)
    fake_tensors = [tf.constant(f) for f in fakes]
    augmenter = RobustnessAugmenter(config.augmentation, config.model.input_size)
    labels = tf.constant(np.r_[np.zeros(num_real), np.ones(batch - num_real)].astype(np.float32)[:, None])

    def pick(seed, patches, count):
        index = tf.random.stateless_uniform([count], seed, 0, tf.shape(patches)[0], tf.int32)
        return tf.cast(tf.gather(patches, index), tf.float32)[..., None] / 255.0

    def make_batch(step):
        seeds = split_seed(tf.stack([tf.constant(config.seed, tf.int64), step]), 2 + len(shares))
        parts = [pick(seeds[0], real_tensor, num_real)]
        parts += [pick(seeds[2 + i], t, int(shares[i])) for i, t in enumerate(fake_tensors)]
        parts += [g.sample(int(shares[len(fake_tensors) + i]), seeds[2 + len(fake_tensors) + i])
                  for i, g in enumerate(generators)]
        return augmenter(tf.concat(parts, axis=0), seeds[1]), labels

    steps = tf.data.Dataset.counter(start_step, dtype=tf.int64)
    if generators:  # a loaded generator runs eagerly; keep it out of tf.data's parallel threads
        return steps.map(make_batch).prefetch(2)
    return steps.map(make_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


def fixed_set(sources, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """All real and synthetic patches of a split (plus fixed generated ones) as uint8 arrays."""
    real = _stack([s.real for s in sources])
    fake = [s.fake.patches for s in sources if s.fake is not None and len(s.fake)]
    fake += [s.generator.patches(GENERATED_VALIDATION, seed).patches for s in sources if s.generator is not None]
    if real is None or not fake:
        raise ForensicsError("the validation or test split has no real or no synthetic patches; add data "
                             "or change --split_fractions")
    return real, np.concatenate(fake)


def validation_arrays(real: np.ndarray, fake: np.ndarray, size: int):
    """Clean + JPEG(75) + 0.5x copies of the validation patches, at the model's input size."""
    images = np.concatenate([real, fake]).astype(np.float32)[..., None] / 255.0
    labels = np.r_[np.zeros(len(real)), np.ones(len(fake))].astype(np.float32)[:, None]
    copies = [evaluation.to_model_size(evaluation.apply_condition(images, c), size).numpy()
              for c in evaluation.CONDITIONS]
    return np.concatenate(copies), np.tile(labels, (len(copies), 1))


def compile_model(config: DetectorTrainConfig, total_steps: int) -> keras.Model:
    model = detector_model.build(config.model)
    schedule = common.learning_rate_schedule(config.learning_rate, total_steps, config.warmup_steps, config.decay)
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc"),
                 keras.metrics.AUC(curve="PR", name="average_precision")],
    )
    return model


class CurveImages(keras.callbacks.Callback):
    """ROC and precision-recall curves of the validation set as TensorBoard images, every `every`
    intervals and at the last (each costs one more pass over the validation set)."""

    def __init__(self, log_dir, images, labels, steps_per_epoch: int, total_epochs: int, every: int = 3):
        super().__init__()
        self.writer = tf.summary.create_file_writer(str(Path(log_dir) / "validation"))
        self.images, self.labels = images, labels[:, 0]
        self.steps_per_epoch = steps_per_epoch
        self.total_epochs = total_epochs
        self.every = every

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every and epoch + 1 != self.total_epochs:
            return
        scores = self.model.predict(self.images, batch_size=256, verbose=0)[:, 0]
        step = (epoch + 1) * self.steps_per_epoch
        with self.writer.as_default():
            for name, image in evaluation.curve_images(self.labels, scores).items():
                tf.summary.image(name, image[None], step=step)
        self.writer.flush()


def train(config: DetectorTrainConfig, model_dir=None) -> Path:
    """Train (or resume) and return the model_dir. See `python -m keras_forensics.train detector --help`."""
    model_dir, config, _ = common.prepare_model_dir("detector", model_dir, config)
    keras.utils.set_random_seed(config.seed)
    sources = load_sources(config)
    splits = split_sources(sources, config, model_dir)
    size = config.model.input_size

    steps_per_epoch = config.validate_every
    epochs = common.epochs_for(config.steps, steps_per_epoch)
    start_epoch = common.completed_epochs(model_dir)
    val_real, val_fake = fixed_set(splits["validation"], config.seed + 1)
    val_images, val_labels = validation_arrays(val_real, val_fake, size)
    print(f"patches: train real {sum(len(s.real) for s in splits['train'] if s.real is not None)}, "
          f"train fake {sum(len(s.fake) for s in splits['train'] if s.fake is not None)}, "
          f"validation {len(val_real)} real / {len(val_fake)} fake (x{len(evaluation.CONDITIONS)} conditions)",
          flush=True)
    train_data = training_dataset(splits["train"], config, start_step=start_epoch * steps_per_epoch)

    strategy = common.make_strategy(config.strategy)
    with strategy.scope():
        model = compile_model(config, epochs * steps_per_epoch)
    if config.model.kind == "spectral":
        # Standardise the spectral features on (augmented) training batches; fixed by the seed.
        sample = np.concatenate([b[0].numpy() for b in train_data.take(8)])
        train_data = training_dataset(splits["train"], config, start_step=start_epoch * steps_per_epoch)
        detector_model.adapt_spectral_baseline(model, sample)
    callbacks = common.standard_callbacks(model_dir, epochs, steps_per_epoch, monitor="val_auc",
                                          patience=config.patience, best_path=model_dir / BEST_FILE)
    callbacks.append(CurveImages(model_dir / "logs", val_images, val_labels, steps_per_epoch, epochs))
    wall_time = common.WallTime(model_dir)  # the time of a killed run counts when it is resumed
    callbacks.append(wall_time)
    best = model_dir / BEST_FILE
    if start_epoch < epochs and best.exists():
        # A fresh ModelCheckpoint would replace the best model with the first resumed epoch's,
        # however bad: give it the saved best's score to beat.
        with strategy.scope():
            reference = keras.saving.load_model(best)
        score = reference.evaluate(val_images, val_labels, batch_size=256, verbose=0, return_dict=True)["auc"]
        for callback in callbacks:
            if isinstance(callback, keras.callbacks.ModelCheckpoint):
                callback.best = score
    started = time.perf_counter()
    if start_epoch < epochs:
        if start_epoch:
            print(f"resuming {model_dir} at step {start_epoch * steps_per_epoch}", flush=True)
        model.fit(train_data, epochs=epochs, steps_per_epoch=steps_per_epoch,
                  validation_data=(val_images, val_labels), validation_batch_size=256,
                  callbacks=callbacks, verbose=2)
    wall = time.perf_counter() - started

    trained_steps = max(int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
                        common.completed_epochs(model_dir) * steps_per_epoch)
    if best.exists():
        model.load_weights(best)  # also restores the optimizer's step counter of that checkpoint
    model.save(model_dir / MODEL_FILE)
    test_real, test_fake = fixed_set(splits["test"], config.seed + 2)
    test = evaluation.evaluate_patches(model, test_real, test_fake, seed=config.seed)
    previous = json.loads(common.write_metrics(model_dir, {}).read_text())
    best_step = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    if not best_step:  # nothing trained in this call: the weights alone do not know their step
        best_step = previous.get("best_step", 0)
    metrics = {
        "kind": config.model.kind,
        "spectrum_branch": config.model.spectrum_branch,
        "steps": trained_steps,
        "best_step": best_step,
        "batch_size": config.batch_size,
        "wall_time_s_this_run": round(wall, 1),
        "wall_time_s_total": wall_time.total(),
        "test": test,
        "source_groups": {name: {part: len(groups) for part, groups in parts.items()}
                          for name, parts in json.loads((model_dir / "split.json").read_text()).items()},
    }
    common.write_metrics(model_dir, metrics)
    print(f"test AUC {test['clean']['auc']:.4f} (JPEG 75: {test['jpeg75']['auc']:.4f}, "
          f"0.5x: {test['resize0.5']['auc']:.4f}); model: {model_dir / MODEL_FILE}", flush=True)
    return model_dir
