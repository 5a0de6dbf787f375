"""What every trainer shares: the model_dir layout, resume, distribution, schedules, logging.

model_dir (default runs/<kind>/<timestamp>) holds config.json, split.json, checkpoints/ (the
BackupAndRestore state and the best model), logs/ (TensorBoard) and metrics.json. Running the same
command with the same --model_dir resumes from the last checkpoint, losing at most one
validation interval (one Keras "epoch" here).
"""

from __future__ import annotations

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
from keras_forensics.errors import ForensicsError

# Fields that may change when a run is resumed (the schedule can be extended).
RESUMABLE_FIELDS = ("steps", "patience")


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
    return model_dir, config, path.exists() and (model_dir / "checkpoints" / "backup").exists()


def backup_dir(model_dir) -> Path:
    return Path(model_dir) / "checkpoints" / "backup"


def completed_epochs(model_dir) -> int:
    """How many validation intervals a previous run of this model_dir finished (0 if none)."""
    path = backup_dir(model_dir) / "training_metadata.json"
    if not path.exists():
        return 0
    return int(json.loads(path.read_text()).get("epoch", 0))


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


def learning_rate_schedule(learning_rate: float, steps: int, warmup_steps: int = 0, decay: str = "cosine"):
    """Linear warm-up, then cosine decay to 1% (or constant)."""
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


def standard_callbacks(model_dir, total_epochs: int, steps_per_epoch: int, monitor: str = "val_loss",
                       patience: int = 0, best_path=None):
    """Resume state, the best model, TensorBoard, the learning rate and a time-left line."""
    model_dir = Path(model_dir)
    callbacks = [
        keras.callbacks.BackupAndRestore(str(backup_dir(model_dir)), save_freq="epoch",
                                         double_checkpoint=True, delete_checkpoint=False),
        keras.callbacks.TensorBoard(str(model_dir / "logs"), update_freq="epoch", write_graph=False),
        LearningRateLogger(model_dir / "logs", steps_per_epoch),
        TimeLeft(total_epochs, steps_per_epoch),
    ]
    if best_path is not None:
        callbacks.append(keras.callbacks.ModelCheckpoint(str(best_path), monitor=monitor, save_best_only=True))
    if patience:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, patience=patience))
    return callbacks


def epochs_for(steps: int, steps_per_epoch: int) -> int:
    return max(1, math.ceil(steps / steps_per_epoch))


def write_metrics(model_dir, metrics: dict) -> Path:
    path = Path(model_dir) / "metrics.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    previous.update(metrics)
    path.write_text(json.dumps(previous, indent=2, sort_keys=True) + "\n")
    return path
