"""Similarity maps (Grad-CAM): against a copy with one half erased, the map covers the kept half.

The meaning of a map needs a trained network (an untrained one's maps are noise, measured); that
test runs with the shipped run's model (or its best checkpoint so far) and skips without it. The mechanics (the map comes back in
the panel's own pixels, the saliency fallback) are tested on a tiny untrained model.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

SIZE = 64


def _textures(rng, count):
    images = gaussian_filter(rng.random((count, SIZE, SIZE)), (0, 1.5, 1.5))
    images -= images.min(axis=(1, 2), keepdims=True)
    return (images / images.max(axis=(1, 2), keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_model():
    """An untrained tiny Siamese model at input 64: for the mechanics, not the meaning."""
    import keras

    from keras_forensics.config import SiameseConfig
    from keras_forensics.models import siamese

    keras.utils.set_random_seed(0)
    embedding = siamese.build_embedding(SiameseConfig(input_size=SIZE, filters=(4, 8), dense_units=16,
                                                      embedding_dim=8))
    return siamese.build_triplet_model(embedding, siamese.WeightedL1Distance(name="distance"))


def _kept_over_erased(cam, kept, erased):
    return cam[kept].mean() / max(cam[erased].mean(), 1e-6)


def _trained_siamese():
    """$KERAS_FORENSICS_TEST_SIAMESE, or the shipped training run (its model.keras, or its best
    checkpoint while it trains); None when there is none (fresh clone, CI)."""
    import os

    from conftest import ROOT

    if os.environ.get("KERAS_FORENSICS_TEST_SIAMESE"):
        return os.environ["KERAS_FORENSICS_TEST_SIAMESE"]
    run = ROOT / "runs" / "siamese" / "shipped"
    if (run / "model.keras").is_file() or (run / "checkpoints" / "best.keras").is_file():
        return run
    return None


def test_map_of_a_half_erased_copy_concentrates_on_the_kept_half():
    """With a trained Siamese network, on real micrographs it never trained on.

    The copy's map is the one that must concentrate: its kept half is what makes it the same as
    the image. (The image's own map is not asserted: with the checkpoints measured, Grad-CAM of
    the similarity lights either half of the intact image, depending on the image.)
    """
    from conftest import DATA
    from keras_forensics.data.io import read_image
    from keras_forensics.screening.explain import similarity_map
    from keras_forensics.screening.model import load_scorer

    model = _trained_siamese()
    names = ("cpex__AS_09047_050428030001_O04f00d2.png", "cpex__AS_09047_050428030001_O13f00d2.png",
             "cpex__Clones1__c0.png", "cpex__AS_09047_050428030001_O20f01d2.png")  # test split of the run
    if model is None or not all((DATA / "micrographs" / n).is_file() for n in names):
        pytest.skip("needs a trained Siamese model (runs/siamese/shipped) and ../shared/data")
    scorer = load_scorer(model)
    for number, name in enumerate(names):
        image = read_image(DATA / "micrographs" / name)[:256, :320]
        copy = image.copy()
        kept, erased = (np.s_[:, :160], np.s_[:, 160:]) if number % 2 == 0 else (np.s_[:, 160:], np.s_[:, :160])
        copy[erased] = 0.0
        map_image, map_copy = similarity_map(scorer, image, copy)
        assert map_image.shape == map_copy.shape == image.shape
        assert _kept_over_erased(map_copy, kept, erased) > 3.0, name


def test_similarity_map_comes_back_in_panel_pixels(tiny_model):
    from keras_forensics.screening.explain import _to_panel, last_conv_layer, similarity_map

    assert last_conv_layer(tiny_model.get_layer("embedding")) == "stage1_conv2"
    image = _textures(np.random.default_rng(1), 1)[0][:40]  # 40 x 64: padded top and bottom
    map_a, map_b = similarity_map(tiny_model, image, image[:, ::-1])
    assert map_a.shape == map_b.shape == (40, SIZE)
    assert map_a.min() >= 0 and map_a.max() <= 1
    # The padding is cut away: a map lit only on the padding maps back to nothing.
    # A 40 x 64 panel is padded by 12 rows above and below: rows 24-104 of a 128 x 128 map.
    cam = np.zeros((128, 128), np.float32)
    cam[:24] = cam[104:] = 1.0
    assert _to_panel(cam, (40, SIZE)).max() == 0.0
    cam = 1.0 - cam
    assert _to_panel(cam, (40, SIZE)).min() == 1.0
    cam[:, :64] = 0.0  # the left half of the panel is the left half of the map
    mapped = _to_panel(cam, (40, SIZE))
    assert mapped[:, :30].max() == 0.0 and mapped[:, 34:].min() == 1.0


def test_saliency_fallback_and_report_overlay(tiny_model):
    from keras_forensics.screening.explain import explain_pair, heat_overlay
    from keras_forensics.screening.model import SiameseScorer

    embedding, distance = tiny_model.get_layer("embedding"), tiny_model.get_layer("distance")
    keras_scorer = SiameseScorer.from_keras(embedding, distance)
    # A scorer with only a weighted-embedding function, as a SavedModel gives.
    bare = SiameseScorer(keras_scorer.weighted_embed, keras_scorer.input_size, "function only")
    image = _textures(np.random.default_rng(5), 1)[0]
    copy = image.copy()
    copy[:, SIZE // 2:] = 0.0
    *_, method = explain_pair(keras_scorer, image, copy)
    assert method == "Grad-CAM"
    map_a, map_b, method = explain_pair(bare, image, copy)
    assert method == "input-gradient saliency"
    # The input gradient times the input is zero where the copy is erased.
    assert map_b[:, SIZE // 2 + 12:].max() < 0.05 * map_b[:, :SIZE // 2].max()
    picture = heat_overlay(image, map_a)
    assert picture.shape == (SIZE, SIZE, 3) and picture.dtype == np.uint8
