"""Making fakes with trained generators: `python -m keras_forensics generate wgan|cyclegan ...`.

A generator is given either as a TF-Serving SavedModel folder (saved_models/wgan: its newest
numeric version is used; or one version folder) or as a training run's model_dir (its model.keras,
or, while the run is still going, its latest checkpoint); keras_forensics.artifacts loads both
(`load_generator`). Both carry `generator.json` (in the SavedModel under assets.extra/), which
records the image size, channels and the bit depth of the training data: PNGs are written with 16
bits per sample when the training data had 16.

Exporting a generator run is keras_forensics.serving.export.export_generator (the same as
`python tools/export.py wgan|cyclegan`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from keras_forensics.artifacts import check_direction
from keras_forensics.artifacts import load_generator as load
from keras_forensics.data.io import write_png
from keras_forensics.errors import ForensicsError
from keras_forensics.models.wgan import sample_noise

logger = logging.getLogger(__name__)


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

