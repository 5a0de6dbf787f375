"""The GAN-image detector: model, augmentations, data, metrics, patch inference, CLI contracts."""

import csv
import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import DATA, requires_data

from keras_forensics.config import DetectorConfig, RobustnessConfig
from keras_forensics.data import augment
from keras_forensics.detection import evaluation, inference, sources
from keras_forensics.metrics import ranking
from keras_forensics.errors import ForensicsError
from keras_forensics.models import detector as detector_model

SIZE = 16


def smooth_patches(rng, count, size=SIZE):
    """Class 0: dim, smooth gradients."""
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    angle = rng.uniform(0, 2 * np.pi, (count, 1, 1))
    amplitude = rng.uniform(0.0, 0.15, (count, 1, 1))
    base = np.cos(angle) * ramp[None, None, :] + np.sin(angle) * ramp[None, :, None]
    return (0.2 + amplitude * base + rng.normal(0, 0.005, (count, size, size))).clip(0, 1).astype(np.float32)


def noise_patches(rng, count, size=SIZE):
    """Class 1: bright, white noise."""
    return rng.uniform(0.5, 1.0, (count, size, size)).astype(np.float32)


@pytest.fixture(scope="module")
def trained_detector():
    """A tiny CNN fitted on smooth (real) vs noise (fake) patches for a few epochs."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images = np.concatenate([smooth_patches(rng, 128), noise_patches(rng, 128)])[..., None]
    labels = np.r_[np.zeros(128), np.ones(128)].astype(np.float32)[:, None]
    model = detector_model.build_detector(DetectorConfig(input_size=SIZE, filters=(8, 16), dropout=0.0,
                                                        batch_norm_momentum=0.8))
    model.compile(keras.optimizers.Adam(3e-3), "binary_crossentropy")
    model.fit(images, labels, batch_size=32, epochs=8, shuffle=True, verbose=0)
    return model


def test_detector_separates_trivially_different_classes(trained_detector):
    rng = np.random.default_rng(1)  # unseen patches
    images = np.concatenate([smooth_patches(rng, 64), noise_patches(rng, 64)])[..., None]
    labels = np.r_[np.zeros(64), np.ones(64)]
    scores = evaluation.predict(trained_detector, images)
    assert ranking.roc_auc(labels, scores) > 0.99
    assert np.mean((scores >= 0.5) == labels) > 0.95


def test_spectral_baseline_separates_checkerboard_fakes(textured_image):
    keras.utils.set_random_seed(0)
    tiles = textured_image.reshape(16, 16, 16, 16).transpose(0, 2, 1, 3).reshape(-1, 16, 16, 1)
    fakes = sources.transposed_upsample(tiles, seed=2).numpy()
    images = np.concatenate([tiles, fakes])
    labels = np.r_[np.zeros(len(tiles)), np.ones(len(fakes))].astype(np.float32)[:, None]
    model = detector_model.build_spectral_baseline(DetectorConfig(kind="spectral", input_size=16))
    detector_model.adapt_spectral_baseline(model, images)
    model.compile(keras.optimizers.Adam(0.05), "binary_crossentropy")
    model.fit(images, labels, batch_size=64, epochs=30, verbose=0)
    assert ranking.roc_auc(labels[:, 0], evaluation.predict(model, images)) > 0.95


@pytest.mark.parametrize("config", [DetectorConfig(input_size=SIZE, filters=(8, 16), spectrum_branch=True,
                                                   spectrum_filters=(4,)),
                                    DetectorConfig(kind="spectral", input_size=SIZE)])
def test_models_save_and_load(config, tmp_path, rng):
    model = detector_model.build(config)
    images = rng.random((4, SIZE, SIZE, 1)).astype(np.float32)
    if config.kind == "spectral":
        detector_model.adapt_spectral_baseline(model, images)
    assert model.input.name == "image" and model.output_names == ["p_fake"]
    assert model.output.shape[1:] == (1,)
    model.save(tmp_path / "model.keras")
    loaded = inference.Detector.load(tmp_path)
    np.testing.assert_allclose(loaded.predict_patches(images), model.predict(images, verbose=0)[:, 0], atol=1e-5)


def test_bootstrap_ci_contains_the_point_and_narrows_with_n():
    rng = np.random.default_rng(0)
    widths = []
    for count in (100, 1600):
        labels = np.r_[np.zeros(count), np.ones(count)]
        scores = np.r_[rng.normal(0, 1, count), rng.normal(1, 1, count)]
        auc = ranking.roc_auc(labels, scores)
        low, high = ranking.bootstrap_auc(labels, scores, num_resamples=500, seed=0)
        assert low < auc < high
        widths.append(high - low)
    # The width of a CI shrinks as 1/sqrt(n): 16x the samples, about a quarter of the width.
    assert widths[1] < 0.4 * widths[0]
    assert ranking.bootstrap_auc(labels, scores, 200, seed=3) == ranking.bootstrap_auc(labels, scores, 200, seed=3)


def test_roc_figures_match_brute_force():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.normal(labels, 1.0), 1)  # with ties
    positive, negative = scores[labels == 1], scores[labels == 0]
    brute = np.mean(positive[:, None] > negative[None]) + 0.5 * np.mean(positive[:, None] == negative[None])
    assert ranking.roc_auc(labels, scores) == pytest.approx(brute)
    fpr, tpr, _ = ranking.roc_curve(labels, scores)
    assert np.trapezoid(tpr, fpr) == pytest.approx(brute)
    perfect = ranking.summary([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], num_resamples=50)
    assert perfect["auc"] == 1.0 and perfect["average_precision"] == 1.0 and perfect["eer"] == 0.0
    assert perfect["accuracy_at_0.5"] == 1.0 and perfect["accuracy_at_eer_threshold"] == 1.0
    with pytest.raises(ForensicsError):
        ranking.roc_auc([1, 1], [0.2, 0.3])


def test_heat_map_of_a_composite_peaks_inside_the_pasted_square(trained_detector):
    rng = np.random.default_rng(5)
    composite = smooth_patches(rng, 1, size=96)[0]
    top, left, side = 52, 20, 24
    composite[top:top + side, left:left + side] = noise_patches(rng, 1, size=side)[0]
    verdict = inference.Detector.from_keras(trained_detector).score(composite, stride=4)
    assert verdict.heat_map.shape == composite.shape
    peak = np.unravel_index(np.argmax(verdict.heat_map), composite.shape)
    assert top <= peak[0] < top + side and left <= peak[1] < left + side
    # Pixels inside are also covered by patches that are partly outside, hence "well above".
    inside = verdict.heat_map[top:top + side, left:left + side].mean()
    far = np.delete(verdict.heat_map, np.s_[top - SIZE:top + side + SIZE], axis=0)
    assert inside > 5 * far.mean() and far.max() < 0.2
    assert verdict.p_fake_max_patch > 0.9 and verdict.p_fake < verdict.p_fake_max_patch


def test_flat_background_is_not_judged(trained_detector):
    """Saturated background carries no trace; like training, scoring leaves such patches out."""
    rng = np.random.default_rng(6)
    image = np.ones((64, 64), np.float32)
    image[8:32, 8:32] = noise_patches(rng, 1, size=24)[0]
    detector = inference.Detector.from_keras(trained_detector)
    verdict = detector.score(image, stride=4)
    assert verdict.informative.any() and not verdict.informative.all()
    assert verdict.p_fake == pytest.approx(verdict.patch_scores[verdict.informative].mean())
    assert verdict.heat_map[48:, 48:].max() == 0  # covered by flat patches only
    blank = detector.score(np.ones((20, 20), np.float32))
    assert blank.informative.all()  # nothing textured at all: every patch counts


def test_patch_grid_covers_any_size():
    corners = inference.patch_corners(40, 23, 16, 8)
    assert corners[:, 0].max() == 40 - 16 and corners[:, 1].max() == 23 - 16
    scores = np.arange(len(corners), dtype=np.float64)
    heat = inference.heat_map((40, 23), corners, scores, 16)
    # The top-left pixel is covered by patch 0 alone; brute force for one inner pixel.
    assert heat[0, 0] == 0
    covering = [(y <= 20 < y + 16) and (x <= 9 < x + 16) for y, x in corners]
    assert heat[20, 9] == pytest.approx(scores[covering].mean())
    small = inference.fit_image(np.zeros((8, 30), np.float32), 16)
    assert small.shape == (16, 60)


def test_augmenter_identity_determinism_and_ranges(rng):
    images = rng.random((16, SIZE, SIZE, 1)).astype(np.float32)
    identity = augment.RobustnessAugmenter(RobustnessConfig.identity(), SIZE)
    np.testing.assert_allclose(identity(images, tf.constant([0, 1])), images, atol=1e-6)
    augmenter = augment.RobustnessAugmenter(RobustnessConfig(p_flip=1.0, p_invert=0.0), SIZE)
    a = augmenter(images, tf.constant([3, 4])).numpy()
    np.testing.assert_array_equal(a, augmenter(images, tf.constant([3, 4])).numpy())
    assert a.min() >= 0 and a.max() <= 1 and a.shape == images.shape
    flipped = augment.flip(images, tf.ones([16], tf.bool), tf.zeros([16], tf.bool)).numpy()
    np.testing.assert_array_equal(flipped, images[:, :, ::-1])


def test_gaussian_blur_matches_scipy(rng):
    from scipy.ndimage import gaussian_filter

    images = rng.random((3, 20, 20, 1)).astype(np.float32)
    out = augment.gaussian_blur(images, tf.constant([0.0, 1.0, 2.0]), max_sigma=2.0).numpy()
    np.testing.assert_allclose(out[0], images[0], atol=1e-6)
    for index, sigma in ((1, 1.0), (2, 2.0)):
        expected = gaussian_filter(images[index, ..., 0], sigma, mode="mirror", truncate=6 / sigma)
        np.testing.assert_allclose(out[index, ..., 0], expected, atol=1e-5)
    empty = augment.gaussian_blur(images[:0], tf.zeros([0]), 1.0)
    assert empty.shape[0] == 0


def _save_tiny_run(model, folder):
    folder.mkdir()
    model.save(folder / "model.keras")
    return folder


def test_detect_writes_scores_csv_and_report(trained_detector, tmp_path):
    from PIL import Image

    from keras_forensics.__main__ import main

    run = _save_tiny_run(trained_detector, tmp_path / "run")
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(2)
    Image.fromarray((smooth_patches(rng, 1, 40)[0] * 255).astype(np.uint8)).save(images / "real.png")
    Image.fromarray((noise_patches(rng, 1, 20)[0] * 255).astype(np.uint8)).save(images / "fake.png")
    (images / "broken.png").write_bytes(b"not an image")
    main(["detect", str(images), "--model", str(run), "--out", str(tmp_path / "out")])
    with open(tmp_path / "out" / "scores.csv", newline="") as handle:
        reader = csv.reader(handle)
        assert next(reader) == ["file", "p_fake", "p_fake_max_patch"]
        rows = {r[0].split("/")[-1]: (float(r[1]), float(r[2])) for r in reader}
    assert set(rows) == {"real.png", "fake.png"}
    assert rows["fake.png"][1] > 0.5 > rows["real.png"][1]
    assert all(0 <= p <= m <= 1 for p, m in rows.values())
    page = (tmp_path / "out" / "report.html").read_text()
    # Per image a JPEG of it, of its heat map and of its spectrum; one PNG histogram of p_fake.
    assert page.count("data:image/jpeg;base64,") == 3 * 2 and page.count("data:image/png;base64,") == 1
    assert "broken.png" in page and page.count("<svg") == 2


def test_detect_errors_are_one_line(tmp_path, capsys):
    from keras_forensics.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["detect", str(tmp_path), "--model", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().startswith(f"error: no detector at {tmp_path / 'missing'}")


def test_saved_model_in_serving_layout_is_loaded(trained_detector, tmp_path):
    """--model saved_models/detector: the newest numeric version, serving_default -> p_fake."""
    export = tf.Module()
    export.model = trained_detector
    export.serve = tf.function(lambda images: {"p_fake": trained_detector(images, training=False)},
                               input_signature=[tf.TensorSpec([None, SIZE, SIZE, 1], tf.float32)])
    for version in ("1", "3"):
        tf.saved_model.save(export, str(tmp_path / "detector" / version), signatures={"serving_default": export.serve})
    (tmp_path / "detector" / "10_tmp").mkdir()
    loaded = inference.Detector.load(tmp_path / "detector")
    assert loaded.name.endswith("3") and loaded.patch_size == SIZE
    images = np.random.default_rng(0).random((5, SIZE, SIZE, 1)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict_patches(images), trained_detector.predict(images, verbose=0)[:, 0],
                               atol=1e-5)


def test_evaluation_conditions_change_sizes_and_pixels(rng):
    images = rng.random((4, SIZE, SIZE, 1)).astype(np.float32)
    assert evaluation.apply_condition(images, "resize0.5").shape == (4, SIZE // 2, SIZE // 2, 1)
    compressed = evaluation.apply_condition(images, "jpeg75").numpy()
    assert compressed.shape == images.shape and 0 < np.abs(compressed - images).mean() < 0.2
    with pytest.raises(ForensicsError):
        evaluation.apply_condition(images, "sepia")


def make_masked_set(folder, rng, hosts=("a_000001", "b_000002"), per_host=2):
    """tampered/ + mask/ as in polimi-ispl's set: smooth hosts, one white-noise 32x32 square each."""
    from PIL import Image

    for sub in ("tampered", "mask"):
        (folder / sub).mkdir(parents=True)
    for host in hosts:
        for k in range(per_host):
            image = (smooth_patches(rng, 1, 64)[0] * 255).astype(np.uint8)
            image[8:40, 20:52] = (noise_patches(rng, 1, 32)[0] * 255).astype(np.uint8)
            mask = np.zeros((64, 64, 3), np.uint8)
            mask[8:40, 20:52] = 255
            Image.fromarray(np.stack([image] * 3, -1)).save(folder / "tampered" / f"lf_32x32_{host}_patch_{k:03d}.png")
            Image.fromarray(mask).save(folder / "mask" / f"mask_{host}_patch_{k:03d}.png")
    return folder


