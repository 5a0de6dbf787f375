"""What every trainer shares: the model_dir layout, resume, distribution, schedules, logging.

model_dir (default runs/<kind>/<timestamp>) holds config.json, split.json, checkpoints/ (the
BackupAndRestore state and the best model), logs/ (TensorBoard) and metrics.json. Running the same
command with the same --model_dir resumes from the last checkpoint, losing at most one
validation interval (one Keras "epoch" here).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import math
import os
import sys
import time
from pathlib import Path

import keras
import tensorflow as tf

from keras_forensics import config as config_lib
from keras_forensics.artifacts import backup_dir
from keras_forensics.errors import ForensicsError

# Fields that may change when a run is resumed (the schedule can be extended; the arithmetic
# precision and XLA compilation change speed, not the model or its weights).
RESUMABLE_FIELDS = ("steps", "patience", "precision", "jit_compile")


def default_model_dir(kind: str) -> Path:
    return Path("runs") / kind / _dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def prepare_model_dir(kind: str, model_dir, config):
    """Create model_dir and write config.json; on resume, check the config matches.

    Returns (model_dir, config, resuming). A resumed run keeps its saved config except for
    RESUMABLE_FIELDS; any other difference is an error rather than a silently mixed run.
    """
    model_dir = Path(model_dir) if model_dir else default_model_dir(kind)
    path = model_dir / "config.json"
    if path.exists():
        saved = config_lib.load(type(config), path)
        changed = [
            f.name for f in dataclasses.fields(config)
            if f.name not in RESUMABLE_FIELDS and getattr(saved, f.name) != getattr(config, f.name)
        ]
        if changed:
            raise ForensicsError(
                f"{model_dir} holds a run with a different configuration ({', '.join(changed)}); "
                "use a new --model_dir, or the same options to resume"
            )
        config = dataclasses.replace(saved, **{f: getattr(config, f) for f in RESUMABLE_FIELDS
                                               if hasattr(config, f)})
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "checkpoints").mkdir(exist_ok=True)
    config_lib.save(config, path)
    return model_dir, config, path.exists() and backup_dir(model_dir).exists()




def completed_epochs(model_dir) -> int:
    """How many validation intervals a previous run of this model_dir finished (0 if none)."""
    path = backup_dir(model_dir) / "training_metadata.json"
    if not path.exists():
        return 0
    return int(json.loads(path.read_text()).get("epoch", 0))


@contextlib.contextmanager
def dtype_policy(name: str):
    """Layers created inside are built under the Keras dtype policy `name` ("float32",
    "mixed_bfloat16", ...); the global policy is restored afterwards."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def make_strategy(name: str):
    """"default", "mirrored" (all local GPUs, or CPUs) or "multiworker" (a cluster via TF_CONFIG)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ForensicsError("--strategy multiworker needs the TF_CONFIG environment variable")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ForensicsError(f"unknown strategy {name!r}")


def learning_rate_schedule(learning_rate: float, steps: int, warmup_steps: int = 0, decay: str = "cosine",
                           hold_steps: int = 0):
    """Linear warm-up, then cosine decay to 1% (or constant); or decay="linear": constant for
    `hold_steps`, then linearly to 0 at `steps` (the GANs' schedule; no warm-up)."""
    if decay == "linear":
        return LinearDecay(learning_rate, max(steps - hold_steps, 1), hold_steps)
    if decay == "constant" and not warmup_steps:
        return learning_rate
    if decay == "constant":
        return keras.optimizers.schedules.CosineDecay(
            learning_rate / max(warmup_steps, 1), decay_steps=1, alpha=1.0,
            warmup_target=learning_rate, warmup_steps=warmup_steps,
        )
    return keras.optimizers.schedules.CosineDecay(
        0.0 if warmup_steps else learning_rate,
        decay_steps=max(steps - warmup_steps, 1), alpha=0.01,
        warmup_target=learning_rate if warmup_steps else None, warmup_steps=warmup_steps,
    )


def current_learning_rate(optimizer) -> float:
    rate = optimizer.learning_rate
    if callable(rate):
        rate = rate(optimizer.iterations)
    return float(keras.ops.convert_to_numpy(rate))


class TimeLeft(keras.callbacks.Callback):
    """One line per validation interval: step, metrics, and an estimate of the time left."""

    def __init__(self, total_epochs: int, steps_per_epoch: int, stream=None):
        super().__init__()
        self.total_epochs = total_epochs
        self.steps_per_epoch = steps_per_epoch
        self.stream = stream or sys.stderr
        self.start = None
        self.first_epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.start is None:
            self.start, self.first_epoch = time.perf_counter(), epoch

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1 - self.first_epoch
        elapsed = time.perf_counter() - self.start
        left = elapsed / done * (self.total_epochs - epoch - 1)
        shown = " ".join(f"{k}={v:.4f}" for k, v in sorted((logs or {}).items())
                         if isinstance(v, (int, float)))
        print(f"step {(epoch + 1) * self.steps_per_epoch}/{self.total_epochs * self.steps_per_epoch} "
              f"{shown} | elapsed {_minutes(elapsed)}, about {_minutes(left)} left",
              file=self.stream, flush=True)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


class LearningRateLogger(keras.callbacks.Callback):
    """Writes the optimizer's learning rate to TensorBoard at the end of each interval."""

    def __init__(self, log_dir, steps_per_epoch: int):
        super().__init__()
        self.writer = tf.summary.create_file_writer(str(Path(log_dir) / "train"))
        self.steps_per_epoch = steps_per_epoch

    def on_epoch_end(self, epoch, logs=None):
        with self.writer.as_default():
            tf.summary.scalar("learning_rate", current_learning_rate(self.model.optimizer),
                              step=(epoch + 1) * self.steps_per_epoch)
        self.writer.flush()


class BestCheckpoint(keras.callbacks.ModelCheckpoint):
    """Keeps the best model by `monitor`, remembering the best value across resumed runs.

    A plain ModelCheckpoint starts every run with no best value, so after a resume the first
    interval would overwrite the best model however bad it is. The value is kept in
    `<best_path>.json` beside the model and read back as Keras's `initial_value_threshold`.
    """

    def __init__(self, best_path, monitor: str = "val_loss", mode: str = "auto"):
        self.record = Path(str(best_path) + ".json")
        initial = None
        if self.record.exists() and Path(best_path).exists():
            saved = json.loads(self.record.read_text())
            if saved.get("monitor") == monitor:
                initial = float(saved["value"])
        super().__init__(str(best_path), monitor=monitor, save_best_only=True, mode=mode,
                         initial_value_threshold=initial)

    def on_epoch_end(self, epoch, logs=None):
        before = self.best
        super().on_epoch_end(epoch, logs)
        if self.best != before:
            self.record.write_text(json.dumps({"monitor": self.monitor, "value": float(self.best),
                                               "epoch": epoch + 1}) + "\n")


def standard_callbacks(model_dir, total_epochs: int, steps_per_epoch: int, monitor: str = "val_loss",
                       patience: int = 0, best_path=None, mode: str = "auto"):
    """Resume state, the best model, TensorBoard, the learning rate and a time-left line.

    `mode` ("auto", "min" or "max") says whether `monitor` improves downwards or upwards; Keras
    guesses only for losses and accuracies."""
    model_dir = Path(model_dir)
    callbacks = [
        keras.callbacks.BackupAndRestore(str(backup_dir(model_dir)), save_freq="epoch",
                                         double_checkpoint=True, delete_checkpoint=False),
        keras.callbacks.TensorBoard(str(model_dir / "logs"), update_freq="epoch", write_graph=False),
        LearningRateLogger(model_dir / "logs", steps_per_epoch),
        TimeLeft(total_epochs, steps_per_epoch),
    ]
    if best_path is not None:
        callbacks.append(BestCheckpoint(best_path, monitor=monitor, mode=mode))
    if patience:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, patience=patience, mode=mode))
    return callbacks


