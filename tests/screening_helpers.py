"""Shared pieces of the screening tests: a tiny Siamese model, test images, the CLI runner."""

from __future__ import annotations

import contextlib
import io

import numpy as np

TINY_CONFIG = dict(filters=(4, 4), dense_units=16, embedding_dim=8)


def tiny_triplet_model(seed: int = 0):
    """An untrained tiny Siamese triplet model at input 128 (the trainer's layout)."""
    import keras

    from keras_forensics.config import SiameseConfig
    from keras_forensics.models import siamese

    keras.utils.set_random_seed(seed)
    embedding = siamese.build_embedding(SiameseConfig(**TINY_CONFIG))
    distance = siamese.WeightedL1Distance(name="distance")
    return siamese.build_triplet_model(embedding, distance)


def skimage_gray(name: str) -> np.ndarray:
    """A scikit-image sample image (shipped with the package, nothing downloaded) as float32 gray."""
    import skimage.data

    image = np.asarray(getattr(skimage.data, name)())
    if image.ndim == 3:
        image = image[..., :3] @ np.array([0.2989, 0.587, 0.114])
        return (image / 255.0).astype(np.float32)
    if image.dtype == bool:
        return image.astype(np.float32)
    return (image / np.iinfo(image.dtype).max).astype(np.float32)


def save_gray(path, image: np.ndarray, **options) -> None:
    from PIL import Image

    Image.fromarray(np.clip(np.round(np.asarray(image) * 255), 0, 255).astype(np.uint8)).save(path, **options)


def run_cli(argv, main=None):
    """Run `python -m keras_forensics ARGV` in-process (or another CLI's `main`): (exit status,
    stdout, stderr)."""
    if main is None:
        from keras_forensics.__main__ import main

    out, err = io.StringIO(), io.StringIO()
    status = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in argv])
        except SystemExit as exit_:
            status = exit_.code if isinstance(exit_.code, int) else 1
    return status, out.getvalue(), err.getvalue()
