"""Making fakes with trained generators: `python -m keras_forensics generate wgan|cyclegan ...`.

A generator is given either as a TF-Serving SavedModel folder (saved_models/wgan: its newest
numeric version is used; or one version folder) or as a training run's model_dir (its model.keras,
or, while the run is still going, its latest checkpoint). Both carry `generator.json` (in the
SavedModel under assets.extra/), which records the image size, channels and the bit depth of the
training data: PNGs are written with 16 bits per sample when the training data had 16.

`export(kind, model_dir)` writes the SavedModel through `keras_forensics.serving.signatures` (the
same as `python tools/export.py wgan|cyclegan`): signature `serving_default` (noise [B, latent] ->
images [B, R, R, C] in [0, 1]) for the WGAN; `a_to_b` and `b_to_a` (images -> images, any size
divisible by 4) for CycleGAN, with `serving_default` = `a_to_b`; and adds generator.json.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from keras_forensics.errors import ForensicsError

logger = logging.getLogger(__name__)

INFO_FILE = "generator.json"
MODEL_FILE = "model.keras"
DIRECTIONS = ("a_to_b", "b_to_a")


# ---------------------------------------------------------------------------------------------
# writing images


def encode_png(image: np.ndarray, bit_depth: int = 8) -> bytes:
    """[H, W] or [H, W, C] floats in [0, 1] -> PNG bytes with 8 or 16 bits per sample."""
    import tensorflow as tf

    from keras_forensics.data.blots import quantize

    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    return tf.io.encode_png(quantize(image, bit_depth)).numpy()


def write_png(path, image: np.ndarray, bit_depth: int = 8) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_png(image, bit_depth))
    return path


def write_info(directory, info: dict) -> Path:
    path = Path(directory) / INFO_FILE
    path.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return path


# ---------------------------------------------------------------------------------------------
# loading a generator from a SavedModel or a run directory


def newest_version(path: Path) -> Path | None:
    """The SavedModel folder of `path`: itself, or its highest numeric sub-folder."""
    if (path / "saved_model.pb").exists():
        return path
    versions = [p for p in path.iterdir() if p.is_dir() and p.name.isdigit() and (p / "saved_model.pb").exists()] \
        if path.is_dir() else []
    return max(versions, key=lambda p: int(p.name)) if versions else None


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
    if kind == "wgan":
        return {"serving_default": lambda noise: {"images": model.generator(noise, training=False)}}
    return {"a_to_b": lambda images: {"images": model.generator_ab(images, training=False)},
            "b_to_a": lambda images: {"images": model.generator_ba(images, training=False)}}


def load(path, kind: str) -> LoadedGenerator:
    """Load a `kind` ("wgan" or "cyclegan") generator from a SavedModel folder or a run folder."""
    import tensorflow as tf

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
        loaded = tf.saved_model.load(str(saved))
        functions = {name: loaded.signatures[name] for name in loaded.signatures}
        needed = ("serving_default",) if kind == "wgan" else DIRECTIONS
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


def _load_keras_model(kind: str, path: Path):
    """A saved WGAN or CycleGAN (.keras) without its optimisers."""
    import importlib

    import keras

    importlib.import_module(f"keras_forensics.models.{kind}")  # registers the model class
    return keras.saving.load_model(path, compile=False)


def load_run_model(kind: str, run_dir: Path, model_file: Path | None = None):
    """The WGAN or CycleGAN of a run dir: `model_file` (default its model.keras) or, while the run
    is in progress or was stopped early, its latest checkpoint rebuilt in float32."""

    from keras_forensics import config as config_lib
    from keras_forensics.training import common

    model_file = model_file or run_dir / MODEL_FILE
    if model_file.exists():
        return _load_keras_model(kind, model_file)
    checkpoint = common.backup_dir(run_dir) / "latest.weights.h5"
    if not checkpoint.exists():
        raise ForensicsError(f"{run_dir}: no {MODEL_FILE} and no checkpoint yet; train it first")
    # A run still in progress: rebuild it from its config and load the newest checkpoint.
    if kind == "wgan":
        from keras_forensics.training import wgan as trainer

        model = trainer.build_model(config_lib.load(config_lib.WGANTrainConfig, run_dir / "config.json"), 1,
                                    precision="float32")
    else:
        from keras_forensics.training import cyclegan as trainer

        model = trainer.build_model(config_lib.load(config_lib.CycleGANTrainConfig, run_dir / "config.json"), 1)
    model.load_weights(checkpoint)
    return model


# ---------------------------------------------------------------------------------------------
# the two commands


def sample_noise(count: int, latent_dim: int, seed: int = 0) -> np.ndarray:
    """The generator's input: standard normal, fixed by the seed."""
    return np.random.default_rng(seed).standard_normal((count, latent_dim)).astype(np.float32)