def epochs_for(steps: int, steps_per_epoch: int) -> int:
    return max(1, math.ceil(steps / steps_per_epoch))


def write_metrics(model_dir, metrics: dict) -> Path:
    path = Path(model_dir) / "metrics.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    previous.update(metrics)
    path.write_text(json.dumps(previous, indent=2, sort_keys=True) + "\n")
    return path


@keras.saving.register_keras_serializable(package="keras_forensics")
class LinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Constant for `hold_steps`, then linearly from `initial_learning_rate` to
    `final_learning_rate` over `decay_steps` (Gulrajani et al.'s WGAN-GP decay with hold_steps=0;
    Zhu et al.'s CycleGAN schedule with hold_steps = decay_steps = half the run)."""

    def __init__(self, initial_learning_rate, decay_steps, hold_steps=0, final_learning_rate=0.0):
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.hold_steps = hold_steps
        self.final_learning_rate = final_learning_rate

    def __call__(self, step):
        progress = keras.ops.clip((keras.ops.cast(step, "float32") - self.hold_steps) / self.decay_steps, 0.0, 1.0)
        return self.initial_learning_rate + (self.final_learning_rate - self.initial_learning_rate) * progress

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "hold_steps": self.hold_steps, "final_learning_rate": self.final_learning_rate}


class StepScalars(keras.callbacks.Callback):
    """Every `every` steps, the mean of each training metric over those steps, to TensorBoard.

    Keras reports running means since the start of the interval ("epoch"); the mean over the
    last window is recovered exactly from two of them: (k r_k - j r_j) / (k - j). This gives the
    GANs' per-step curves (the Wasserstein estimate, the penalty, the losses) between validations.
    """

    def __init__(self, log_dir, every: int, steps_per_epoch: int, prefix: str = "train_step/"):
        super().__init__()
        self.writer = tf.summary.create_file_writer(str(Path(log_dir) / "train"))
        self.every = every
        self.steps_per_epoch = steps_per_epoch
        self.prefix = prefix
        self.epoch = 0
        self.previous = (0, {})

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.previous = (0, {})

    def on_train_batch_end(self, batch, logs=None):
        done = batch + 1
        step = self.epoch * self.steps_per_epoch + done
        if step % self.every or not logs:
            return
        previous_done, previous = self.previous
        with self.writer.as_default():
            for name, value in logs.items():
                if isinstance(value, (int, float)):
                    window = (done * value - previous_done * previous.get(name, 0.0)) / (done - previous_done)
                    tf.summary.scalar(self.prefix + name, window, step=step)
        self.previous = (done, {k: v for k, v in logs.items() if isinstance(v, (int, float))})


