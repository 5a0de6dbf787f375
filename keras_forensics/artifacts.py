"""Where trained models live, and the one way to load each: run dirs, .keras files, SavedModels.

Layout (DESIGN.md, "Conventions"):

* a run dir (model_dir): config.json, split.json, checkpoints/ (best.keras, backup/), logs/,
  metrics.json, and when training ends model.keras (GAN runs also generator.json);
* a TF-Serving model base: <base>/<version>/saved_model.pb, the newest numeric version served.

Every loader of the package goes through these functions: `newest_version` (the SavedModel of a
folder), `load_saved_model` (one signature, checked), `load_keras` (a .keras file with every
custom layer and model class registered) and `load_run_model` (a GAN run, finished or not).
Model-specific adapters (`siamese.load_parts`, `screening.model.load_scorer`, `Detector.load`,
`GeneratorSource`, `generate.load`, `serving.modules.load_serving_module`) only turn what these
return into their own interface.

Default models (`default_model`): saved_models/<name> under the working directory, else under the
folder named by the environment variable KERAS_FORENSICS_MODELS.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import re
from pathlib import Path

import numpy as np

from keras_forensics.errors import ForensicsError

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
#: A GAN run's image size, channels, bit depth and data (written by its trainer, exported beside
#: the SavedModel under assets.extra/).
INFO_FILE = "generator.json"
BEST_CHECKPOINT = Path("checkpoints") / "best.keras"
BACKUP_DIR = Path("checkpoints") / "backup"
SAVED_MODEL_FILE = "saved_model.pb"
#: The folder of shipped SavedModels, relative to the working directory.
MODELS_DIR = Path("saved_models")
#: Environment variable naming a folder that holds <name>/<version>/ SavedModels.
MODELS_ENV = "KERAS_FORENSICS_MODELS"

_VERSION = re.compile(r"^\d+$")

#: CycleGAN's two translation directions (signatures of its SavedModel).
DIRECTIONS = ("a_to_b", "b_to_a")
_NEEDED = {"wgan": ("serving_default",), "cyclegan": DIRECTIONS}


def backup_dir(model_dir) -> Path:
    """A run's BackupAndRestore folder (its latest.weights.h5 is the newest checkpoint)."""
    return Path(model_dir) / BACKUP_DIR


def existing_versions(model_base) -> list[int]:
    """The numeric version folders under a model's base path, ascending (SavedModel or not)."""
    model_base = Path(model_base)
    if not model_base.is_dir():
        return []
    return sorted(int(p.name) for p in model_base.iterdir() if p.is_dir() and _VERSION.match(p.name))


def newest_version(path) -> Path | None:
    """The SavedModel of `path`: itself (it holds saved_model.pb), or its highest numeric
    sub-folder holding one (TF-Serving layout); None if neither."""
    path = Path(path)
    if (path / SAVED_MODEL_FILE).is_file():
        return path
    versions = [v for v in existing_versions(path) if (path / str(v) / SAVED_MODEL_FILE).is_file()]
    return path / str(versions[-1]) if versions else None


def default_model(name: str) -> Path:
    """Where the default `name` model is: saved_models/<name> under the working directory if it
    exists, else $KERAS_FORENSICS_MODELS/<name> if that exists; else the former (for messages)."""
    local = MODELS_DIR / name
    if local.exists():
        return local
    root = os.environ.get(MODELS_ENV)
    if root and (Path(root) / name).exists():
        return Path(root) / name
    return local


def load_saved_model(path, signature: str = "serving_default"):
    """(restored object, its `signature` function) of the SavedModel at `path` (keep the object:
    it holds the variables)."""
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as error:  # TF raises many types for a broken folder
        raise ForensicsError(f"{path}: cannot load the SavedModel ({type(error).__name__}: {error})") from None
    if signature not in loaded.signatures:
        raise ForensicsError(f"{path}: the SavedModel has no {signature!r} signature (it has {sorted(loaded.signatures)})")
    return loaded, loaded.signatures[signature]


def signature_input(function, path) -> tuple[str, object]:
    """(name, TensorSpec) of a signature's only input."""
    specs = function.structured_input_signature[1]
    if len(specs) != 1:
        raise ForensicsError(f"{path}: expected a signature with one input, got {sorted(specs)}")
    (key, spec), = specs.items()
    return key, spec


def register_custom_objects() -> None:
    """Import keras_forensics.layers and every keras_forensics.models module: each registers its
    serializable classes (layers, WGAN, CycleGAN, ...) when imported."""
    import keras_forensics.layers  # noqa: F401
    import keras_forensics.models

    for module in pkgutil.iter_modules(keras_forensics.models.__path__):
        importlib.import_module(f"keras_forensics.models.{module.name}")


def load_keras(path):
    """A .keras file without its optimiser state, every custom class registered; one clear error."""
    import keras

    register_custom_objects()
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for a bad file; name the file once.
        raise ForensicsError(f"{path}: cannot load the Keras model ({type(error).__name__}: {error})") from None


