"""The served detector (`classify_bytes` of the exported SavedModel) and the `detect` command give
the same verdict on the same file, to 1e-6: both cut, drop flat patches and aggregate with
keras_forensics.ops.tiling."""

import csv

import numpy as np
import pytest
import tensorflow as tf

from keras_forensics.config import DetectorConfig
from keras_forensics.data.io import read_image, write_png
from keras_forensics.detection import report
from keras_forensics.detection.inference import Detector
from keras_forensics.models.detector import build_detector
from keras_forensics.ops import tiling
from keras_forensics.serving import export as exporting

pytest.importorskip("tensorflow_serving")


@pytest.fixture(scope="module")
def tiny_detector_run(tmp_path_factory):
    """A run dir holding an untrained 16x16 detector (random weights give varied scores)."""
    keras_seed = 3
    tf.keras.utils.set_random_seed(keras_seed)
    model = build_detector(DetectorConfig(input_size=16, filters=(4, 8), spectrum_filters=(4,), dropout=0.0))
    run = tmp_path_factory.mktemp("detector_run")
    model.save(run / "model.keras")
    return run


def test_served_classify_bytes_equals_the_detect_command(tiny_detector_run, tmp_path):
    rng = np.random.default_rng(11)
    image = np.full((60, 45), 0.8)  # blank (flat) background ...
    image[8:40, 5:30] = rng.random((32, 25))  # ... around one textured region
    image[50:, 30:] = 1.0  # and a saturated corner
    path = write_png(tmp_path / "figure.png", image)
    pixels = read_image(path)

    # The rule matters on this image: some patches are flat, some are not.
    patches = tiling.tile_patches(pixels[..., None], 16)
    informative = tiling.informative_patches(patches).numpy()
    assert 0 < informative.sum() < len(informative)

    exported = exporting.export("detector", tiny_detector_run, export_base=tmp_path / "saved", version=1,
                                verbose=False)
    served = tf.saved_model.load(str(exported.path)).signatures["classify_bytes"](
        image_bytes=tf.constant([path.read_bytes()]))

    verdict = Detector.load(tiny_detector_run).score(pixels)
    assert abs(float(served["p_fake"][0]) - verdict.p_fake) <= 1e-6
    assert abs(float(served["p_fake_max_patch"][0]) - verdict.p_fake_max_patch) <= 1e-6
    # Both differ from averaging every patch, flat ones included: the drift this test guards against.
    everything = Detector.load(tiny_detector_run).predict_patches(patches.numpy())
    assert abs(float(everything.mean()) - verdict.p_fake) > 1e-4

    result = report.detect([str(path)], str(tmp_path / "report"), model=str(exported.path.parent))
    with open(result["scores"]) as handle:
        (row,) = list(csv.DictReader(handle))
    assert abs(float(row["p_fake"]) - float(served["p_fake"][0])) <= 1e-6
    assert abs(float(row["p_fake_max_patch"]) - float(served["p_fake_max_patch"][0])) <= 1e-6
