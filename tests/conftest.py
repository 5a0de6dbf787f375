"""Shared fixtures. Data from ../shared/data is optional: tests that need it skip cleanly."""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

requires_data = pytest.mark.skipif(not (DATA / "micrographs").is_dir(), reason="../shared/data not available")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def textured_image(rng):
    """A 256x256 float32 image with structure everywhere (smoothed noise plus a gradient)."""
    from scipy.ndimage import gaussian_filter

    noise = gaussian_filter(rng.random((256, 256)), 3)
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    gradient = np.linspace(0, 1, 256)[None, :]
    return (0.7 * noise + 0.3 * gradient).astype(np.float32)


def run_layer_test(layer, inputs, expected_shape, tmp_path, atol: float = 1e-6):
    """THE layer test, used for every custom layer (keras-hub's run_layer_test): config round trip,
    symbolic and eager shapes, one fit step (when the layer has trainable weights), and equal
    outputs after save / load of a model holding it. Returns the eager output."""
    import keras

    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    arrays = inputs if isinstance(inputs, list) else [inputs]
    symbolic = [keras.Input(a.shape[1:], dtype=str(a.dtype)) for a in arrays]
    out = layer(symbolic if isinstance(inputs, list) else symbolic[0])
    assert tuple(out.shape[1:]) == tuple(expected_shape[1:])
    eager = layer(inputs)
    assert tuple(eager.shape) == tuple(expected_shape)
    model = keras.Model(symbolic, out)
    if model.trainable_weights:
        model.compile("sgd", "mse")
        model.fit(arrays, np.zeros(expected_shape, np.float32), epochs=1, verbose=0)
    path = tmp_path / "layer.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(arrays, verbose=0), model.predict(arrays, verbose=0), atol=atol)
    return eager

