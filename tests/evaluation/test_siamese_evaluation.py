"""`evaluate siamese`: synthetic test and real-case folder metrics, on a tiny trained run."""

import json

import numpy as np
import pytest
from PIL import Image

from keras_forensics import config as config_lib
from keras_forensics.evaluation import siamese as evaluation
from keras_forensics.training import siamese as trainer


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("run")
    config = config_lib.replace(
        config_lib.SiameseTrainConfig(), input_size=32, filters=(4, 8), dense_units=16, embedding_dim=8,
        patch_size=64, crop_size=32, text_bank_size=8, batch_size=4, steps=4, validate_every=2,
        validation_triplets=8, test_triplets=8, projector_size=8)
    trainer.train(config, model_dir)
    return model_dir


def _turned_cases(cases, rng):
    """A real-case folder of 3 originals, each with a copy turned by 90 degrees (b.png)."""
    for g in range(3):
        (cases / f"original{g}").mkdir(parents=True)
        base = rng.integers(0, 255, (80, 90), dtype=np.uint8)
        Image.fromarray(base).save(cases / f"original{g}" / "a.png")
        Image.fromarray(np.rot90(base)).save(cases / f"original{g}" / "b.png")
    return cases


def test_real_case_metrics_on_known_distances():
    labels = np.array([0, 0, 1, 1])
    distances = np.array([[0, 0.5, 3, 3], [0.5, 0, 3, 2], [3, 3, 0, 0.8], [3, 2, 0.8, 0]], float)
    result, same, _ = evaluation.real_case_metrics(distances, labels)
    assert result["pairs"] == 6 and result["positive_pairs"] == 2
    assert result["roc_auc"] == 1.0 and result["average_precision"] == 1.0
    assert result["accuracy_at_threshold_1"] == 1.0 and result["nearest_neighbour_accuracy"] == 1.0


def test_distance_matrix_plain_and_oriented(rng):
    from keras_forensics.screening.pairs import distance_matrix

    vectors = rng.normal(size=(7, 3, 5)).astype("float32")
    plain = np.abs(vectors[:, None, 0] - vectors[None, :, 0]).sum(-1)
    np.testing.assert_allclose(distance_matrix(vectors[:, 0]), plain, rtol=1e-5)
    # Oriented: the smallest over either side's orientations against the other as it is.
    directed = np.abs(vectors[:, None, :, :] - vectors[None, :, None, 0]).sum(-1).min(-1)
    np.testing.assert_allclose(distance_matrix(vectors), np.minimum(directed, directed.T), rtol=1e-5)


@pytest.mark.slow
def test_evaluate_writes_json_and_roc(tiny_run, tmp_path, rng):
    cases = _turned_cases(tmp_path / "cases", rng)
    (cases / "original0" / "junk.png").write_text("not an image")
    out = tmp_path / "eval"
    evaluation.evaluate(str(tiny_run), real_cases=str(cases), out=str(out), count=8)
    result = json.loads((out / "evaluation.json").read_text())
    assert result["real_cases"]["images"] == 6 and result["real_cases"]["pairs"] == 15
    assert 0 <= result["real_cases"]["roc_auc"] <= 1
    # b is a turned a: with the distance screen uses (8 orientations) each finds its partner.
    assert result["real_cases_turns"]["pairs"] == 15
    assert result["real_cases_turns"]["nearest_neighbour_accuracy"] == 1.0
    assert result["synthetic_test"]["pairs"] == 16 and "test split" in result["synthetic_test"]["source"]
    assert Image.open(out / "roc.png").size[0] > 300



@pytest.mark.slow
def test_savedmodel_gives_the_run_s_real_case_figures(tmp_path, rng):
    """The exported SavedModel (as shipped in saved_models/siamese) gives the same real-case figures
    as its run; without --data it has no split for the synthetic test, and says so."""
    import serving_support

    cases = _turned_cases(tmp_path / "cases", rng)
    run = serving_support.run_dir("siamese")
    serving_support.exported("siamese")
    evaluation.evaluate(str(run), real_cases=str(cases), out=str(tmp_path / "run"), synthetic=False)
    evaluation.evaluate(str(serving_support.workspace() / "saved_models" / "siamese"), real_cases=str(cases),
                        out=str(tmp_path / "sm"))
    result = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    served = json.loads((tmp_path / "sm" / "evaluation.json").read_text())
    assert "synthetic_test" not in served and served["model"].startswith("SavedModel")
    for key in ("real_cases", "real_cases_turns"):
        for metric in ("roc_auc", "average_precision", "nearest_neighbour_accuracy"):
            assert served[key][metric] == pytest.approx(result[key][metric], abs=1e-6)
