"""The classifier two-sample test: about 0.5 for one distribution, about 1 for clearly different ones."""

import dataclasses

import numpy as np
import pytest

from keras_forensics.data.blots import render_blots
from keras_forensics.errors import ForensicsError
from keras_forensics.evaluation.two_sample import CLASSIFIER, TwoSampleOptions, fold_assignment, two_sample_auc

#: A few seconds per fold: 32 px crops, a two-stage classifier, 60 steps.
TINY = TwoSampleOptions(steps=60, batch_size=16, crop_size=32,
                        classifier=dataclasses.replace(CLASSIFIER, filters=(4, 8), spectrum_filters=(4,)))


def test_folds_keep_groups_whole_and_balanced():
    groups = np.repeat(np.arange(7), [30, 10, 10, 10, 5, 5, 20])
    folds, by = fold_assignment(len(groups), 3, groups, seed=0)
    assert by == "group"
    for group in range(7):
        assert len(set(folds[groups == group])) == 1
    assert sorted(np.bincount(folds)) == [30, 30, 30]
    folds, by = fold_assignment(10, 3, groups=np.zeros(10), seed=0)  # one group: dealt at random
    assert by == "random" and sorted(np.bincount(folds)) == [3, 3, 4]


@pytest.fixture(scope="module")
def blots():
    return render_blots(48, 32, seed=0), render_blots(48, 32, seed=1)


def test_two_samples_of_one_distribution_give_about_one_half(blots):
    result = two_sample_auc(*blots, options=TINY)
    assert result["two_sample_auc"] == pytest.approx(0.5, abs=0.2)
    assert len(result["two_sample_auc_folds"]) == 3 and result["two_sample_folds_by"] == "random/random"


def test_clearly_different_samples_give_about_one(blots):
    from keras_forensics.data.blots import quantize

    first, second = blots
    grainy = np.clip(second + np.random.default_rng(0).normal(0, 0.1, second.shape), 0, 1)
    # Six held-out images, and training images of their kind (stored as uint8) to learn them from.
    extra = quantize(render_blots(48, 32, seed=2), 8)
    result = two_sample_auc(first[:6], grainy, first_groups=np.arange(6) % 3, options=TINY, first_extra=extra)
    assert result["two_sample_auc"] > 0.9 and result["two_sample_folds_by"] == "group/random"
    assert result["two_sample_images"] == [6, 48] and result["two_sample_extra_images"] == 48


def test_too_few_images_or_mismatched_shapes_are_one_clear_error(blots):
    first, second = blots
    with pytest.raises(ForensicsError, match="at least 3 images"):
        two_sample_auc(first[:2], second, options=TINY)
    with pytest.raises(ForensicsError, match="differ in image shape"):
        two_sample_auc(first, second[:, :16, :16], options=TINY)
    with pytest.raises(ForensicsError, match="folds"):
        TwoSampleOptions(folds=1)
