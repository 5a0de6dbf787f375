"""The Cardenuto-Mandelli FFT-peaks baseline (keras_forensics/detection/fft_peaks.py) and its
column in `evaluate detector`, fitted on the run's train split."""

import json

import keras
import numpy as np
import pytest

from keras_forensics import config as config_lib
from keras_forensics.config import DetectorConfig, DetectorTrainConfig
from keras_forensics.detection import evaluation, sources
from keras_forensics.detection.fft_peaks import FFTPeaksBaseline, fit_baseline
from keras_forensics.errors import ForensicsError
from keras_forensics.metrics import ranking
from keras_forensics.models.detector import build_detector

pytest.importorskip("sklearn")

SIZE = 16


def textured(rng, count, size=SIZE):
    from scipy.ndimage import gaussian_filter

    noise = gaussian_filter(rng.random((count, size + 8, size + 8)), (0, 1.5, 1.5))[:, 4:-4, 4:-4]
    low, high = noise.min(axis=(1, 2), keepdims=True), noise.max(axis=(1, 2), keepdims=True)
    return ((noise - low) / (high - low)).astype(np.float32)[..., None]


def test_baseline_tells_unseen_checkerboard_fakes_from_real_patches():
    rng = np.random.default_rng(0)
    train, test = textured(rng, 200), textured(rng, 100)
    train_fakes = sources.transposed_upsample(train, seed=1).numpy()
    test_fakes = sources.transposed_upsample(test, seed=1).numpy()
    baseline = FFTPeaksBaseline(SIZE, max_iter=60).fit(np.concatenate([train, train_fakes]),
                                                       np.r_[np.zeros(200), np.ones(200)])
    scores = baseline.predict(np.concatenate([test, test_fakes]))
    assert scores.shape == (200,) and 0 <= scores.min() and scores.max() <= 1
    assert ranking.roc_auc(np.r_[np.zeros(100), np.ones(100)], scores) > 0.95
    # As a Detector, it scores through evaluation.predict like the CNN (same numbers).
    np.testing.assert_allclose(evaluation.predict(baseline.detector(), test), scores[:100], atol=1e-6)


def test_fit_baseline_adds_one_augmented_copy_and_needs_both_classes():
    from keras_forensics.data.augment import RobustnessAugmenter

    rng = np.random.default_rng(1)
    real = (textured(rng, 20)[..., 0] * 255).astype(np.uint8)
    fake = (rng.random((20, SIZE, SIZE)) * 255).astype(np.uint8)
    baseline = fit_baseline(real, fake, SIZE, RobustnessAugmenter(patch_size=SIZE), max_iter=10)
    assert baseline.classifier.n_features_in_ == 45
    assert int(baseline.classifier.n_iter_) >= 1
    with pytest.raises(ForensicsError, match="real .* and synthetic"):
        FFTPeaksBaseline(SIZE).fit(real[..., None] / 255.0, np.zeros(20))
    with pytest.raises(ForensicsError, match="fit the FFT-peaks baseline"):
        FFTPeaksBaseline(SIZE).predict(real[..., None] / 255.0)


def _run_with_split(tmp_path, rng):
    """A run dir (untrained 16 px CNN, config.json, split.json) over a real folder of smooth
    images and a masked set of noise squares, half of each source's groups train, half test."""
    from PIL import Image

    from test_detector import make_masked_set, smooth_patches

    real = tmp_path / "real"
    real.mkdir()
    for index in range(8):
        Image.fromarray((smooth_patches(rng, 1, 40)[0] * 255).astype(np.uint8)).save(real / f"{index}.png")
    masked = make_masked_set(tmp_path / "set", rng, hosts=tuple(f"h{k}_00000{k}" for k in range(8)))
    run = tmp_path / "run"
    run.mkdir()
    keras.utils.set_random_seed(0)
    build_detector(DetectorConfig(input_size=SIZE, filters=(4, 8), spectrum_filters=(4,))).save(run / "model.keras")
    trained = DetectorTrainConfig(model=DetectorConfig(input_size=SIZE), real=(str(real),), fake=(str(masked),))
    config_lib.save(trained, run / "config.json")
    split = {}
    for path, label in ((real, "real"), (masked, "fake")):
        names = sources.load_source(path, label, SIZE).group_names
        split[path.name] = {"train": names[::2], "validation": [], "test": names[1::2]}
    (run / "split.json").write_text(json.dumps(split))
    return run, real, masked


def test_evaluate_reports_the_fft_peaks_baseline_fitted_on_the_train_split(tmp_path, capsys):
    from keras_forensics.evaluate import main

    run, real, masked = _run_with_split(tmp_path, np.random.default_rng(3))
    out = tmp_path / "evaluation.json"
    main(["detector", "--model", str(run), "--real", str(real), "--fake", f"{masked},upsampling",
          "--fft_peaks", "--bootstrap", "20", "--out", str(out)])
    assert "fft_peaks AUC [95% CI]" in capsys.readouterr().out
    result = json.loads(out.read_text())
    fitted = result["fft_peaks"]
    assert fitted["fitted_on"] == "train split + one augmented copy"
    # The train split: 4 real images' tiles + the hosts of 4 blots; fakes: 4 x 2 squares + up-sampled reals.
    assert fitted["n_train_real"] > 0 and fitted["n_train_fake"] > 8
    rows = {(r["fake_source"], r["condition"]): r for r in result["rows"]}
    assert set(rows) == {(s, c) for s in ("set", "upsampling", "all synthetic") for c in evaluation.CONDITIONS}
    clean = rows[("set", "clean")]
    assert clean["fft_peaks"]["n_real"] == clean["cnn"]["n_real"] == result["n_real_patches"]
    assert clean["fft_peaks"]["auc"] > 0.9  # white-noise squares among smooth hosts, unseen blots


def test_fft_peaks_needs_a_training_run(tmp_path):
    run = tmp_path / "model"
    run.mkdir()
    build_detector(DetectorConfig(input_size=SIZE, filters=(4, 8), spectrum_filters=(4,))).save(run / "model.keras")
    with pytest.raises(ForensicsError, match="--fft_peaks is fitted on a training run"):
        evaluation.evaluate(str(run), str(tmp_path), str(tmp_path), fft_peaks=True)
