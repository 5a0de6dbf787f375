"""Training the copy-detection descriptor (`python -m keras_forensics.train descriptor`).

SSCD's recipe (Pizzi et al., CVPR 2022) on micrograph patches: two augmented views of each patch
of a batch, InfoNCE over in-batch negatives plus KoLeo, hard negatives from the same field group.
At the end the decision threshold of `CosineDistance` (f <= 1 means "same") and the slope of
p_same are calibrated on validation pairs, and the run writes model.keras: the pair model
(image_a, image_b -> distance, p_same) that `tools/export.py siamese` exports as the Siamese model,
and background.npz: the background set of score normalisation (`screening.background`), which
the export puts beside the model.
"""

from __future__ import annotations

import logging
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_forensics.metrics import ranking
from keras_forensics.config import DescriptorTrainConfig
from keras_forensics.data.deformations import CopyAugmenter
from keras_forensics.data.pipeline import fixed_view_pairs, view_pair_dataset
from keras_forensics.layers import CosineDistance
from keras_forensics.models import descriptor as descriptor_lib
from keras_forensics.models import siamese
from keras_forensics.screening.background import BACKGROUND_FILE
from keras_forensics.training import common
from keras_forensics.training.siamese import load_patches

logger = logging.getLogger(__name__)

MODEL_FILE = "model.keras"  # the pair model, input of tools/export.py siamese
BEST_FILE = "checkpoints/best.keras"  # the best DescriptorTrainer by validation InfoNCE
MONITOR = "val_infonce"
#: training batches whose batch-norm statistics are averaged before each validation and export
PRECISE_BN_BATCHES = 16


def recompute_batch_norm(model: keras.Model, batches) -> None:
    """Set every batch-norm layer's moving statistics to the plain average over `batches` of its
    batch statistics under the current weights ("precise BN", Wu & Johnson 2021).

    The moving averages lag the weights: measured on the shipped run at step 200, inference
    outputs shrank block after block (final std 0.03 against 0.57 in training mode) until every
    panel had the same embedding. Averaging fresh statistics makes inference see what training
    saw. A forward pass in training mode with momentum k / (k + 1) at batch k is that average.
    """
    norms = [layer for layer in _all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    if not norms:
        return
    saved = [layer.momentum for layer in norms]
    try:
        for count, batch in enumerate(batches):
            for layer in norms:
                layer.momentum = count / (count + 1.0)
            model(batch["views"], training=True)
    finally:
        for layer, momentum in zip(norms, saved):
            layer.momentum = momentum


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


class PreciseBatchNorm(keras.callbacks.Callback):
    """Before every validation (and so before the best checkpoint is chosen), `recompute_batch_norm`
    on `PRECISE_BN_BATCHES` training batches."""

    def __init__(self, dataset: tf.data.Dataset, batches: int = PRECISE_BN_BATCHES):
        super().__init__()
        self.dataset = dataset.take(batches)

    def on_test_begin(self, logs=None):
        recompute_batch_norm(self.model.descriptor, self.dataset)


def pairs_dataset(pairs: dict, batch_size: int) -> tf.data.Dataset:
    """Fixed view pairs (`fixed_view_pairs`) as batches {"views": [2b, ...], "ids": [2b]}."""
    views, ids = pairs["views"], pairs["ids"]
    dataset = tf.data.Dataset.from_tensor_slices((views[0], views[1], ids)).batch(batch_size, drop_remainder=True)
    return dataset.map(lambda a, b, i: {"views": tf.concat([a, b], axis=0), "ids": tf.concat([i, i], axis=0)})


def pair_scores(embedding: keras.Model, pairs: dict, batch_size: int = 128) -> dict:
    """Cosine similarities of fixed view pairs under `embedding`: the N matching pairs (first and
    second view of one draw) and every pair (i, j) of first and second views of different patches
    (views of one patch drawn twice are left out: they are neither)."""
    first = embedding.predict(pairs["views"][0], batch_size=batch_size, verbose=0)
    second = embedding.predict(pairs["views"][1], batch_size=batch_size, verbose=0)
    similarity = first @ second.T
    ids = pairs["ids"]
    other_patch = ids[:, None] != ids[None, :]
    rival = np.where(other_patch, similarity, -np.inf).max(axis=1)
    return {"positive": np.diag(similarity), "negative": similarity[other_patch],
            "recall_at_1": float(np.mean(np.diag(similarity) > rival))}


def calibrate(scores: dict) -> tuple[float, float]:
    """The cosine threshold with the best accuracy on balanced same/different pairs (the paper's
    synthetic test protocol), and the slope s of p_same = sigmoid(s (1 - f)) by maximum likelihood."""
    rng = np.random.default_rng(0)
    positive = scores["positive"]
    negative = rng.choice(scores["negative"], size=len(positive), replace=len(scores["negative"]) < len(positive))
    candidates = np.unique(np.concatenate([positive, negative]))
    accuracy = [(np.mean(positive >= t) + np.mean(negative < t)) / 2 for t in candidates]
    # clipped: near 1, f = (1 - cos) / (1 - threshold) would amplify float32 rounding past what
    # the export check of a SavedModel against its Keras model tolerates
    threshold = float(np.clip(candidates[int(np.argmax(accuracy))], -0.9, 0.95))
    margin = np.concatenate([1 - (1 - positive) / (1 - threshold), 1 - (1 - negative) / (1 - threshold)])
    labels = np.concatenate([np.ones_like(positive), np.zeros_like(negative)])
    slopes = np.geomspace(0.1, 100, 200)
    likelihood = [np.mean(labels * -np.logaddexp(0, -s * margin) + (1 - labels) * -np.logaddexp(0, s * margin))
                  for s in slopes]
    return threshold, float(slopes[int(np.argmax(likelihood))])


def evaluate_pairs(embedding: keras.Model, distance: CosineDistance, pairs: dict) -> dict:
    """Retrieval and decision figures on fixed view pairs: all-pairs average precision, recall@1
    among the second views, and the paper's balanced synthetic accuracy at f <= 1."""
    scores = pair_scores(embedding, pairs)
    threshold = distance.threshold
    labels = np.concatenate([np.ones(len(scores["positive"])), np.zeros(len(scores["negative"]))])
    values = np.concatenate([scores["positive"], scores["negative"]])
    return {
        "pairs": int(len(scores["positive"])),
        "average_precision_all_pairs": round(ranking.average_precision(labels, values), 4),
        "recall_at_1": round(scores["recall_at_1"], 4),
        "synthetic_accuracy": round(float((np.mean(scores["positive"] >= threshold)
                                           + np.mean(scores["negative"] < threshold)) / 2), 4),
    }


def build_trainer(config: DescriptorTrainConfig, total_steps: int) -> descriptor_lib.DescriptorTrainer:
    backbone = descriptor_lib.build_backbone_embedding(
        config.model, dtype=None if config.precision == "float32" else config.precision)
    trainer = descriptor_lib.DescriptorTrainer(backbone, config.temperature, config.koleo_weight, name="descriptor_trainer")
    schedule = common.learning_rate_schedule(config.learning_rate, total_steps, config.warmup_steps, config.decay)
    trainer.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay))
    size = config.model.input_size
    trainer(keras.ops.zeros((2, size, size, 1)))  # built, so that BackupAndRestore can restore it
    return trainer


