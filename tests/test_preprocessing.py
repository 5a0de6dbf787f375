"""The one preprocessing function: same pixels from a file (CLI) and from bytes (serving graph)."""

import io as _io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_forensics import preprocessing
from keras_forensics.data import io


def encode(array, format, **options):
    buffer = _io.BytesIO()
    Image.fromarray(array).save(buffer, format=format, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("mode,shape", [("L", (37, 90)), ("RGB", (64, 48, 3)), ("RGBA", (50, 50, 4))])
def test_file_and_bytes_paths_agree(mode, shape, rng):
    array = rng.integers(0, 256, shape, dtype=np.uint8)
    data = encode(array, "PNG")
    from_file = preprocessing.to_model_input(io.decode_image_bytes(data)).numpy()
    from_bytes = preprocessing.bytes_to_model_input(tf.constant(data)).numpy()
    assert from_file.shape == from_bytes.shape == (128, 128, 1)
    np.testing.assert_allclose(from_file, from_bytes, atol=1e-5)


def test_16bit_png_bytes():
    array = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)
    data = encode(array, "PNG")
    np.testing.assert_allclose(preprocessing.bytes_to_model_input(tf.constant(data)).numpy(),
                               preprocessing.to_model_input(io.decode_image_bytes(data)).numpy(), atol=1e-4)


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_jpeg_decodes_as_the_cli_does(rng, mode):
    """The graph's JPEG decoder (TF-Serving) gives the same pixels as the CLI's (Pillow)."""
    from scipy.ndimage import gaussian_filter

    shape = (96, 80) if mode == "L" else (96, 80, 3)
    array = (gaussian_filter(rng.random(shape), 2) * 255).astype(np.uint8)
    data = encode(array, "JPEG", quality=60)
    gray = preprocessing.decode_to_gray(tf.constant(data)).numpy()[..., 0]
    np.testing.assert_allclose(gray, io.decode_image_bytes(data), atol=1e-5)


def test_padding_keeps_the_aspect_ratio():
    wide = np.ones((32, 128), np.float32)
    out = preprocessing.to_model_input(wide).numpy()[..., 0]
    assert out[64, 64] == pytest.approx(1.0)  # content stays at full scale along the long side
    assert out[5, 64] == pytest.approx(0.0)  # the padding above it is black
    assert out[48:80, :].mean() > 0.99


def test_batch_of_mixed_sizes():
    images = [np.zeros((10, 20)), np.ones((300, 200)), np.full((128, 128), 0.5)]
    out = preprocessing.batch(images)
    assert out.shape == (3, 128, 128, 1) and out.dtype == np.float32
    np.testing.assert_allclose(out[2], 0.5, atol=1e-6)
    assert preprocessing.batch([]).shape == (0, 128, 128, 1)
