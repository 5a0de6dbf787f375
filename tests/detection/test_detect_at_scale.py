"""`detect` at scale (issue 15, item 6): patches of many images batched into shared model calls
give the per-image verdicts, a progress bar, and a report.html under its size bound whatever the
number of inputs (the most suspicious in full, a histogram, the rest in scores.csv)."""

import csv

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_forensics.config import DetectorConfig
from keras_forensics.data.io import write_png
from keras_forensics.detection import report
from keras_forensics.detection.inference import Detector
from keras_forensics.models.detector import build_detector
from keras_forensics.ops import tiling

SIZE = 16


@pytest.fixture(scope="module")
def detector_run(tmp_path_factory):
    """A run dir with an untrained 16 px detector (random weights give varied scores)."""
    keras.utils.set_random_seed(5)
    run = tmp_path_factory.mktemp("run")
    build_detector(DetectorConfig(input_size=SIZE, filters=(4, 8), spectrum_filters=(4,), dropout=0.0)).save(
        run / "model.keras")
    return run


def mixed_images(rng):
    """Sizes below, at and above the patch, one all flat, one partly flat."""
    images = [rng.random(shape).astype(np.float32) for shape in ((16, 16), (9, 30), (40, 23), (5, 5), (64, 48))]
    images.append(np.full((20, 20), 0.5, np.float32))
    partly = np.full((33, 33), 1.0, np.float32)
    partly[:16, :16] = rng.random((16, 16))
    return images + [partly]


@pytest.mark.parametrize("batch_size", [1, 7, 256])
def test_streamed_scores_equal_per_image_scores(detector_run, batch_size):
    detector = Detector.load(detector_run)
    images = mixed_images(np.random.default_rng(0))
    streamed = list(detector.score_stream(((i, detector.prepare(x)) for i, x in enumerate(images)), batch_size))
    assert [key for key, _ in streamed] == list(range(len(images)))
    for (_, verdict), image in zip(streamed, images):
        alone = detector.score(image)
        assert abs(verdict.p_fake - alone.p_fake) <= 1e-6
        assert abs(verdict.p_fake_max_patch - alone.p_fake_max_patch) <= 1e-6
        np.testing.assert_allclose(verdict.patch_scores, alone.patch_scores, atol=1e-6)
        np.testing.assert_allclose(detector.heat_map(verdict), alone.heat_map, atol=1e-6)


def test_batched_aggregation_is_the_per_image_rule(rng):
    sizes = [3, 1, 5, 2]
    scores = rng.random(sum(sizes)).astype(np.float32)
    informative = rng.random(sum(sizes)) > 0.4
    starts = np.cumsum([0] + sizes[:-1])
    informative[starts] = True  # every image judges a patch at least (informative_patches' guarantee)
    ids = np.repeat(np.arange(len(sizes)), sizes)
    means, maxima = (v.numpy() for v in tiling.aggregate_image_scores(scores, informative, ids, len(sizes)))
    for index, (start, size) in enumerate(zip(starts, sizes)):
        part, keep = scores[start:start + size], informative[start:start + size]
        mean, maximum = (float(v) for v in tiling.aggregate_patch_scores(tf.constant(part), tf.constant(keep)))
        assert abs(means[index] - mean) <= 1e-6 and abs(maxima[index] - maximum) <= 1e-6
        assert abs(mean - part[keep].mean()) <= 1e-6


def test_report_stays_under_its_bound_with_many_inputs(detector_run, tmp_path, capsys):
    from keras_forensics.__main__ import main

    rng = np.random.default_rng(1)
    folder = tmp_path / "many"
    for index in range(240):
        shape = tuple(int(v) for v in rng.integers(6, 40, 2))
        write_png(folder / f"{index // 100}" / f"image_{index:04d}.png", rng.random(shape))
    (folder / "broken.png").write_bytes(b"not an image")
    max_bytes = 120_000
    result = report.detect([str(folder)], str(tmp_path / "out"), model=str(detector_run), in_full=240,
                           max_bytes=max_bytes, batch_size=64, workers=2)
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert len(page.encode("utf-8")) <= max_bytes
    assert result["images"] == 240 and result["skipped"] == 1
    assert 0 < result["in_full"] < 240  # the bound cut the pictures short ...
    assert page.count("<tr><td><b>") == result["in_full"]
    assert "kept under 0.12 MB" in page and f"other {240 - result['in_full']} image(s) are in scores.csv" in page
    assert page.count("data:image/png;base64,") == 1  # the histogram
    with open(tmp_path / "out" / "scores.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 240  # ... while scores.csv has every image
    # The images shown are the most suspicious, in order.
    best = sorted(rows, key=lambda r: -float(r["p_fake_max_patch"]))[0]["file"]
    assert page.index(best) < page.index("<tr><td><b>") + 2000

    # Through the CLI: the progress bar on stderr, --in_full bounds what is shown.
    main(["detect", str(folder / "0"), "--model", str(detector_run), "--out", str(tmp_path / "cli"),
          "--in_full", "3"])
    err = capsys.readouterr().err
    assert "detect: 100%" in err and "100/100" in err
    page = (tmp_path / "cli" / "report.html").read_text(encoding="utf-8")
    assert page.count("<tr><td><b>") == 3 and "other 97 image(s) are in scores.csv" in page


def test_bad_in_full_and_workers_are_one_line_errors(detector_run, tmp_path):
    from keras_forensics.errors import ForensicsError

    with pytest.raises(ForensicsError, match="--in_full"):
        report.detect([str(tmp_path)], str(tmp_path / "o"), model=str(detector_run), in_full=-1)
    with pytest.raises(ForensicsError, match="--workers"):
        report.detect([str(tmp_path)], str(tmp_path / "o"), model=str(detector_run), workers=0)