def export_parts(config: DescriptorTrainConfig, trainer, validation: dict):
    """The float32 inference embedding (orientation pooling as configured) and its calibrated
    `CosineDistance`, from a trained `DescriptorTrainer`."""
    backbone = descriptor_lib.build_backbone_embedding(config.model)
    backbone.set_weights(trainer.descriptor.get_weights())
    embedding = descriptor_lib.build_embedding(config.model, backbone)
    threshold, sharpness = calibrate(pair_scores(embedding, validation))
    return embedding, CosineDistance(threshold, sharpness, name="distance", dtype="float32")


#: The background set (`screening.background`): at most this many training patches, at most
#: BACKGROUND_PER_GROUP of each field group (look-alikes of one field would crowd each other).
BACKGROUND_MAX = 2048
BACKGROUND_PER_GROUP = 2


def write_background(embedding: keras.Model, distance: CosineDistance, patches, path, seed: int = 0):
    """Embed a background set of training patches (never validation or test ones) as the screen
    embeds panels, and save it at `path`: the reference of SSCD's score normalisation."""
    from keras_forensics.screening.background import Background
    from keras_forensics.screening.model import SiameseScorer

    rng = np.random.default_rng(seed)
    chosen = []
    for group in rng.permutation(patches.num_groups):
        members = np.flatnonzero(patches.groups == group)
        chosen.extend(rng.choice(members, min(BACKGROUND_PER_GROUP, len(members)), replace=False))
    chosen = np.sort(np.asarray(chosen[:BACKGROUND_MAX], np.int64))
    scorer = SiameseScorer.from_keras(embedding, distance, source="training")
    vectors = scorer.embed_panels([p.astype(np.float32) / 255.0 for p in patches.patches[chosen]], progress=False)
    background = Background(vectors, scorer.metric)
    background.save(path)
    return background


