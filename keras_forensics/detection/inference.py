"""Scoring images of any size with a patch detector: overlapping patches, aggregation, heat maps.

An image smaller than the detector's patch is up-sampled (bilinear) until its shorter side fits;
then patches are cut on a grid with `stride` (default a quarter patch), the last row and column
anchored to the far edges, scored in batches, and aggregated two ways: the mean p_fake (a wholly
synthetic image) and the max over patches (one pasted synthetic region in a real figure). Flat
patches (empty or saturated background, std < 0.02) are not judged, as in training. The
p_fake heat map gives every pixel the mean p_fake of the patches covering it, computed with a
2-D difference array (no loop over patches).

`Detector.score_stream` scores many images at once: their patches (cut by `Detector.prepare`, one
compiled function for any image size) share model calls of `batch_size` patches, and each image's
aggregates come out as its last patch is scored, equal to `score`'s (the `detect` command).

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


@dataclasses.dataclass
class PreparedImage:
    """An image cut for scoring (`Detector.prepare`): its patches and which of them are judged.

    `shape` is the image's own [H, W]; `fitted_shape` that of the (possibly up-sampled) image the
    patches [K, S, S, 1] were cut from, rows first (`tiling.patch_corners(*fitted_shape, ...)`).
    """

    shape: tuple[int, int]
    fitted_shape: tuple[int, int]
    patches: np.ndarray
    informative: np.ndarray  # [K] bool


@dataclasses.dataclass
class StreamScore:
    """`Detector.score_stream`'s verdict on one image: the aggregates and the patch scores (enough
    to draw the heat map later with `Detector.heat_map`), without its patches."""

    p_fake: float
    p_fake_max_patch: float
    patch_scores: np.ndarray
    informative: np.ndarray
    shape: tuple[int, int]
    fitted_shape: tuple[int, int]


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
        self._cutters = {}

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

    def _cutter(self, stride: int, min_std: float):
        """One compiled function per (stride, min_std): image [H, W] -> (patches, informative,
        fitted shape), with ops.tiling's grid and flat-patch rule; any image size, no retracing."""
        key = (stride, float(min_std))
        if key not in self._cutters:
            size = self.patch_size

            @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
            def cut(image):
                fitted = tiling.upsample_to_fit(image[..., None], size)
                patches = tiling.tile_patches(fitted, size, stride)
                return patches, tiling.informative_patches(patches, min_std), tf.shape(fitted)[:2]

            self._cutters[key] = cut
        return self._cutters[key]

    def prepare(self, image, stride: int | None = None, min_std: float = FLAT_PATCH_STD) -> PreparedImage:
        """Cut an [H, W] float image in [0, 1] into the patches `score` scores (thread-safe: the
        `detect` command runs it in its reading threads)."""
        image = np.asarray(image, np.float32)
        if image.ndim != 2 or min(image.shape) < 1:
            raise ForensicsError(f"expected a 2-D grayscale image, got shape {image.shape}")
        stride = int(stride or tiling.default_stride(self.patch_size))
        patches, informative, fitted_shape = self._cutter(stride, min_std)(tf.constant(image))
        return PreparedImage(tuple(image.shape), tuple(int(v) for v in fitted_shape.numpy()), patches.numpy(),
                             informative.numpy())

    def score_stream(self, prepared, batch_size: int = 256):
        """Score many images, batching the patches of consecutive images into model calls of
        `batch_size` patches: (key, PreparedImage) pairs in, (key, StreamScore) out, in order, each
        as soon as its last patch is scored. The aggregates are ops.tiling's rule
        (`aggregate_image_scores`), so they equal `score`'s."""
        waiting = []  # (key, PreparedImage) whose patches are not all scored yet
        queued, scores, done = [], [], 0  # patch arrays not yet scored; scores of `waiting`'s patches

        def run(final: bool):
            nonlocal queued
            patches = np.concatenate(queued) if len(queued) > 1 else queued[0]
            cut = len(patches) if final else len(patches) // batch_size * batch_size
            for start in range(0, cut, batch_size):
                scores.append(self.predict_patches(patches[start:start + batch_size], batch_size))
            queued = [patches[cut:]] if cut < len(patches) else []

        def finished():
            nonlocal scores, waiting
            flat = np.concatenate(scores) if scores else np.zeros(0, np.float32)
            count, total = 0, 0
            for _, item in waiting:
                if total + len(item.patches) > len(flat):
                    break
                total += len(item.patches)
                count += 1
            if not count:
                return []
            complete, waiting = waiting[:count], waiting[count:]
            sizes = [len(item.patches) for _, item in complete]
            informative = np.concatenate([item.informative for _, item in complete])
            ids = np.repeat(np.arange(count, dtype=np.int32), sizes)
            means, maxima = (v.numpy() for v in tiling.aggregate_image_scores(flat[:total], informative, ids, count))
            scores = [flat[total:]]
            out, start = [], 0
            for index, ((key, item), size) in enumerate(zip(complete, sizes)):
                out.append((key, StreamScore(float(means[index]), float(maxima[index]), flat[start:start + size],
                                             item.informative, item.shape, item.fitted_shape)))
                start += size
            return out

        for key, item in prepared:
            waiting.append((key, item))
            queued.append(item.patches)
            done += len(item.patches)
            if done >= batch_size:
                run(final=False)
                done = sum(map(len, queued))
                yield from finished()
        if queued:
            run(final=True)
        yield from finished()

    def heat_map(self, verdict: "StreamScore", stride: int | None = None) -> np.ndarray:
        """The p_fake heat map [H, W] of an image scored by `score_stream` (what `score` gives)."""
        stride = int(stride or tiling.default_stride(self.patch_size))
        corners = tiling.patch_corners(*verdict.fitted_shape, self.patch_size, stride)
        heat = heat_map(verdict.fitted_shape, corners, verdict.patch_scores, self.patch_size, verdict.informative)
        if verdict.fitted_shape != verdict.shape:
            heat = tf.image.resize(heat[None, ..., None], verdict.shape, method="bilinear").numpy()[0, ..., 0]
        return heat

    def score(self, image, stride: int | None = None, batch_size: int = 256,
              min_std: float = FLAT_PATCH_STD) -> ImageScore:
        """Score an [H, W] float image in [0, 1] of any size (see the module docstring).

        Patches whose standard deviation is below `min_std` (empty or saturated background) carry
        no trace to judge and were left out of training (`data.patches.image_patches`); they are
        left out of the aggregates and the heat map too, unless every patch is that flat. The grid
        and this rule are ops.tiling's, which the `classify_bytes` serving signature runs too.
        """
        prepared = self.prepare(image, stride, min_std)
        stride = int(stride or tiling.default_stride(self.patch_size))
        corners = tiling.patch_corners(*prepared.fitted_shape, self.patch_size, stride)
        scores = self.predict_patches(prepared.patches, batch_size)
        informative = prepared.informative
        p_fake, p_fake_max_patch = (float(v) for v in tiling.aggregate_patch_scores(scores, informative))
        verdict = StreamScore(p_fake, p_fake_max_patch, scores, informative, prepared.shape, prepared.fitted_shape)
        return ImageScore(p_fake, p_fake_max_patch, self.heat_map(verdict, stride), scores, corners,
                          prepared.fitted_shape, informative)
