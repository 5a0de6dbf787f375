"""Tiny run dirs and exports shared by tests/serving/test_export.py and tests/serving/test_serving.py.

The Siamese run is the real architecture at the real 128x128 input with few filters; the
detector, WGAN and CycleGAN runs hold stand-in Keras models of the right input/output shapes, so
the export and serving paths are tested without the models of the other issues. Exports are made
once per test process (`exported_models`), in a temporary folder removed at exit.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import keras
import numpy as np

DETECTOR_PATCH = 32
LATENT_DIM = 8
GENERATED_SIZE = 16


def make_siamese_run(folder: Path) -> Path:
    """config.json + model.keras (the triplet model), as `train siamese` writes them."""
    from keras_forensics import config as config_lib
    from keras_forensics.models import siamese

    folder.mkdir(parents=True, exist_ok=True)
    config = config_lib.SiameseTrainConfig(
        model=config_lib.SiameseConfig(filters=(4, 4), dense_units=16, embedding_dim=8))
    keras.utils.set_random_seed(0)
    embedding = siamese.build_embedding(config.model)
    distance = siamese.WeightedL1Distance(config.model.initial_alpha, name="distance")
    triplet = siamese.build_triplet_model(embedding, distance)
    # Non-uniform alpha, so that weighted_embedding differs from embedding in a checkable way.
    distance.raw_alpha.assign(np.linspace(-2.0, 1.0, config.model.embedding_dim).astype(np.float32))
    config_lib.save(config, folder / "config.json")
    triplet.save(folder / "model.keras")
    return folder


def make_detector_run(folder: Path) -> Path:
    """model.keras: [B, 32, 32, 1] -> p_fake [B, 1] (sigmoid), a stand-in for the real detector."""
    folder.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(1)
    inputs = keras.Input((DETECTOR_PATCH, DETECTOR_PATCH, 1), name="images")
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", bias_initializer="ones")(x)
    keras.Model(inputs, outputs, name="detector").save(folder / "model.keras")
    return folder


def make_generator(seed: int, name: str) -> keras.Model:
    keras.utils.set_random_seed(seed)
    noise = keras.Input((LATENT_DIM,), name="noise")
    x = keras.layers.Dense(4 * 4 * 4)(noise)
    x = keras.layers.Reshape((4, 4, 4))(x)
    x = keras.layers.UpSampling2D(4)(x)
    images = keras.layers.Conv2D(1, 3, padding="same", activation="tanh")(x)
    return keras.Model(noise, images, name=name)


def make_wgan_run(folder: Path) -> Path:
    """generator.keras: noise [B, 8] -> images [B, 16, 16, 1] in [-1, 1]."""
    folder.mkdir(parents=True, exist_ok=True)
    make_generator(2, "generator").save(folder / "generator.keras")
    return folder


def make_translator(seed: int, name: str) -> keras.Model:
    keras.utils.set_random_seed(seed)
    images = keras.Input((None, None, 3), name="images")
    x = keras.layers.Conv2D(3, 3, padding="same", activation="tanh")(images)
    return keras.Model(images, x, name=name)


def make_cyclegan_run(folder: Path) -> Path:
    """generator_a_to_b.keras and generator_b_to_a.keras: images [B, H, W, 3] -> same shape."""
    folder.mkdir(parents=True, exist_ok=True)
    make_translator(3, "a_to_b").save(folder / "generator_a_to_b.keras")
    make_translator(4, "b_to_a").save(folder / "generator_b_to_a.keras")
    return folder


RUN_MAKERS = {"siamese": make_siamese_run, "detector": make_detector_run, "wgan": make_wgan_run,
              "cyclegan": make_cyclegan_run}


@functools.lru_cache(maxsize=1)
def workspace() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="kf_serving_tests_"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


@functools.lru_cache(maxsize=None)
def run_dir(kind: str) -> Path:
    """A tiny run dir of this kind (made once per process)."""
    return RUN_MAKERS[kind](workspace() / "runs" / kind)


@functools.lru_cache(maxsize=None)
def exported(kind: str):
    """`serving.export.export` of the tiny run to <workspace>/saved_models/<kind>/1 (once per process)."""
    from keras_forensics.serving import export as exporting

    return exporting.export(kind, run_dir(kind), export_base=workspace() / "saved_models", version=1,
                             verbose=False)


def exported_models() -> Path:
    """saved_models/ holding version 1 of every kind."""
    for kind in RUN_MAKERS:
        exported(kind)
    return workspace() / "saved_models"