def _best_record(model_dir) -> dict:
    """What `BestCheckpoint` recorded of the best interval ({monitor, value, epoch}), or {}."""
    import json

    path = Path(model_dir) / (BEST_FILE + ".json")
    return json.loads(path.read_text()) if path.exists() else {}


def train(config: DescriptorTrainConfig, model_dir=None) -> Path:
    """Train (or resume) and return the model_dir. See `python -m keras_forensics.train descriptor --help`."""
    patchset = load_patches(config)  # bad --data fails here, before a run directory is made
    model_dir, config, _ = common.prepare_model_dir("descriptor", model_dir, config)
    keras.utils.set_random_seed(config.seed)
    splits = common.split_by_group(patchset, config.split_fractions, config.seed, model_dir / "split.json")
    logger.info("patches: %s", {k: (len(v), v.num_groups) for k, v in splits.items()})
    augmenter = CopyAugmenter(config.deformation, config.augmentation, text_seed=config.seed)
    steps_per_epoch = config.validate_every
    epochs = common.epochs_for(config.steps, steps_per_epoch)
    start_epoch = common.completed_epochs(model_dir)
    validation = fixed_view_pairs(splits["validation"], augmenter, config.validation_pairs, seed=config.seed + 1,
                                  sibling_fraction=config.sibling_fraction)
    train_data = view_pair_dataset(splits["train"], augmenter, config.batch_size, config.sibling_fraction,
                                   seed=config.seed, start_step=start_epoch * steps_per_epoch)
    strategy = common.make_strategy(config.strategy)
    with strategy.scope():
        trainer = build_trainer(config, epochs * steps_per_epoch)
    callbacks = common.standard_callbacks(model_dir, epochs, steps_per_epoch, monitor=MONITOR, mode="min",
                                          patience=config.patience, best_path=model_dir / BEST_FILE)
    wall_time = common.WallTime(model_dir)
    # its own stream (seed + 3): the statistics come from training patches, never from the
    # validation views they are about to be measured on
    statistics = view_pair_dataset(splits["train"], augmenter, config.batch_size, config.sibling_fraction,
                                   seed=config.seed + 3)
    callbacks = [PreciseBatchNorm(statistics), *callbacks, wall_time]
    if start_epoch < epochs:
        if start_epoch:
            print(f"resuming {model_dir} at step {start_epoch * steps_per_epoch}", flush=True)
        validation_batch = min(128, len(validation["ids"]))
        trainer.fit(train_data, epochs=epochs, steps_per_epoch=steps_per_epoch,
                    validation_data=pairs_dataset(validation, validation_batch), callbacks=callbacks, verbose=2)
    best = model_dir / BEST_FILE
    if best.exists():  # saved after its interval's statistics were recomputed
        trainer.load_weights(best)
    else:
        recompute_batch_norm(trainer.descriptor, statistics.take(PRECISE_BN_BATCHES))
    embedding, distance = export_parts(config, trainer, validation)
    siamese.build_pair_model(embedding, distance).save(model_dir / MODEL_FILE)
    background = write_background(embedding, distance, splits["train"], model_dir / BACKGROUND_FILE, config.seed)
    test = fixed_view_pairs(splits["test"], augmenter, config.test_pairs, seed=config.seed + 2,
                            sibling_fraction=config.sibling_fraction)
    metrics = {
        "steps": common.completed_epochs(model_dir) * steps_per_epoch,
        "best": _best_record(model_dir),
        "batch_size": config.batch_size,
        "threshold_cosine": round(distance.threshold, 4),
        "p_same_sharpness": round(distance.sharpness, 3),
        "validation": evaluate_pairs(embedding, distance, validation),
        "synthetic_test": evaluate_pairs(embedding, distance, test),
        "train_patches": len(splits["train"]),
        "source_groups": {k: v.num_groups for k, v in splits.items()},
        "background": background.describe(),
        "wall_time_s_total": wall_time.total(),
    }
    common.write_metrics(model_dir, metrics)
    test_figures = metrics["synthetic_test"]
    print(f"synthetic test: all-pairs AP {test_figures['average_precision_all_pairs']:.4f}, recall@1 "
          f"{test_figures['recall_at_1']:.4f}, accuracy {test_figures['synthetic_accuracy']:.4f} "
          f"({test_figures['pairs']} pairs); model: {model_dir / MODEL_FILE}", flush=True)
    return model_dir
