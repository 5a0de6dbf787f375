"""THE preprocessing of a panel of any size into the Siamese network's input.

Every command that scores images (compare, similarity, screen, index), the Python API and the
exported `*_bytes` serving signatures call these functions, so a panel gets the same score
through the CLI, Python and TF-Serving.

A panel [H, W] is padded to a centred square with black (0) -- the same fill the training warps
leave around rotated or shrunk images -- and resized to `size` x `size` with an antialiased
bilinear filter. Padding rather than stretching keeps the aspect ratio, so a crop of a panel
keeps the scale of the original along its long side.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

INPUT_SIZE = 128


def to_model_input(image, size: int = INPUT_SIZE):
    """[H, W] or [H, W, 1] float in [0, 1] (any H, W >= 1) -> [size, size, 1] float32 tensor."""
    image = tf.convert_to_tensor(image, tf.float32)
    if image.shape.rank == 2:
        image = image[..., None]
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    side = tf.maximum(height, width)
    square = tf.image.pad_to_bounding_box(image, (side - height) // 2, (side - width) // 2, side, side)
    resized = tf.image.resize(square, (size, size), method="bilinear", antialias=True)
    return tf.clip_by_value(resized, 0.0, 1.0)


def decode_to_gray(data):
    """Encoded PNG / JPEG / BMP / GIF bytes (a scalar string tensor) -> [H, W, 1] float32 in [0, 1].

    Matches `keras_forensics.data.io.read_image` pixel for pixel: BT.601 luminance, transparency
    composited over white, 16-bit PNGs scaled by 65535, and JPEGs decoded with libjpeg's accurate
    integer IDCT, as Pillow does (TensorFlow's default fast IDCT differs by up to 2/255).
    """
    image = tf.cond(
        tf.io.is_jpeg(data),
        lambda: tf.image.convert_image_dtype(
            tf.io.decode_jpeg(data, channels=0, dct_method="INTEGER_ACCURATE"), tf.float32),
        lambda: tf.io.decode_image(data, channels=0, dtype=tf.float32, expand_animations=False),
    )
    channels = tf.shape(image)[-1]

    def gray_alpha():
        return image[..., :1] * image[..., 1:2] + (1.0 - image[..., 1:2])

    def rgb():
        return tf.image.rgb_to_grayscale(image[..., :3])

    def rgba():
        alpha = image[..., 3:4]
        return tf.image.rgb_to_grayscale(image[..., :3]) * alpha + (1.0 - alpha)

    return tf.switch_case(
        tf.clip_by_value(channels - 1, 0, 3),
        [lambda: image[..., :1], gray_alpha, rgb, rgba],
    )


def bytes_to_model_input(data, size: int = INPUT_SIZE):
    """Encoded image bytes -> [size, size, 1]: decoding plus `to_model_input`, in-graph."""
    return to_model_input(decode_to_gray(data), size)


_to_model_input_fn = tf.function(to_model_input, reduce_retracing=True)


def batch(images, size: int = INPUT_SIZE) -> np.ndarray:
    """A list of [H, W] float arrays (any sizes) -> [N, size, size, 1] float32 NumPy array."""
    if not len(images):
        return np.zeros((0, size, size, 1), np.float32)
    return np.stack([_to_model_input_fn(tf.constant(np.asarray(i, np.float32)), size).numpy() for i in images])