def test_masked_set_cuts_squares_and_hosts(tmp_path, rng):
    """A masked set made here: the squares are fake, the rest real, grouped by host."""
    make_masked_set(tmp_path / "set", rng)
    source = sources.masked_set(tmp_path / "set", patch_size=16, real_per_image=3)
    assert source.fake.names == ["set/a_000001", "set/b_000002"]
    assert len(source.fake) == 4 and np.all(source.fake.patches >= 127)  # noise in [0.5, 1]
    assert len(source.real) == 12 and source.real.patches.max() < 127  # the smooth host only
    with pytest.raises(ForensicsError):
        sources.load_source(tmp_path / "set", "real")


@requires_data
def test_shared_masked_set_is_grayscale_and_split_by_host(tmp_path):
    shared = DATA / "western_blots" / "synthetic_patches"
    if not shared.is_dir():
        pytest.skip("synthetic_patches not available")
    # 6 hosts x 4 images, linked (not copied) into a small masked set of the same layout.
    folder = tmp_path / "synthetic_patches"
    for sub in ("tampered", "mask"):
        (folder / sub).mkdir(parents=True)
    hosts = sorted({p.name[len("lf_64x64_"):].rsplit("_patch_", 1)[0] for p in (shared / "tampered").glob("*.png")})
    for host in hosts[::10][:6]:
        for tampered in sorted((shared / "tampered").glob(f"lf_64x64_{host}_patch_*.png"))[:4]:
            ident = tampered.name[len("lf_64x64_"):]
            (folder / "tampered" / tampered.name).symlink_to(tampered)
            (folder / "mask" / f"mask_{ident}").symlink_to(shared / "mask" / f"mask_{ident}")
    source = sources.masked_set(folder, patch_size=64, real_per_image=1)
    assert source.fake.patches.shape[1:] == (64, 64) and source.fake.patches.dtype == np.uint8
    assert len(source.fake) == 24 and len(source.group_names) == 6 and len(source.real) == 24
    # Grayscale: the squares are compared with the BT.601 luminance of the RGB file.
    from PIL import Image

    rgb = np.asarray(Image.open(folder / "tampered" / sorted(p.name for p in (folder / "tampered").iterdir())[0]),
                     np.float32)[..., :3]
    mask = np.asarray(Image.open(sorted((folder / "mask").iterdir())[0]))[..., 0] > 127
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    square = (rgb @ np.array([0.2989, 0.5870, 0.1140], np.float32))[rows[0]:rows[0] + 64, cols[0]:cols[0] + 64]
    assert np.abs(source.fake.patches[0].astype(np.float32) - square).max() <= 1.0
    split = sources.split_source(source, (0.5, 0.25, 0.25), seed=0)
    assert not set(split["train"]) & set(split["test"])
    test_part = source.subset(split["test"])
    assert set(test_part.fake.names) == set(split["test"])


