"""The copy-detection descriptor (issue 14): loss, model, augmentations, sampling, training, export.

Its layers (GeMPooling, CosineDistance, DihedralOrbit, OrbitMean) are tested in tests/layers."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT
from keras_forensics.config import CopyAugmentConfig, DeformationConfig, DescriptorConfig
from keras_forensics.data import deformations, pipeline
from keras_forensics.data.patches import PatchSet
from keras_forensics.models import descriptor

TINY = DescriptorConfig(input_size=32, embedding_dim=8, minimalistic=True, width=0.25)
# the served signatures take 128 px (the shared preprocessing), so the trained tiny run does too
TINY_FLAGS = ["--input_size", "128", "--embedding_dim", "8", "--minimalistic", "true", "--width", "0.25",
              "--patch_size", "160", "--crop_size", "128", "--text_bank_size", "8", "--batch_size", "8",
              "--validation_pairs", "16", "--test_pairs", "16", "--steps", "2", "--validate_every", "1",
              "--warmup_steps", "0"]


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# ---------------------------------------------------------------------------------------------
# the objective


def test_info_nce_is_near_zero_for_separated_pairs_and_log_n_for_uninformative_ones():
    basis = np.eye(8, dtype=np.float32)[:4]  # four orthogonal directions
    perfect = np.concatenate([basis, basis])  # rows i and i + 4 identical
    loss, accuracy = descriptor.info_nce(perfect, temperature=0.05)
    assert float(loss) < 1e-6 and float(accuracy) == 1.0
    same = np.ones((8, 8), np.float32) / np.sqrt(8)  # every view equal: the positive is one of 7 ties
    loss, _ = descriptor.info_nce(same, temperature=0.05)
    np.testing.assert_allclose(float(loss), np.log(7), rtol=1e-5)


def test_koleo_rewards_spread_and_ignores_the_positive():
    rng = np.random.default_rng(0)
    spread = _unit(rng.normal(size=(4, 16))).astype(np.float32)
    # each view's positive is identical to it: KoLeo must skip that pair, else log(0)
    views = np.concatenate([spread, spread])
    clumped = np.concatenate([spread * 0 + spread[:1], spread * 0 + spread[:1]]) + 1e-3 * rng.normal(size=(8, 16))
    clumped = _unit(clumped).astype(np.float32)
    assert float(descriptor.koleo(views)) < float(descriptor.koleo(clumped))
    # two antipodal pairs: nearest non-positive distance is sqrt(2) for orthogonal unit vectors
    orthogonal = np.concatenate([np.eye(4)[:2], np.eye(4)[:2]]).astype(np.float32)
    np.testing.assert_allclose(float(descriptor.koleo(orthogonal)), -np.log(np.sqrt(2)), atol=1e-4)


# ---------------------------------------------------------------------------------------------
# the model


def test_the_descriptor_embedding_is_exactly_invariant_to_turns_and_mirrors():
    backbone = descriptor.build_backbone_embedding(TINY)
    embedding = descriptor.build_embedding(TINY, backbone)
    panels = np.random.default_rng(2).random((2, 32, 32, 1)).astype(np.float32)
    turned = np.rot90(panels[:, :, ::-1], 3, axes=(1, 2)).copy()
    np.testing.assert_allclose(embedding(panels), embedding(turned), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(embedding(panels), axis=1), 1.0, atol=1e-5)


def test_copy_augmenter_is_seeded_and_in_range(textured_image):
    deformation = DeformationConfig(patch_size=64, crop_size=32, text_bank_size=8)
    augmenter = deformations.CopyAugmenter(deformation, CopyAugmentConfig(p_downscale=1.0, p_scale_bar=1.0))
    patches = tf.constant(np.stack([textured_image[:64, :64], textured_image[64:128, :64]])[..., None])
    first = augmenter(patches, tf.constant([3, 4])).numpy()
    again = augmenter(patches, tf.constant([3, 4])).numpy()
    other = augmenter(patches, tf.constant([5, 6])).numpy()
    assert first.shape == (2, 32, 32, 1) and first.min() >= 0.0 and first.max() <= 1.0
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 0.05
    # every optional edit drawn for no image at all: each must accept an empty subset
    nothing = deformations.CopyAugmenter(DeformationConfig.identity(patch_size=64, crop_size=32, text_bank_size=8),
                                         CopyAugmentConfig(p_downscale=0, p_blur=0, p_sharpen=0, p_intensity=0,
                                                           p_scale_bar=0))
    np.testing.assert_allclose(nothing(patches, tf.constant([1, 1])).numpy(), patches.numpy()[:, 16:48, 16:48],
                               atol=1e-6)


def test_random_orientation_is_an_exact_turn_or_mirror_of_each_image():
    images = np.random.default_rng(0).random((32, 16, 16, 1)).astype(np.float32)
    oriented = deformations.random_orientation(tf.constant(images), tf.constant([4, 2])).numpy()
    orbit = lambda x: [np.rot90(m, k) for m in (x, x[:, ::-1]) for k in range(4)]  # noqa: E731
    kinds = set()
    for image, result in zip(images, oriented):
        matches = [k for k, candidate in enumerate(orbit(image)) if np.array_equal(candidate, result)]
        assert matches, "not one of the 8 orientations"
        kinds.add(matches[0])
    assert len(kinds) >= 6  # all orientations are drawn


def test_resample_removes_fine_detail_and_blur_keeps_the_mean():
    checker = (np.indices((32, 32)).sum(0) % 2).astype(np.float32)[None, ..., None]
    down = deformations.resample(tf.constant(checker), 0.25).numpy()
    assert checker.std() > 0.49 and down.std() < 0.05  # a 1-px checkerboard does not survive 1/4
    blurred = deformations.gaussian_blur(tf.constant(checker), 1.0).numpy()
    np.testing.assert_allclose(blurred.mean(), checker.mean(), atol=1e-3)
    assert deformations.gaussian_blur(tf.zeros((0, 32, 32, 1)), 1.0).shape[0] == 0  # empty subsets work


def test_scale_bars_are_thin_bars_near_an_edge():
    masks = deformations.scale_bar_masks(16, 128, tf.constant([1, 2])).numpy()[..., 0]
    for mask in masks:
        rows, cols = np.nonzero(mask)
        assert 2 <= rows.max() - rows.min() + 1 <= 5
        assert 12 <= cols.max() - cols.min() + 1 <= 52
        assert rows.min() < 20 or rows.max() > 108


def test_siblings_are_other_patches_of_their_partners_group():
    groups = np.repeat(np.arange(10), 4)  # 10 groups of 4 patches
    patchset = PatchSet(np.zeros((40, 8, 8), np.uint8), groups, [f"g{i}" for i in range(10)])
    sampler = pipeline.GroupSampler(patchset)
    for seed in range(5):
        index = pipeline.sample_with_siblings(sampler, 16, 0.25, tf.constant([seed, 1], tf.int64)).numpy()
        assert len(set(index[:12].tolist())) == 12  # the first ones without replacement
        group = sampler.group_of_patch.numpy()[index]
        np.testing.assert_array_equal(group[-4:], group[:4])  # the last 4 are siblings of the first 4
        assert np.all(index[-4:] != index[:4])


def test_views_of_one_patch_drawn_twice_are_neither_positive_nor_negative():
    """A sibling can repeat a patch already in the batch: with its id, the loss leaves that pair out."""
    basis = np.eye(8, dtype=np.float32)[:3]
    # rows 0 and 2 show the same patch (id 7): without ids, row 0's nearest rival is row 2
    views = np.concatenate([basis[[0, 1, 0]], basis[[0, 1, 0]]])
    ids = np.array([7, 8, 7, 7, 8, 7])
    loss_blind, accuracy_blind = descriptor.info_nce(views, 0.05)
    loss, accuracy = descriptor.info_nce(views, 0.05, ids)
    assert float(accuracy) == 1.0 and float(loss) < 1e-6
    assert float(loss_blind) > 0.5 and float(accuracy_blind) < 1.0
    assert np.isfinite(float(descriptor.koleo(views, ids=ids)))


# ---------------------------------------------------------------------------------------------
# the whole path: train, load, export, screen


@pytest.fixture(scope="module")
def descriptor_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("descriptor") / "run"
    command = [sys.executable, "-m", "keras_forensics.train", "descriptor", "--model_dir", str(run), *TINY_FLAGS]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "synthetic test: all-pairs AP" in done.stdout
    return run


@pytest.mark.slow
def test_train_descriptor_writes_a_calibrated_pair_model(descriptor_run):
    metrics = json.loads((descriptor_run / "metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["wall_time_s_total"] > 0
    assert -0.9 <= metrics["threshold_cosine"] <= 0.95
    for split in ("validation", "synthetic_test"):
        assert 0.0 <= metrics[split]["average_precision_all_pairs"] <= 1.0
    from keras_forensics.screening.model import load_scorer

    scorer = load_scorer(descriptor_run)
    assert scorer.metric == "squared_l2" and scorer.invariant and scorer.sharpness > 0
    # weighted embeddings under squared L2 give the pair model's distance
    images = np.random.default_rng(0).random((2, 128, 128, 1)).astype(np.float32)
    vectors = scorer.embed(images)
    pair = scorer.distance([scorer.embedding(images[:1]), scorer.embedding(images[1:])])
    np.testing.assert_allclose(scorer.pair_distance(vectors[0], vectors[1]), float(pair[0]), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_exported_descriptor_scores_like_the_run(descriptor_run, tmp_path):
    from keras_forensics.screening.model import load_scorer
    from keras_forensics.serving import export

    result = export.export("siamese", descriptor_run, export_base=tmp_path, verbose=False)
    described = json.loads((result.path / "assets.extra" / "siamese.json").read_text())
    assert described["metric"] == "squared_l2" and described["orientation_invariant"] is True
    split = json.loads((result.path / "assets.extra" / "split.json").read_text())
    assert split == json.loads((descriptor_run / "split.json").read_text())  # its test images travel with it
    served, keras_scorer = load_scorer(tmp_path / "siamese"), load_scorer(descriptor_run)
    assert (served.metric, served.invariant) == ("squared_l2", True)
    assert served.sharpness == pytest.approx(keras_scorer.sharpness)
    images = np.random.default_rng(3).random((3, 128, 128, 1)).astype(np.float32)
    np.testing.assert_allclose(served.embed(images), keras_scorer.embed(images), atol=1e-5)
