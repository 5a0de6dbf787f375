"""Western-blot data: the procedural renderer and the real blots of ../shared/data."""

import numpy as np
import pytest

from conftest import DATA
from keras_forensics import datasets
from keras_forensics.data import blots

REAL_BLOTS = DATA / "western_blots" / "real"


def test_renderer_is_deterministic_under_a_seed():
    first = datasets.synthetic_blots(6, 32, seed=3)
    again = datasets.synthetic_blots(6, 32, seed=3)
    np.testing.assert_array_equal(first.patches, again.patches)
    assert not np.array_equal(first.patches, datasets.synthetic_blots(6, 32, seed=4).patches)
    # Image k depends only on (seed, k): a longer set starts with the same images.
    np.testing.assert_array_equal(datasets.synthetic_blots(9, 32, seed=3).patches[:6], first.patches)
    assert first.patches.dtype == np.uint8 and first.num_groups == 6
    deep = datasets.synthetic_blots(2, 32, seed=3, bit_depth=16).patches
    assert deep.dtype == np.uint16 and np.abs(deep / 257.0 - first.patches[:2]).max() <= 0.51
    # Dark bands on a light membrane.
    assert np.median(first.patches) > 150 and first.patches.min() < 100


@pytest.mark.skipif(not REAL_BLOTS.is_dir(), reason="../shared/data not available")
def test_real_blots_become_dark_on_light_tiles():
    patchset, bit_depth = blots.blot_folder(REAL_BLOTS, size=64, scale=0.25, stride=32)
    assert bit_depth == 8 and patchset.patches.shape[1:] == (64, 64)
    captures = [i for i, name in enumerate(patchset.names) if name.startswith("athenaz2-raw__")]
    assert captures, "expected the raw chemiluminescence captures"
    raw_tiles = patchset.patches[np.isin(patchset.groups, captures)]
    # Raw captures are bright bands on a dark membrane; after loading, every image is dark-on-light.
    assert np.median(raw_tiles) > 128 and np.median(patchset.patches) > 128