def test_train_detector_demo_runs_and_resumes(tmp_path):
    from keras_forensics.train import main

    run = tmp_path / "run"
    args = ["detector", "--model_dir", str(run), "--steps", "2", "--validate_every", "1", "--batch_size", "8",
            "--input_size", "16", "--filters", "4,8"]
    main(args)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 2 and set(metrics["test"]) == set(evaluation.CONDITIONS)
    assert (run / "model.keras").is_file() and json.loads((run / "split.json").read_text())
    main(args[:3] + ["--steps", "3"] + args[5:])  # resume and extend by one step
    assert json.loads((run / "metrics.json").read_text())["steps"] == 3
    with pytest.raises(SystemExit):
        main(args[:3] + ["--steps", "3", "--validate_every", "1", "--batch_size", "16"])


def test_evaluating_a_run_that_trained_on_upsampling_fakes_keeps_them(rng):
    """The upsampling fakes are made from the real test patches at evaluation time; the run's own
    split of its upsampling source (other group names) must not filter them away."""
    from keras_forensics import datasets
    from keras_forensics.detection.sources import UPSAMPLING_FAKES, Source, load_source

    patches = datasets.PatchSet((rng.random((4, 64, 64)) * 255).astype(np.uint8), np.array([0, 0, 1, 1]), ["a", "b"])
    source = load_source(UPSAMPLING_FAKES, "fake", demo_real=patches)
    assert source.derived and len(source.fake) == 4
    split = {UPSAMPLING_FAKES: {"train": ["x"], "test": ["y"]}, "folder": {"test": ["a"]}}
    assert evaluation._split_filter(source, split, "test") is source
    kept = evaluation._split_filter(Source("folder", fake=patches), split, "test")
    assert len(kept.fake) == 2
    renamed = Source(UPSAMPLING_FAKES, fake=patches)  # the name alone does not exempt a source
    assert len(evaluation._split_filter(renamed, split, "test").fake) == 0


