"""The memorisation check: generated images no closer to the training set than held-out real ones."""

import numpy as np
import pytest

from keras_forensics.data.blots import quantize, render_blots
from keras_forensics.errors import ForensicsError
from keras_forensics.metrics.memorisation import memorisation, nearest_distances, reduce_images


@pytest.fixture(scope="module")
def sets():
    """Training, held-out and another held-out set of rendered blots: one distribution, other draws."""
    return render_blots(96, 32, seed=0), render_blots(32, 32, seed=1), render_blots(32, 32, seed=2)


def test_reduction_is_an_area_mean_and_integers_are_scaled(sets):
    train = sets[0]
    vectors = reduce_images(train[:3], size=8).numpy()
    np.testing.assert_allclose(vectors[0, 0], train[0, :4, :4].mean(), atol=1e-6)
    np.testing.assert_allclose(reduce_images(quantize(train[:3], 8), size=8).numpy(), vectors, atol=1 / 255)
    with pytest.raises(ForensicsError, match="smaller"):
        reduce_images(train[:3], size=64)


def test_copies_are_at_distance_zero_mirrored_copies_too(sets):
    train = sets[0]
    assert nearest_distances(train[:5], train).max() < 1e-3
    mirrored = train[:5, :, ::-1]
    assert nearest_distances(mirrored, train).max() < 1e-3
    assert nearest_distances(mirrored, train, mirrored=False).min() > 0.01


def test_held_out_real_images_score_about_one_and_copies_far_below(sets):
    train, held_out, other = sets
    assert memorisation(other, held_out, train)["memorisation_ratio"] == pytest.approx(1.0, abs=0.2)
    copies = memorisation(train[:32], held_out, train)
    assert copies["memorisation_ratio"] < 0.01 and copies["closer_than_held_out_fraction"] == 1.0
    rng = np.random.default_rng(0)
    near_copies = np.clip(train[:32] + rng.normal(0, 0.01, train[:32].shape), 0, 1)
    assert memorisation(near_copies, held_out, train)["memorisation_ratio"] < 0.5
    result = memorisation(other, held_out, train)
    assert result["closer_than_held_out_fraction"] < 0.25
    assert result["nearest_train_distance_held_out"] > 0.01
