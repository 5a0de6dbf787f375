"""The random manipulations of Cicconet et al., as batched, seeded TensorFlow ops.

Port of HMS-IDAC/ImageForensics V02/image_distortions.py. The original deforms one image at a
time with scikit-image, Pillow and per-pixel NumPy loops (about 140 images/s on 2 CPU cores).
Here every step works on a whole batch [B, H, W, 1] at once, so the same code runs on a GPU:

* reflection, perspective (corners moved up to +-20 px) and similarity (rotation, scale,
  translation) are composed into ONE projective matrix per image, together with the centre crop,
  and applied with a single `ImageProjectiveTransformV3` call that only computes the cropped
  output pixels;
* gamma uses `tf.pow` with a per-image exponent (`tf.image.adjust_gamma` takes one scalar);
* the local edits (soft-edged erase, local contrast, copy-move of a disc) are masks computed from
  a per-image distance field;
* JPEG re-compression runs only on the images drawn for it;
* clutter (text from a bank of glyph masks rendered once with Pillow, or a rectangle outline) is
  pasted with per-image position and intensity.

Randomness is stateless: every function takes a `seed` tensor of shape [2] and the same seed
gives the same batch on any device.

Coordinates follow `ImageProjectiveTransformV3`: x is the column, y the row, and pixel (i, j)
sits at x = j, y = i. All matrices here are *forward* maps (input pixel -> output pixel); `warp`
inverts them for the op, which wants output -> input.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from keras_forensics.config import DeformationConfig

# ---------------------------------------------------------------------------------------------
# randomness


def split_seed(seed, num: int):
    """`num` independent seeds from one seed of shape [2]."""
    return tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num))


def _uniform(seed, shape, low, high):
    return tf.random.stateless_uniform(shape, seed, minval=low, maxval=high, dtype=tf.float32)


def _bernoulli(seed, batch, probability):
    return tf.random.stateless_uniform([batch], seed) < probability


# ---------------------------------------------------------------------------------------------
# projective matrices (forward maps, [B, 3, 3])


def _eye(batch):
    return tf.eye(3, batch_shape=[batch], dtype=tf.float32)


def _select(mask, matrices, batch):
    return tf.where(mask[:, None, None], matrices, _eye(batch))


def translation_matrices(dx, dy):
    """x' = x + dx, y' = y + dy."""
    zeros, ones = tf.zeros_like(dx), tf.ones_like(dx)
    return tf.reshape(
        tf.stack([ones, zeros, dx, zeros, ones, dy, zeros, zeros, ones], axis=-1), [-1, 3, 3]
    )


def reflection_matrices(flip_left_right, flip_up_down, size: int):
    """Mirror columns and/or rows of a `size` x `size` image (boolean [B] each)."""
    sx = tf.where(flip_left_right, -1.0, 1.0)
    sy = tf.where(flip_up_down, -1.0, 1.0)
    tx = tf.where(flip_left_right, float(size - 1), 0.0)
    ty = tf.where(flip_up_down, float(size - 1), 0.0)
    zeros, ones = tf.zeros_like(sx), tf.ones_like(sx)
    return tf.reshape(tf.stack([sx, zeros, tx, zeros, sy, ty, zeros, zeros, ones], -1), [-1, 3, 3])


def similarity_matrices(angle, scale, dx, dy, size: int):
    """Rotate by `angle` (radians, counter-clockwise on screen) and scale about the image centre,
    then translate by (dx, dy) pixels."""
    centre = (size - 1) / 2.0
    cos, sin = tf.cos(angle) * scale, tf.sin(angle) * scale
    # Rows grow downwards, so a counter-clockwise turn on screen is x' = c x + s y, y' = -s x + c y.
    a, b, c, d = cos, sin, -sin, cos
    tx = centre - a * centre - b * centre + dx
    ty = centre - c * centre - d * centre + dy
    zeros, ones = tf.zeros_like(angle), tf.ones_like(angle)
    return tf.reshape(tf.stack([a, b, tx, c, d, ty, zeros, zeros, ones], -1), [-1, 3, 3])


def perspective_matrices(corner_shifts, size: int):
    """The homography moving the 4 image corners by `corner_shifts` [B, 4, 2] (x, y) pixels.

    Corners in order top-left, top-right, bottom-right, bottom-left. Solved as the usual 8x8
    linear system, batched.
    """
    last = float(size - 1)
    source = tf.constant([[0.0, 0.0], [last, 0.0], [last, last], [0.0, last]])
    target = source[None] + corner_shifts
    batch = tf.shape(corner_shifts)[0]
    x = tf.broadcast_to(source[None, :, 0], [batch, 4])
    y = tf.broadcast_to(source[None, :, 1], [batch, 4])
    u, v = target[..., 0], target[..., 1]
    zeros, ones = tf.zeros_like(x), tf.ones_like(x)
    rows_u = tf.stack([x, y, ones, zeros, zeros, zeros, -u * x, -u * y], -1)
    rows_v = tf.stack([zeros, zeros, zeros, x, y, ones, -v * x, -v * y], -1)
    system = tf.reshape(tf.stack([rows_u, rows_v], axis=2), [batch, 8, 8])
    rhs = tf.reshape(tf.stack([u, v], axis=2), [batch, 8, 1])
    h = tf.linalg.solve(system, rhs)[..., 0]
    return tf.reshape(tf.concat([h, tf.ones([batch, 1])], axis=1), [batch, 3, 3])


def crop_matrices(batch, size: int, crop: int):
    """The centre crop of a `size` image to `crop` pixels, as a translation."""
    offset = tf.fill([batch], -(size - crop) / 2.0)
    return translation_matrices(offset, offset)


def warp(images, forward, output_size: int | None = None, interpolation: str = "BILINEAR"):
    """Apply forward projective maps [B, 3, 3] to images [B, H, W, C]; outside is filled with 0."""
    inverse = tf.linalg.inv(forward)
    inverse = inverse / inverse[:, 2:3, 2:3]
    transforms = tf.reshape(inverse, [-1, 9])[:, :8]
    if output_size is None:
        output_shape = tf.shape(images)[1:3]
    else:
        output_shape = tf.constant([output_size, output_size], tf.int32)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=output_shape,
        fill_value=0.0,
        interpolation=interpolation,
        fill_mode="CONSTANT",
    )


def random_geometry(seed, batch, config: DeformationConfig, apply=None):
    """One forward matrix per image: reflection, then perspective, then similarity, then a quarter
    turn (k x 90 degrees, `p_rotate90`), then the crop.

    `apply` ([B] bool) switches the whole geometric group off for some images (they are only
    cropped), as in the paper's 0.9 / 0.1 branching.
    """
    size = config.patch_size
    seeds = split_seed(seed, 10)
    if apply is None:
        apply = tf.ones([batch], tf.bool)
    use_reflection = apply & _bernoulli(seeds[0], batch, config.p_reflection)
    flip_lr = use_reflection & _bernoulli(seeds[1], batch, 0.5)
    flip_ud = use_reflection & _bernoulli(seeds[2], batch, 0.5)
    matrix = reflection_matrices(flip_lr, flip_ud, size)

    use_perspective = apply & _bernoulli(seeds[3], batch, config.p_perspective)
    shift = config.perspective_max_shift
    shifts = _uniform(seeds[4], [batch, 4, 2], -shift, shift)
    matrix = _select(use_perspective, perspective_matrices(shifts, size), batch) @ matrix

    use_similarity = apply & _bernoulli(seeds[5], batch, config.p_similarity)
    max_angle = math.radians(config.max_rotation_degrees)
    angle = _uniform(seeds[6], [batch], -max_angle, max_angle)
    scale = _uniform(seeds[7], [batch], *config.scale_range)
    translation = _uniform(seeds[8], [batch, 2], -config.max_translation, config.max_translation)
    similarity = similarity_matrices(angle, scale, translation[:, 0], translation[:, 1], size)
    matrix = _select(use_similarity, similarity, batch) @ matrix

    turn_seeds = split_seed(seeds[9], 2)
    use_turn = apply & _bernoulli(turn_seeds[0], batch, config.p_rotate90)
    quarters = tf.random.stateless_uniform([batch], turn_seeds[1], 1, 4, tf.int32)
    turn = similarity_matrices(tf.cast(quarters, tf.float32) * (math.pi / 2), 1.0, 0.0, 0.0, size)
    matrix = _select(use_turn, turn, batch) @ matrix

    return crop_matrices(batch, size, config.crop_size) @ matrix


# ---------------------------------------------------------------------------------------------
# photometric changes


def gamma(images, exponents):
    """images ** exponent, one exponent per image ([B])."""
    return tf.pow(images, tf.reshape(exponents, [-1, 1, 1, 1]))


def on_subset(images, apply, fn, *params):
    """Run `fn(images, *params)` only on the images where `apply` ([B] bool) is true.

    The others pass through untouched; work scales with how many images were drawn, which matters
    for the optional steps (each applies to well under half of a batch).
    """
    index = tf.where(apply)
    selected = [tf.gather_nd(images, index)] + [tf.gather_nd(p, index) for p in params]
    return tf.tensor_scatter_nd_update(images, index, fn(*selected))


def jpeg(images, quality, apply=None):
    """Re-compress the images where `apply` is true, each at its own JPEG `quality` ([B] int)."""
    if apply is None:
        apply = tf.ones(tf.shape(images)[:1], tf.bool)

    def compress(selected, qualities):
        out = tf.map_fn(
            lambda args: tf.image.adjust_jpeg_quality(args[0], args[1]),
            (selected, qualities),
            fn_output_signature=tf.TensorSpec(images.shape[1:], tf.float32),
        )
        return tf.ensure_shape(out, [None] + images.shape[1:])

    return on_subset(images, apply, compress, tf.cast(quality, tf.int32))


def _distance_to(centres, size):
    """[B, size, size, 1] distance of every pixel to one centre (x, y) per image ([B, 2])."""
    grid = tf.range(size, dtype=tf.float32)
    dx = grid[None, None, :] - centres[:, 0, None, None]
    dy = grid[None, :, None] - centres[:, 1, None, None]
    return tf.sqrt(dx * dx + dy * dy)[..., None]


def erase_disc(images, centres, radii, soft_edge):
    """Set a disc to 0, with a linear ramp of width `soft_edge` pixels outside it."""
    distance = _distance_to(centres, tf.shape(images)[1])
    keep = tf.clip_by_value((distance - radii[:, None, None, None]) / soft_edge, 0.0, 1.0)
    return images * keep


def scale_disc(images, centres, radii, factors):
    """Multiply a disc by `factor`, fading linearly to 1 at twice the radius; if the result
    exceeds 1 the image is divided by its maximum (the original's renormalisation)."""
    distance = _distance_to(centres, tf.shape(images)[1])
    r = radii[:, None, None, None]
    weight = tf.clip_by_value((2.0 * r - distance) / r, 0.0, 1.0)
    scaled = images * (1.0 + (factors[:, None, None, None] - 1.0) * weight)
    peak = tf.reduce_max(scaled, axis=[1, 2, 3], keepdims=True)
    return scaled / tf.maximum(peak, 1.0)


def copy_move_disc(images, targets, sources, radii):
    """Replace a disc at `targets` with the disc at `sources` of the same image (copy-move),
    blended over a soft edge from 1x to 1.5x the radius. Offsets are rounded to whole pixels so
    the copy is exact."""
    offset = tf.round(targets - sources)
    shifted = warp(images, translation_matrices(offset[:, 0], offset[:, 1]), interpolation="NEAREST")
    distance = _distance_to(targets, tf.shape(images)[1])
    r = radii[:, None, None, None]
    weight = tf.clip_by_value((1.5 * r - distance) / (0.5 * r), 0.0, 1.0)
    return weight * shifted + (1.0 - weight) * images


def random_local_edit(images, seed, config: DeformationConfig, apply):
    """One of erase / local contrast / copy-move (equal chances) where `apply` is true."""
    batch = tf.shape(images)[0]
    size = tf.cast(tf.shape(images)[1], tf.float32)
    seeds = split_seed(seed, 8)
    kind = tf.random.stateless_uniform([batch], seeds[0], 0, 3, dtype=tf.int32)
    centres = _uniform(seeds[1], [batch, 2], 0.1, 0.9) * size
    soft_edge = config.soft_edge * size
    images = on_subset(
        images, apply & (kind == 0),
        lambda x, c, r: erase_disc(x, c, r, soft_edge),
        centres, _uniform(seeds[2], [batch], *config.erase_radius_range) * size,
    )
    images = on_subset(
        images, apply & (kind == 1), scale_disc,
        centres, _uniform(seeds[3], [batch], *config.contrast_radius_range) * size,
        _uniform(seeds[4], [batch], *config.contrast_factor_range),
    )
    return on_subset(
        images, apply & (kind == 2), copy_move_disc,
        _uniform(seeds[5], [batch, 2], 0.3, 0.7) * size,
        _uniform(seeds[6], [batch, 2], 0.3, 0.7) * size,
        _uniform(seeds[7], [batch], *config.copy_move_radius_range) * size,
    )


# ---------------------------------------------------------------------------------------------
# clutter


def make_text_bank(num: int, size: int, length_range=(5, 15), seed: int = 0) -> np.ndarray:
    """Render `num` random strings with Pillow's built-in font into [num, size, size] masks.

    Each mask holds one string at its top-left corner; `paste_masks` moves it to a random place.
    Made once per pipeline (NumPy, not a hot path).
    """
    import string

    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    letters = np.array(list(string.ascii_letters + string.digits))
    bank = np.zeros((num, size, size), np.float32)
    fonts = {}
    for i in range(num):
        font_size = int(rng.integers(max(8, size // 12), max(9, size // 6)))
        if font_size not in fonts:
            try:
                fonts[font_size] = ImageFont.load_default(size=font_size)
            except TypeError:  # Pillow without FreeType: fixed-size bitmap font
                fonts[font_size] = ImageFont.load_default()
        text = "".join(rng.choice(letters, int(rng.integers(*length_range))))
        canvas = Image.new("L", (size, size), 0)
        ImageDraw.Draw(canvas).text((0, 0), text, fill=255, font=fonts[font_size])
        bank[i] = np.asarray(canvas, np.float32) / 255.0
    return bank


def paste_masks(images, masks, values):
    """Blend constant `values` ([B]) into images through soft `masks` ([B, H, W, 1])."""
    return images * (1.0 - masks) + values[:, None, None, None] * masks


def rectangle_masks(batch, size, corners, extents, thickness):
    """Outlines of axis-aligned rectangles: top-left `corners` and `extents` (w, h) [B, 2],
    `thickness` [B] pixels. Returns [B, size, size, 1] in {0, 1}."""
    grid = tf.range(size, dtype=tf.float32)
    x, y = grid[None, None, :], grid[None, :, None]
    x0, y0 = corners[:, 0, None, None], corners[:, 1, None, None]
    x1, y1 = x0 + extents[:, 0, None, None], y0 + extents[:, 1, None, None]
    t = thickness[:, None, None]
    outer = (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
    inner = (x >= x0 + t) & (x < x1 - t) & (y >= y0 + t) & (y < y1 - t)
    return tf.cast(outer & ~inner, tf.float32)[..., None]


def random_clutter(images, seed, config: DeformationConfig, text_bank):
    """Text (p_text) or a rectangle outline (p_rectangle) at random places and intensities."""
    batch = tf.shape(images)[0]
    size = images.shape[1] or tf.shape(images)[1]
    size_f = tf.cast(size, tf.float32)
    seeds = split_seed(seed, 9)
    choice = tf.random.stateless_uniform([batch], seeds[0])
    use_text = choice < config.p_text
    use_rectangle = (choice >= config.p_text) & (choice < config.p_text + config.p_rectangle)

    def draw_text(x, glyph_index, position, value):
        glyphs = tf.gather(text_bank, glyph_index)[..., None]
        moved = warp(glyphs, translation_matrices(position[:, 0], position[:, 1]), interpolation="NEAREST")
        return paste_masks(x, moved, value)

    position = tf.round(
        tf.stack([_uniform(seeds[2], [batch], 0.0, 0.5), _uniform(seeds[3], [batch], 0.0, 0.85)], -1)
        * size_f
    )
    images = on_subset(
        images, use_text, draw_text,
        tf.random.stateless_uniform([batch], seeds[1], 0, tf.shape(text_bank)[0], tf.int32),
        position, _uniform(seeds[4], [batch], *config.text_intensity_range),
    )

    def draw_rectangle(x, corners, extents, thickness, value):
        return paste_masks(x, rectangle_masks(tf.shape(x)[0], size, corners, extents, thickness), value)

    return on_subset(
        images, use_rectangle, draw_rectangle,
        tf.floor(_uniform(seeds[5], [batch, 2], 0.0, 0.5) * size_f),
        tf.floor(_uniform(seeds[6], [batch, 2], 1.0 / 3.0, 0.5) * size_f),
        tf.floor(_uniform(seeds[7], [batch], 1.0, config.max_rectangle_thickness + 1.0)),
        _uniform(seeds[8], [batch], 0.0, 1.0),
    )


# ---------------------------------------------------------------------------------------------
# the whole recipe


class Deformer:
    """The paper's recipe for one batch: `deformer(images, seed)` and `deformer.anchor(images, seed)`.

    Args:
        config: ranges and probabilities (DeformationConfig).
        text_seed: seed of the glyph bank used for text clutter.

    Example:
        >>> deformer = Deformer(DeformationConfig())
        >>> same = deformer(patches, seed=tf.constant([1, 2]))   # [B, 256, 256, 1] -> [B, 128, 128, 1]
    """

    def __init__(self, config: DeformationConfig | None = None, text_seed: int = 0):
        self.config = config or DeformationConfig()
        bank = make_text_bank(
            self.config.text_bank_size, self.config.crop_size, self.config.text_length_range, text_seed
        )
        self.text_bank = tf.constant(bank)

    def __call__(self, images, seed, clutter: bool = True):
        """Deform patches [B, patch, patch, 1] into crops [B, crop, crop, 1] in [0, 1]."""
        config = self.config
        images = tf.convert_to_tensor(images, tf.float32)
        batch = tf.shape(images)[0]
        seeds = split_seed(seed, 9)
        geometric = _bernoulli(seeds[0], batch, config.p_geometric)
        matrices = random_geometry(seeds[1], batch, config, apply=geometric)
        out = warp(images, matrices, config.crop_size)

        use_jpeg = geometric & _bernoulli(seeds[2], batch, config.p_jpeg)
        quality = tf.random.stateless_uniform(
            [batch], seeds[3], config.jpeg_quality_range[0], config.jpeg_quality_range[1] + 1, tf.int32
        )
        out = jpeg(out, quality, use_jpeg)

        use_gamma = geometric & _bernoulli(seeds[4], batch, config.p_gamma)
        # Log-uniform, so that brightening and darkening are equally likely.
        low, high = (math.log(g) for g in config.gamma_range)
        out = on_subset(out, use_gamma, gamma, tf.exp(_uniform(seeds[5], [batch], low, high)))

        use_edit = geometric & _bernoulli(seeds[6], batch, config.p_local_edit)
        out = random_local_edit(out, seeds[7], config, use_edit)
        if clutter:
            out = random_clutter(out, seeds[8], config, self.text_bank)
        return tf.clip_by_value(out, 0.0, 1.0)

    def anchor(self, images, seed, clutter: bool = True):
        """The paper's anchors: centre crop (and clutter) only."""
        config = self.config
        images = tf.convert_to_tensor(images, tf.float32)
        start = (config.patch_size - config.crop_size) // 2
        out = images[:, start:start + config.crop_size, start:start + config.crop_size, :]
        if clutter:
            out = random_clutter(out, split_seed(seed, 1)[0], config, self.text_bank)
        return out


# ---------------------------------------------------------------------------------------------
# re-use edits of the copy-detection descriptor (issue 14), on top of the paper's recipe


def _per_image_choice(images, seed, apply, levels, make):
    """For each image where `apply` is true, `make(images, level)` at one of `levels` (drawn
    uniformly per image); the others pass through. Each level is computed on the images that
    drew it only, so the work is one pass over the batch whatever the number of levels."""
    batch = tf.shape(images)[0]
    choice = tf.random.stateless_uniform([batch], seed, 0, len(levels), tf.int32)
    for index, level in enumerate(levels):
        images = on_subset(images, apply & (choice == index), lambda x, level=float(level): make(x, level))
    return images


def resample(images, factor: float):
    """Down-sample by `factor` (< 1, anti-aliased) and up-sample back to the same size (bilinear)."""
    size = images.shape[1]
    small = max(4, int(round(size * factor)))
    down = tf.image.resize(images, [small, small], method="area" if factor < 1 else "bilinear", antialias=True)
    return tf.image.resize(down, [size, size], method="bilinear")


def gaussian_blur(images, sigma: float):
    """Separable Gaussian blur of [B, H, W, 1] images (reflect-padded)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel = tf.constant(kernel / kernel.sum(), tf.float32)
    # SYMMETRIC, not REFLECT: REFLECT rejects an empty batch (an image subset drawn for nothing)
    padded = tf.pad(images, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="SYMMETRIC")
    out = tf.nn.conv2d(padded, tf.reshape(kernel, [-1, 1, 1, 1]), 1, "VALID")
    return tf.nn.conv2d(out, tf.reshape(kernel, [1, -1, 1, 1]), 1, "VALID")


def scale_bar_masks(batch, size, seed):
    """Filled horizontal bars near a random corner, 10-40 % of the width long, 2-5 px thick
    ([B, size, size, 1] in {0, 1}), as the scale bars of micrographs."""
    seeds = split_seed(seed, 4)
    length = tf.floor(_uniform(seeds[0], [batch], 0.1, 0.4) * size)
    thickness = tf.floor(_uniform(seeds[1], [batch], 2.0, 6.0))
    right = _bernoulli(seeds[2], batch, 0.5)
    bottom = _bernoulli(seeds[3], batch, 0.7)
    margin = 0.06 * size
    x0 = tf.where(right, size - margin - length, margin)
    y0 = tf.where(bottom, size - margin - thickness, margin)
    grid = tf.range(size, dtype=tf.float32)
    x, y = grid[None, None, :], grid[None, :, None]
    inside = ((x >= x0[:, None, None]) & (x < (x0 + length)[:, None, None])
              & (y >= y0[:, None, None]) & (y < (y0 + thickness)[:, None, None]))
    return tf.cast(inside, tf.float32)[..., None]


def random_orientation(images, seed):
    """Each square image [B, S, S, C] in one of its 8 orientations (quarter turns of it and of its
    mirror image), drawn uniformly per image; exact (nearest-pixel warp about the centre)."""
    batch = tf.shape(images)[0]
    size = images.shape[1]
    seeds = split_seed(seed, 2)
    quarters = tf.random.stateless_uniform([batch], seeds[0], 0, 4, tf.int32)
    mirrored = _bernoulli(seeds[1], batch, 0.5)
    matrix = similarity_matrices(tf.cast(quarters, tf.float32) * (math.pi / 2), 1.0, 0.0, 0.0, size)
    matrix = matrix @ reflection_matrices(mirrored, tf.zeros_like(mirrored), size)
    return warp(images, matrix, interpolation="NEAREST")


class CopyAugmenter:
    """Two views of re-used content: `orient` turns or mirrors each patch once (both views share
    it), then per view the paper's recipe (`Deformer`, with the descriptor's geometry: crops to
    ~30 % of the area, JPEG 15-95, gamma, erasing, local contrast, copy-move, text and rectangles),
    resolution loss, blur or sharpening, a global intensity change and scale bars
    (`CopyAugmentConfig`). Batched and seeded like `Deformer`.

    Example:
        >>> augmenter = CopyAugmenter(DeformationConfig(), CopyAugmentConfig())
        >>> views = augmenter(patches, seed=tf.constant([1, 2]))  # [B, 256, 256, 1] -> [B, 128, 128, 1]
    """

    #: the discrete levels per-image choices are drawn from (few, so each is one batched op)
    DOWNSCALE_LEVELS = 6
    BLUR_LEVELS = 3

    def __init__(self, deformation: DeformationConfig, augmentation, text_seed: int = 0):
        self.deformer = Deformer(deformation, text_seed=text_seed)
        self.config = augmentation

    def orient(self, patches, seed):
        """With `shared_orientation`: each patch in a random one of its 8 orientations, before its
        two views are made (so both views share it): the orientations vary the content, and the
        descriptor's orbit pooling, not the views, supplies the invariance to them."""
        return random_orientation(patches, seed) if self.config.shared_orientation else patches

    def __call__(self, images, seed):
        config = self.config
        seeds = split_seed(seed, 12)
        out = self.deformer(images, seeds[0])
        batch = tf.shape(out)[0]
        size = out.shape[1]
        out = _per_image_choice(out, seeds[2], _bernoulli(seeds[1], batch, config.p_downscale),
                                np.linspace(*config.downscale_range, self.DOWNSCALE_LEVELS), resample)
        sigmas = np.linspace(*config.blur_sigma_range, self.BLUR_LEVELS)
        kind = tf.random.stateless_uniform([batch], seeds[3])
        blur = kind < config.p_blur
        sharpen = (kind >= config.p_blur) & (kind < config.p_blur + config.p_sharpen)
        out = _per_image_choice(out, seeds[4], blur, sigmas, gaussian_blur)
        amount = _uniform(seeds[5], [batch], *config.sharpen_amount_range)
        out = on_subset(out, sharpen, lambda x, a: x + a[:, None, None, None] * (x - gaussian_blur(x, 1.0)), amount)
        use_intensity = _bernoulli(seeds[6], batch, config.p_intensity)
        scale = _uniform(seeds[7], [batch], *config.intensity_scale_range)
        shift = _uniform(seeds[8], [batch], *config.intensity_shift_range)
        out = on_subset(out, use_intensity,
                        lambda x, a, b: x * a[:, None, None, None] + b[:, None, None, None], scale, shift)
        use_bar = _bernoulli(seeds[9], batch, config.p_scale_bar)
        # masks for the whole batch (cheap: a comparison per pixel), so that an empty subset works
        out = on_subset(out, use_bar, lambda x, m, v: paste_masks(x, m, v), scale_bar_masks(batch, size, seeds[11]),
                        tf.where(_bernoulli(seeds[10], batch, 0.7), 1.0, 0.0))
        return tf.clip_by_value(out, 0.0, 1.0)