def test_evaluate_command_reports_every_source_and_condition(trained_detector, tmp_path, rng):
    from PIL import Image

    from keras_forensics.evaluate import main

    run = _save_tiny_run(trained_detector, tmp_path / "run")
    masked = make_masked_set(tmp_path / "set", rng)
    real = tmp_path / "real"
    real.mkdir()
    for index in range(3):
        Image.fromarray((smooth_patches(rng, 1, 40)[0] * 255).astype(np.uint8)).save(real / f"{index}.png")
    out = tmp_path / "evaluation.json"
    main(["detector", "--model", str(run), "--baseline", str(run), "--real", str(real),
          "--fake", f"{masked},upsampling", "--split", "all", "--bootstrap", "50", "--out", str(out)])
    result = json.loads(out.read_text())
    rows = {(r["fake_source"], r["condition"]): r for r in result["rows"]}
    assert set(rows) == {(s, c) for s in ("set", "upsampling", "all synthetic") for c in evaluation.CONDITIONS}
    clean = rows[("set", "clean")]
    assert clean["cnn"] == clean["spectral"]  # the same model twice: the same figures
    assert clean["cnn"]["n_fake"] == 4 and clean["cnn"]["n_real"] == result["n_real_patches"]
    assert clean["cnn"]["auc"] > 0.95  # white-noise squares among smooth hosts
    low, high = clean["cnn"]["auc_ci95"]
    assert low <= clean["cnn"]["auc"] <= high


def test_generator_source_samples_fakes_from_a_saved_generator(tmp_path):
    """--fake RUN_DIR: a model.keras mapping noise to tanh images, cropped to patches in [0, 1]."""
    keras.utils.set_random_seed(0)
    noise = keras.Input((8,), name="noise")
    images = keras.layers.Reshape((24, 24, 1))(keras.layers.Dense(24 * 24, activation="tanh")(noise))
    _save_tiny_run(keras.Model(noise, images), tmp_path / "gan")
    source = sources.GeneratorSource(tmp_path / "gan", patch_size=SIZE)
    assert source.latent_dim == 8 and source.signed
    first = source.sample(5, tf.constant([1, 2])).numpy()
    assert first.shape == (5, SIZE, SIZE, 1) and 0 <= first.min() and first.max() <= 1
    np.testing.assert_array_equal(first, source.sample(5, tf.constant([1, 2])).numpy())
    assert not np.array_equal(first, source.sample(5, tf.constant([1, 3])).numpy())
    assert sources.is_generator(tmp_path / "gan") and not sources.is_generator(tmp_path)
