"""Per-image implementations of the deformations, the baselines of `tools/benchmark.py pipeline`.

All do what HMS-IDAC/ImageForensics V02/image_distortions.py does, one image at a time with
NumPy, scikit-image and Pillow, with the same ranges and probabilities as
`keras_forensics.config.DeformationConfig`:

* `ReferenceDeformer(structure="verbatim")`: the original per-image implementation as it is
  written: step by step (skimage rotate, then rescale with crop/pad, then translate, each
  resampling the image; Pillow's bicubic perspective; skimage's adjust_gamma) and the local edits
  (erase, local contrast, copy-move of a disc) as per-pixel Python loops over the crop. The issue's
  "about 140 images/s" is this implementation; it is the baseline of the pipeline ratio.
* `ReferenceDeformer(structure="original")`: the same steps with the per-pixel loops replaced by
  NumPy masks: a straightforward vectorised port, reported as a stronger baseline.
* `ReferenceDeformer(structure="tuned")`: a tuned per-image version that also composes the
  similarity into one skimage warp and uses bilinear Pillow resampling: the strongest baseline.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from skimage import exposure, transform

from keras_forensics.config import DeformationConfig


def _perspective(image, shifts, resample=Image.Resampling.BILINEAR):
    """Pillow perspective warp moving the corners by `shifts` [4, 2] (as V02's imrandpptf)."""
    size = image.shape[0]
    last = size - 1
    source = np.array([[0, 0], [last, 0], [last, last], [0, last]], float)
    target = source + shifts
    rows = []
    for (x, y), (u, v) in zip(target, source):  # Pillow maps output -> input
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    coefficients = np.linalg.solve(np.array(rows), source.reshape(8))
    warped = Image.fromarray(np.ascontiguousarray(image)).transform(
        (size, size), Image.Transform.PERSPECTIVE, tuple(coefficients), resample
    )
    return np.array(warped, np.float32)


def _similarity_in_steps(image, angle, scale, dx, dy):
    """As V02's imsltf: rotate, rescale about the centre (crop or zero-pad back), translate."""
    size = image.shape[0]
    rotated = transform.rotate(image, math.degrees(angle))
    scaled = transform.rescale(rotated, scale, mode="constant")
    new = scaled.shape[0]
    if new >= size:
        start = (new - size) // 2
        scaled = scaled[start:start + size, start:start + size]
    else:
        start = (size - new) // 2
        padded = np.zeros((size, size))
        padded[start:start + new, start:start + new] = scaled
        scaled = padded
    shift = transform.SimilarityTransform(translation=(-dx, -dy))
    return transform.warp(scaled, shift, mode="constant").astype(np.float32)


def _similarity(image, angle, scale, dx, dy):
    centre = (image.shape[0] - 1) / 2.0
    tform = (
        transform.SimilarityTransform(translation=(-centre, -centre))
        + transform.SimilarityTransform(rotation=-angle, scale=scale)
        + transform.SimilarityTransform(translation=(centre + dx, centre + dy))
    )
    return transform.warp(np.array(image), tform.inverse, order=1, mode="constant", cval=0.0).astype(np.float32)


def _disc_distance(size, cx, cy):
    y, x = np.mgrid[0:size, 0:size]
    return np.sqrt((x - cx) ** 2 + (y - cy) ** 2)


def _jpeg(image, quality):
    buffer = io.BytesIO()
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(buffer, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(buffer), np.float32) / 255.0


STRUCTURES = ("verbatim", "original", "tuned")


def _disc_loop(image, cx, cy, pixel):
    """Per-pixel loop over a 2-D image: `pixel(value, distance, i, j)` -> new value."""
    out = np.array(image, np.float64)
    rows, cols = out.shape
    for i in range(rows):
        for j in range(cols):
            out[i, j] = pixel(out[i, j], math.sqrt((j - cx) ** 2 + (i - cy) ** 2), i, j)
    return out


def _local_edit_loops(image, kind, centre, radius, factor, target, source, soft_edge):
    """The three local edits with the original's per-pixel loops (same arithmetic as the masks)."""
    cx, cy = centre
    if kind == 0:
        return _disc_loop(image, cx, cy, lambda v, d, i, j: v * min(max((d - radius) / soft_edge, 0.0), 1.0))
    if kind == 1:
        scaled = _disc_loop(image, cx, cy,
                            lambda v, d, i, j: v * (1 + (factor - 1) * min(max((2 * radius - d) / radius, 0.0), 1.0)))
        return scaled / max(scaled.max(), 1.0)
    size = image.shape[0]
    dx, dy = (int(v) for v in np.round(np.asarray(target) - np.asarray(source)))

    def copy(v, d, i, j):
        weight = min(max((1.5 * radius - d) / (0.5 * radius), 0.0), 1.0)
        if weight == 0.0:
            return v
        si, sj = i - dy, j - dx
        moved = image[si, sj] if 0 <= si < size and 0 <= sj < size else 0.0
        return weight * moved + (1 - weight) * v

    return _disc_loop(image, *target, copy)


class ReferenceDeformer:
    """`deform(patch) -> crop` and `anchor(patch) -> crop` for single 2-D float32 images."""

    def __init__(self, config: DeformationConfig | None = None, seed: int = 0, structure: str = "original"):
        if structure not in STRUCTURES:
            raise ValueError(f"structure must be one of {STRUCTURES}, got {structure!r}")
        self.original = structure in ("verbatim", "original")
        self.loops = structure == "verbatim"
        self.config = config or DeformationConfig()
        self.rng = np.random.default_rng(seed)
        self.font = ImageFont.load_default(size=14)

    def _crop(self, image):
        start = (self.config.patch_size - self.config.crop_size) // 2
        return image[start:start + self.config.crop_size, start:start + self.config.crop_size]

    def deform(self, image):
        c, rng = self.config, self.rng
        geometric = rng.random() < c.p_geometric
        if geometric:
            if rng.random() < c.p_reflection:
                if rng.random() < 0.5:
                    image = np.fliplr(image)
                if rng.random() < 0.5:
                    image = np.flipud(image)
            if rng.random() < c.p_perspective:
                shift = c.perspective_max_shift
                resample = Image.Resampling.BICUBIC if self.original else Image.Resampling.BILINEAR
                image = _perspective(image, rng.uniform(-shift, shift, (4, 2)), resample)
            if rng.random() < c.p_similarity:
                max_angle = math.radians(c.max_rotation_degrees)
                similarity = _similarity_in_steps if self.original else _similarity
                image = similarity(
                    image, rng.uniform(-max_angle, max_angle), rng.uniform(*c.scale_range),
                    *rng.uniform(-c.max_translation, c.max_translation, 2),
                )
        # Bicubic resampling overshoots slightly outside [0, 1].
        image = np.clip(self._crop(image), 0.0, 1.0)
        if geometric:
            if rng.random() < c.p_jpeg:
                image = _jpeg(image, rng.integers(c.jpeg_quality_range[0], c.jpeg_quality_range[1] + 1))
            if rng.random() < c.p_gamma:
                exponent = math.exp(rng.uniform(*np.log(c.gamma_range)))
                image = exposure.adjust_gamma(image, exponent) if self.original else np.power(image, exponent)
            if rng.random() < c.p_local_edit:
                image = self._local_edit(image)
        return np.clip(self._clutter(image), 0.0, 1.0)

    def anchor(self, image):
        return self._clutter(self._crop(image))

    def _local_edit(self, image):
        c, rng, size = self.config, self.rng, image.shape[0]
        kind = rng.integers(0, 3)
        cx, cy = rng.uniform(0.1, 0.9, 2) * size
        if self.loops:
            radius_range = (c.erase_radius_range, c.contrast_radius_range, c.copy_move_radius_range)[kind]
            factor = rng.uniform(*c.contrast_factor_range)
            target, source = rng.uniform(0.3, 0.7, 2) * size, rng.uniform(0.3, 0.7, 2) * size
            return _local_edit_loops(image, kind, (cx, cy), rng.uniform(*radius_range) * size, factor,
                                     target, source, c.soft_edge * size).astype(np.float32)
        distance = _disc_distance(size, cx, cy)
        if kind == 0:
            radius = rng.uniform(*c.erase_radius_range) * size
            return image * np.clip((distance - radius) / (c.soft_edge * size), 0, 1)
        if kind == 1:
            radius = rng.uniform(*c.contrast_radius_range) * size
            weight = np.clip((2 * radius - distance) / radius, 0, 1)
            scaled = image * (1 + (rng.uniform(*c.contrast_factor_range) - 1) * weight)
            return scaled / max(scaled.max(), 1.0)
        target = rng.uniform(0.3, 0.7, 2) * size
        source = rng.uniform(0.3, 0.7, 2) * size
        radius = rng.uniform(*c.copy_move_radius_range) * size
        dx, dy = np.round(target - source).astype(int)
        shifted = np.zeros_like(image)
        ys, xs = slice(max(dy, 0), size + min(dy, 0)), slice(max(dx, 0), size + min(dx, 0))
        shifted[ys, xs] = image[max(-dy, 0):size - max(dy, 0), max(-dx, 0):size - max(dx, 0)]
        weight = np.clip((1.5 * radius - _disc_distance(size, *target)) / (0.5 * radius), 0, 1)
        return weight * shifted + (1 - weight) * image

    def _clutter(self, image):
        c, rng = self.config, self.rng
        choice = rng.random()
        if choice >= c.p_text + c.p_rectangle:
            return image
        canvas = Image.fromarray(np.asarray(image, np.float32), mode="F")
        draw = ImageDraw.Draw(canvas)
        size = image.shape[0]
        if choice < c.p_text:
            letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
            text = "".join(rng.choice(list(letters), rng.integers(*c.text_length_range)))
            position = (int(rng.uniform(0, 0.5) * size), int(rng.uniform(0, 0.85) * size))
            draw.text(position, text, fill=float(rng.uniform(*c.text_intensity_range)), font=self.font)
        else:
            x0, y0 = (rng.uniform(0, 0.5, 2) * size).astype(int)
            w, h = (rng.uniform(1 / 3, 0.5, 2) * size).astype(int)
            draw.rectangle([x0, y0, x0 + w, y0 + h], outline=float(rng.random()),
                           width=int(rng.integers(1, c.max_rectangle_thickness + 1)))
        return np.asarray(canvas, np.float32)