def generate_wgan(model, n: int = 100, out: str = "fakes", seed: int = 0, batch_size: int = 64,
                  grid: bool = True) -> dict:
    """Write `n` generated images as PNGs (fake_00000.png, ...) and, with `grid`, grid.png."""
    from keras_forensics.data.grid import image_grid

    if n < 1 or batch_size < 1:
        raise ForensicsError("--n and --batch_size must be positive")
    generator = load(model, "wgan")
    latent_dim = int(generator.info["latent_dim"])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    noise = sample_noise(n, latent_dim, seed)
    first = []
    for start in range(0, n, batch_size):
        images = generator.sample(noise[start:start + batch_size])
        for offset, image in enumerate(images):
            write_png(out / f"fake_{start + offset:05d}.png", image, generator.bit_depth)
        if len(first) < 64:
            first.extend(images[:64 - len(first)])
    result = {"out": str(out), "images": n, "bit_depth": generator.bit_depth, "model": str(generator.source)}
    if grid:
        result["grid"] = str(write_png(out / "grid.png", image_grid(np.stack(first)), generator.bit_depth))
    return result


def _pad_to_multiple(image: np.ndarray, multiple: int) -> tuple[np.ndarray, tuple[int, int]]:
    height, width = image.shape[:2]
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h or pad_w:
        image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="reflect")
    return image, (height, width)


def translate_cyclegan(model, input: str, out: str = "translated", direction: str = "a_to_b") -> dict:  # noqa: A002
    """Translate every image below `input` with the `direction` generator; write PNGs with the
    same relative names under `out`, each with the bit depth of its source file."""
    from keras_forensics.data import io

    check_direction(direction)
    source = Path(input)
    if not source.exists():
        raise ForensicsError(f"--input {source}: no such file or folder")
    generator = load(model, "cyclegan")
    channels = int(generator.info.get("channels", 1))
    multiple = 2 ** int(generator.info.get("down_blocks", 2))
    out = Path(out)
    report = io.ScanReport()
    written = 0
    # A grayscale model sees the luminance of colour files; an RGB model sees grayscale files as
    # three equal channels (the closest colour image), with a warning below.
    gray_inputs = []
    for path, image in io.scan_images(source, report=report, color=channels == 3):
        if channels == 1:
            image = image[..., None]
        elif float(np.max(np.ptp(image, axis=-1))) == 0.0:
            gray_inputs.append(path.name)
        padded, (height, width) = _pad_to_multiple(image, multiple)
        translated = generator.translate(padded[None], direction)[0, :height, :width]
        relative = path.relative_to(source) if source.is_dir() else Path(path.name)
        write_png((out / relative).with_suffix(".png"), translated, io.file_bit_depth(path))
        written += 1
    if not written:
        raise ForensicsError(f"--input {source}: no readable images ({report.summary()})")
    if gray_inputs:
        logger.warning("%d grayscale input(s) (e.g. %s) given to an RGB generator as three equal channels",
                       len(gray_inputs), gray_inputs[0])
    return {"out": str(out), "images": written, "skipped": len(report.skipped), "direction": direction,
            "model": str(generator.source)}


# ---------------------------------------------------------------------------------------------
# export to the TF-Serving layout


def export(kind: str, model_dir, export_base="saved_models", version: int | None = None,
           overwrite: bool = False) -> Path:
    """Write the generator(s) of a finished `kind` run to <export_base>/<kind>/<version>/ with
    `keras_forensics.serving.signatures.export` (signatures, warm-up requests, reload check,
    atomic rename), then add the run's generator.json under assets.extra/ for `generate`."""
    from keras_forensics.serving import signatures

    if kind not in ("wgan", "cyclegan"):
        raise ForensicsError(f"unknown generator kind {kind!r} (wgan or cyclegan)")
    model_dir = Path(model_dir)
    info_path = model_dir / INFO_FILE
    if not info_path.exists():
        raise ForensicsError(f"{model_dir}: no {INFO_FILE}; is it a {kind} training run?")
    result = signatures.export(kind, model_dir, export_base=export_base, version=version, overwrite=overwrite,
                               verbose=False)
    add_info(model_dir, result.path)
    return result.path


def add_info(model_dir, saved_model_dir) -> Path | None:
    """Copy a run's generator.json (image size, channels, bit depth, training data and held-out
    groups) into its SavedModel's assets.extra/, where `generate` and `evaluate wgan` read it.
    Returns the written file, or None for a run without generator.json."""
    info_path = Path(model_dir) / INFO_FILE
    if not info_path.exists():
        return None
    extra = Path(saved_model_dir) / "assets.extra"
    extra.mkdir(exist_ok=True)
    return write_info(extra, {**json.loads(info_path.read_text()), "exported_from": str(model_dir)})
