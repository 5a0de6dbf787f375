"""The per-image baselines of `tools/benchmark.py pipeline` do the recipe they claim to."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

from reference_deformations import STRUCTURES, ReferenceDeformer, _disc_distance, _local_edit_loops  # noqa: E402

from keras_forensics.config import DeformationConfig  # noqa: E402


@pytest.mark.parametrize("structure", STRUCTURES)
def test_every_structure_deforms_patches_into_crops(structure):
    config = DeformationConfig()
    deformer = ReferenceDeformer(config, seed=1, structure=structure)
    patch = np.random.default_rng(0).random((config.patch_size, config.patch_size)).astype(np.float32)
    outputs = [deformer.deform(patch) for _ in range(6)]
    for out in outputs:
        assert out.shape == (config.crop_size, config.crop_size)
        assert 0.0 <= out.min() and out.max() <= 1.0
    crop = patch[64:192, 64:192]
    # Most draws change the crop (geometry, photometry or clutter).
    assert sum(not np.allclose(out, crop) for out in outputs) >= 4


@pytest.mark.parametrize("kind", [0, 1, 2])
def test_per_pixel_loops_match_the_vectorised_local_edits(kind):
    """The verbatim baseline's loops compute what the NumPy masks (and the TF pipeline) compute."""
    size, soft_edge = 64, 0.04 * 64
    image = np.random.default_rng(kind).random((size, size))
    centre, radius, factor = (20.3, 35.1), 9.0, 1.7
    target, source = np.array([30.2, 32.7]), np.array([20.9, 27.1])
    looped = _local_edit_loops(image, kind, centre, radius, factor, target, source, soft_edge)
    distance = _disc_distance(size, *centre)
    if kind == 0:
        expected = image * np.clip((distance - radius) / soft_edge, 0, 1)
    elif kind == 1:
        scaled = image * (1 + (factor - 1) * np.clip((2 * radius - distance) / radius, 0, 1))
        expected = scaled / max(scaled.max(), 1.0)
    else:
        dx, dy = np.round(target - source).astype(int)
        shifted = np.zeros_like(image)
        shifted[dy:, dx:] = image[:size - dy, :size - dx]
        weight = np.clip((1.5 * radius - _disc_distance(size, *target)) / (0.5 * radius), 0, 1)
        expected = weight * shifted + (1 - weight) * image
    np.testing.assert_allclose(looped, expected, atol=1e-6)
    assert not np.allclose(looped, image)
