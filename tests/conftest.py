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
