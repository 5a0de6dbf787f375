"""Scoring images of any size with a patch detector: overlapping patches, aggregation, heat maps.

An image smaller than the detector's patch is up-sampled (bilinear) until its shorter side fits;
then patches are cut on a grid with `stride` (default a quarter patch), the last row and column
anchored to the far edges, scored in batches, and aggregated two ways: the mean p_fake (a wholly
synthetic image) and the max over patches (one pasted synthetic region in a real figure). Flat
patches (empty or saturated background, std < 0.02) are not judged, as in training. The
p_fake heat map gives every pixel the mean p_fake of the patches covering it, computed with a
2-D difference array (no loop over patches).

`Detector.load` accepts a run dir (its model.keras), a .keras file, or a SavedModel in TF-Serving
layout (`saved_models/detector/<version>/`: the newest numeric version; signature
`serving_default`, input images [B, S, S, 1], output p_fake).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_forensics import artifacts
from keras_forensics.errors import ForensicsError
from keras_forensics.ops import tiling
from keras_forensics.ops.tiling import patch_corners  # noqa: F401  (inference.patch_corners)

DEFAULT_MODEL = artifacts.MODELS_DIR / "detector"
FLAT_PATCH_STD = tiling.FLAT_PATCH_STD


@dataclasses.dataclass
class ImageScore:
    """The detector's verdict on one image.

    `heat_map` has the image's own [H, W]; `corners` are the (row, column) of each patch in the
    (possibly up-sampled) image the patches were cut from, whose size is `fitted_shape`.
    """

    p_fake: float
    p_fake_max_patch: float
    heat_map: np.ndarray
    patch_scores: np.ndarray
    corners: np.ndarray
    fitted_shape: tuple[int, int]
    informative: np.ndarray  # [K] bool: the patches textured enough to be judged


def fit_image(image, patch_size: int) -> np.ndarray:
    """Up-sample (bilinear) an [H, W] image whose shorter side is below `patch_size` so that it
    fits exactly; larger images are returned unchanged (`ops.tiling.upsample_to_fit`)."""
    image = np.asarray(image, np.float32)
    return tiling.upsample_to_fit(image[..., None], patch_size).numpy()[..., 0]


def heat_map(shape, corners: np.ndarray, scores: np.ndarray, patch_size: int, weights=None) -> np.ndarray:
    """Mean score of the patches covering each pixel of an image of `shape` (patches weighted by
    `weights`, default 1; a pixel no weighted patch covers gets 0)."""
    height, width = shape
    weights = np.ones_like(scores, np.float64) if weights is None else np.asarray(weights, np.float64)
    total = np.zeros((height + 1, width + 1), np.float64)
    count = np.zeros_like(total)
    y, x = corners[:, 0], corners[:, 1]
    for grid, values in ((total, scores * weights), (count, weights)):
        np.add.at(grid, (y, x), values)
        np.add.at(grid, (y, x + patch_size), -values)
        np.add.at(grid, (y + patch_size, x), -values)
        np.add.at(grid, (y + patch_size, x + patch_size), values)
    total = total.cumsum(0).cumsum(1)[:height, :width]
    count = count.cumsum(0).cumsum(1)[:height, :width]
    return (total / np.maximum(count, 1)).astype(np.float32)


class Detector:
    """A patch classifier [B, S, S, 1] -> p_fake, with image scoring on top.

    Args:
        predict: a callable from a float32 batch [B, S, S, 1] to p_fake [B] or [B, 1].
        patch_size: S.
        name: where the model came from (shown in reports).

    Example:
        >>> detector = Detector.load("runs/detector/cnn")
        >>> verdict = detector.score(image)          # any [H, W] float image in [0, 1]
        >>> verdict.p_fake, verdict.p_fake_max_patch, verdict.heat_map.shape
    """

    def __init__(self, predict, patch_size: int, name: str = "detector"):
        self._predict = predict
        self.patch_size = int(patch_size)
        self.name = name

    @classmethod
    def from_keras(cls, model, name: str | None = None) -> "Detector":
        size = model.input_shape[1]
        function = tf.function(lambda x: model(x, training=False),
                               input_signature=[tf.TensorSpec([None, size, size, 1], tf.float32)])
        return cls(function, size, name or model.name)

    @classmethod
    def load(cls, path=None) -> "Detector":
        """A run dir (model.keras), a .keras file, or a SavedModel (TF-Serving layout or not)."""
        path = Path(path) if path else artifacts.default_model("detector")
        if not path.exists():
            hint = (" (train one: python -m keras_forensics.train detector --preset shipped, then pass "
                    "--model runs/detector/<run>)" if path == DEFAULT_MODEL else "")
            raise ForensicsError(f"no detector at {path}{hint}")
        keras_file = path if path.suffix == ".keras" else path / artifacts.MODEL_FILE
        if keras_file.is_file():
            return cls.from_keras(artifacts.load_keras(keras_file), str(path))
        saved = artifacts.newest_version(path)
        if saved is None:
            raise ForensicsError(f"{path}: neither a run dir with model.keras nor a SavedModel "
                                 "(<dir>/saved_model.pb or <dir>/<version>/saved_model.pb)")
        loaded, signature = artifacts.load_saved_model(saved)
        key, spec = artifacts.signature_input(signature, saved)
        size = spec.shape[1]
        if size is None or spec.shape.rank != 4:
            raise ForensicsError(f"{saved}: serving_default input must be [batch, S, S, 1], got {spec.shape}")

        def predict(images):
            outputs = signature(**{key: tf.cast(images, spec.dtype)})
            return outputs["p_fake"] if "p_fake" in outputs else next(iter(outputs.values()))

        detector = cls(predict, size, str(saved))
        detector._loaded = loaded  # keeps the variables alive
        return detector

    def predict_patches(self, patches, batch_size: int = 256) -> np.ndarray:
        """p_fake [N] of patches [N, S, S] or [N, S, S, 1], in batches."""
        patches = np.asarray(patches, np.float32)
        if patches.ndim == 3:
            patches = patches[..., None]
        out = [np.asarray(self._predict(tf.constant(patches[i:i + batch_size]))).reshape(-1)
               for i in range(0, len(patches), batch_size)]
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def score(self, image, stride: int | None = None, batch_size: int = 256,
              min_std: float = FLAT_PATCH_STD) -> ImageScore:
        """Score an [H, W] float image in [0, 1] of any size (see the module docstring).

        Patches whose standard deviation is below `min_std` (empty or saturated background) carry
        no trace to judge and were left out of training (`data.patches.image_patches`); they are
        left out of the aggregates and the heat map too, unless every patch is that flat. The grid
        and this rule are ops.tiling's, which the `classify_bytes` serving signature runs too.
        """
        image = np.asarray(image, np.float32)
        if image.ndim != 2 or min(image.shape) < 1:
            raise ForensicsError(f"expected a 2-D grayscale image, got shape {image.shape}")
        stride = int(stride or tiling.default_stride(self.patch_size))
        fitted = tiling.upsample_to_fit(image[..., None], self.patch_size)
        corners = tiling.patch_corners(int(fitted.shape[0]), int(fitted.shape[1]), self.patch_size, stride)
        patches = tiling.tile_patches(fitted, self.patch_size, stride)
        scores = self.predict_patches(patches.numpy(), batch_size)
        informative = tiling.informative_patches(patches, min_std)
        p_fake, p_fake_max_patch = (float(v) for v in tiling.aggregate_patch_scores(scores, informative))
        informative = informative.numpy()
        fitted = fitted.numpy()[..., 0]
        heat = heat_map(fitted.shape, corners, scores, self.patch_size, informative)
        if fitted.shape != image.shape:
            heat = tf.image.resize(heat[None, ..., None], image.shape, method="bilinear").numpy()[0, ..., 0]
        return ImageScore(p_fake, p_fake_max_patch, heat, scores, corners, fitted.shape, informative)