def split_by_group(patchset, fractions, seed: int, path) -> dict:
    """Split a PatchSet by group (source image), fixed by the seed and kept in `path` (a
    model_dir's split.json) so a resumed run and the evaluation see the same split.
    Returns {name: PatchSet}."""
    path = Path(path)
    if path.exists():
        split = json.loads(path.read_text())
    else:
        split = patchset.split(fractions, seed=seed)
        path.write_text(json.dumps(split, indent=2) + "\n")
    return {name: patchset.subset(groups) for name, groups in split.items()}


def total_wall_time(model_dir, wall: float) -> float:
    """`wall` seconds plus the total of earlier runs of this model_dir (from metrics.json)."""
    path = Path(model_dir) / "metrics.json"
    previous = json.loads(path.read_text()).get("wall_time_s_total", 0.0) if path.exists() else 0.0
    return round(previous + wall, 1)


class WallTime(keras.callbacks.Callback):
    """Keeps `wall_time_s_total` in metrics.json current at the end of every interval, so that the
    time of a run stopped before its end (and resumed later) still counts in the total.

    `total()` is the earlier runs' total plus the time since this callback was made.
    """

    def __init__(self, model_dir):
        super().__init__()
        self.model_dir = Path(model_dir)
        self.previous = total_wall_time(model_dir, 0.0)
        self.start = time.perf_counter()

    def total(self) -> float:
        return round(self.previous + time.perf_counter() - self.start, 1)

    def on_epoch_end(self, epoch, logs=None):
        write_metrics(self.model_dir, {"wall_time_s_total": self.total()})


class GANMonitor(keras.callbacks.Callback):
    """What the GAN trainers watch: `write_samples(step)` every `sample_every` steps, and at each
    interval's end `measure()` (a flat dict of figures) written to TensorBoard as quality/<name>
    and added to the logs as val_<name> (those in `logged`, default all), so that the callbacks
    after it print them, record them and choose the best model by them. Subclasses define both."""

    logged: tuple[str, ...] | None = None

    def __init__(self, model_dir, sample_every: int, steps_per_epoch: int):
        super().__init__()
        self.model_dir = Path(model_dir)
        self.sample_every = sample_every
        self.steps_per_epoch = steps_per_epoch
        self.train_writer = tf.summary.create_file_writer(str(self.model_dir / "logs" / "train"))
        self.validation_writer = tf.summary.create_file_writer(str(self.model_dir / "logs" / "validation"))
        self.epoch = 0

    def write_samples(self, step: int) -> Path:
        raise NotImplementedError

    def measure(self) -> dict:
        raise NotImplementedError

    def write_image(self, name: str, grid, step: int) -> None:
        with self.train_writer.as_default():
            tf.summary.image(name, grid[None], step=step)
        self.train_writer.flush()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        step = self.epoch * self.steps_per_epoch + batch + 1
        if step % self.sample_every == 0:
            self.write_samples(step)

    def on_epoch_end(self, epoch, logs=None):
        step = (epoch + 1) * self.steps_per_epoch
        measured = self.measure()
        with self.validation_writer.as_default():
            for name, value in measured.items():
                tf.summary.scalar(f"quality/{name}", value, step=step)
        self.validation_writer.flush()
        if logs is not None:
            logs.update({f"val_{name}": value for name, value in measured.items()
                         if self.logged is None or name in self.logged})


def fit_gan(model, data, model_dir, monitor, epochs: int, steps_per_epoch: int, start_epoch: int,
            log_every: int, best_file: str = "checkpoints/best.keras"):
    """The GAN trainers' fit: `monitor` (a callback adding val_swd to the logs) first, then the
    standard callbacks with the best model by the lowest val_swd, per-step TensorBoard scalars
    and the running wall time; resumes after `start_epoch` finished intervals.

    Returns (the WallTime callback, this run's wall time in seconds).
    """
    model_dir = Path(model_dir)
    # The monitor goes first: the callbacks after it see the validation figures it adds.
    callbacks = [monitor] + standard_callbacks(model_dir, epochs, steps_per_epoch, monitor="val_swd",
                                               best_path=model_dir / best_file, mode="min")
    wall_time = WallTime(model_dir)
    callbacks += [StepScalars(model_dir / "logs", log_every, steps_per_epoch), wall_time]
    started = time.perf_counter()
    if start_epoch < epochs:
        if start_epoch:
            print(f"resuming {model_dir} at step {start_epoch * steps_per_epoch}", flush=True)
        model.fit(data, epochs=epochs, steps_per_epoch=steps_per_epoch, callbacks=callbacks, verbose=0,
                  shuffle=False)
    return wall_time, time.perf_counter() - started