def load_run_model(kind: str, run_dir, model_file=None):
    """The WGAN or CycleGAN of a run dir: `model_file` (default its model.keras) or, while the run
    is in progress or was stopped early, its latest checkpoint loaded into the model rebuilt in
    float32 from the run's config.json."""
    from keras_forensics import config as config_lib

    run_dir = Path(run_dir)
    model_file = Path(model_file) if model_file else run_dir / MODEL_FILE
    if model_file.exists():
        return load_keras(model_file)
    checkpoint = backup_dir(run_dir) / "latest.weights.h5"
    if not checkpoint.exists():
        raise ForensicsError(f"{run_dir}: no {MODEL_FILE} and no checkpoint yet; train it first")
    if kind == "wgan":
        from keras_forensics.models.wgan import WGAN

        config = config_lib.load(config_lib.WGANTrainConfig, run_dir / CONFIG_FILE)
        model = WGAN.from_wgan_config(config.model, seed=config.seed)
    elif kind == "cyclegan":
        from keras_forensics.models.cyclegan import CycleGAN

        config = config_lib.load(config_lib.CycleGANTrainConfig, run_dir / CONFIG_FILE)
        model = CycleGAN.from_cyclegan_config(config.model, seed=config.seed)
    else:
        raise ForensicsError(f"unknown generator kind {kind!r} (wgan or cyclegan)")
    model.load_weights(checkpoint)
    return model


def write_info(directory, info: dict) -> Path:
    """A GAN run's generator.json (INFO_FILE) in `directory`."""
    path = Path(directory) / INFO_FILE
    path.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return path


# ---------------------------------------------------------------------------------------------
# generators: a SavedModel or a run dir, behind one interface


class LoadedGenerator:
    """A trained generator, whatever it was loaded from: `sample(noise)` (WGAN) or
    `translate(images, direction)` (CycleGAN), NumPy in and out, images in [0, 1]."""

    def __init__(self, kind: str, info: dict, functions: dict, source: Path):
        self.kind = kind
        self.info = info
        self.functions = functions
        self.source = source

    @property
    def bit_depth(self) -> int:
        return int(self.info.get("bit_depth", 8))

    def sample(self, noise) -> np.ndarray:
        import tensorflow as tf

        return np.asarray(self.functions["serving_default"](noise=tf.constant(noise, tf.float32))["images"])

    def translate(self, images, direction: str = "a_to_b") -> np.ndarray:
        import tensorflow as tf

        check_direction(direction)
        return np.asarray(self.functions[direction](images=tf.constant(images, tf.float32))["images"])


def check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise ForensicsError(f"--direction must be a_to_b or b_to_a, got {direction!r}")


def _keras_functions(kind: str, model) -> dict:
    if kind == "wgan":  # the moving average of the generator's weights, if the run kept one
        generator = getattr(model, "sampling_generator", model.generator)
        return {"serving_default": lambda noise: {"images": generator(noise, training=False)}}
    return {"a_to_b": lambda images: {"images": model.generator_ab(images, training=False)},
            "b_to_a": lambda images: {"images": model.generator_ba(images, training=False)}}


def load_generator(path, kind: str) -> LoadedGenerator:
    """Load a `kind` ("wgan" or "cyclegan") generator from a SavedModel folder or a run folder."""
    path = Path(path)
    if not path.exists():
        raise ForensicsError(f"--model {path}: no such file or folder (pass a SavedModel folder or the "
                             f"model_dir of a `train {kind}` run)")
    saved = newest_version(path) if path.is_dir() else None
    if saved is not None:
        info_path = saved / "assets.extra" / INFO_FILE
        info = json.loads(info_path.read_text()) if info_path.exists() else {}
        if info.get("kind", kind) != kind:
            raise ForensicsError(f"{saved} holds a {info['kind']} generator, not a {kind} one")
        loaded, _ = load_saved_model(saved, next(iter(_NEEDED[kind])))
        functions = {name: loaded.signatures[name] for name in loaded.signatures}
        needed = _NEEDED[kind]
        missing = [name for name in needed if name not in functions]
        if missing:
            raise ForensicsError(f"{saved}: no {', '.join(missing)} signature; is it a {kind} SavedModel?")
        # Exported without generator.json: what generation needs is in the signatures.
        if kind == "wgan" and "latent_dim" not in info:
            info["latent_dim"] = int(functions["serving_default"].structured_input_signature[1]["noise"].shape[-1])
            images = functions["serving_default"].structured_outputs["images"].shape
            info.update(resolution=int(images[1]), channels=int(images[-1]))
        if kind == "cyclegan" and "channels" not in info:
            info["channels"] = int(functions["a_to_b"].structured_input_signature[1]["images"].shape[-1])
        return LoadedGenerator(kind, info, functions, saved)
    run_dir = path.parent if path.suffix == ".keras" else path
    info_path = run_dir / INFO_FILE
    if not (run_dir / "config.json").exists() or not info_path.exists():
        raise ForensicsError(f"--model {path}: neither a SavedModel folder (saved_model.pb or numbered versions) "
                             f"nor a {kind} training run (config.json, {INFO_FILE})")
    info = json.loads(info_path.read_text())
    if info.get("kind") != kind:
        raise ForensicsError(f"{run_dir} is a {info.get('kind')} run, not a {kind} one")
    model = load_run_model(kind, run_dir, path if path.suffix == ".keras" else None)
    return LoadedGenerator(kind, info, _keras_functions(kind, model), path)
