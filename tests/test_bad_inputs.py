"""Bad input loses nothing (issue 18): every good file is processed, every bad one is listed with
its reason, and user mistakes end with one line and exit status 2 before anything is written."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest

from screening_helpers import run_cli, save_gray, skimage_gray, tiny_triplet_model


@pytest.fixture(scope="module")
def siamese_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("siamese") / "model.keras"
    tiny_triplet_model().save(path)
    return path


@pytest.fixture(scope="module")
def detector_run(tmp_path_factory):
    """An untrained tiny detector (16 px patches) in a run dir: enough to score any image."""
    import keras

    from keras_forensics.config import DetectorConfig
    from keras_forensics.models import detector as detector_model

    keras.utils.set_random_seed(0)
    run = tmp_path_factory.mktemp("detector")
    detector_model.build_detector(DetectorConfig(input_size=16, filters=(4, 8), dropout=0.0)).save(run / "model.keras")
    return run


def _undecodable(folder, stem: bytes) -> str:
    """A path in `folder` whose name has bytes that are not UTF-8 (as Python's os functions see it)."""
    return os.fsdecode(os.path.join(os.fsencode(folder), stem + b"\xff\xfe.png"))


def _rows(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_item01_names_that_are_not_utf8_go_through_screen_and_detect(tmp_path, siamese_file, detector_run):
    camera = skimage_gray("camera")
    folder = tmp_path / "in"
    folder.mkdir()
    save_gray(folder / "good.png", camera[:160, :160])
    save_gray(_undecodable(folder, b"copy"), camera[:160, :160][:, ::-1])  # a mirrored copy
    status, _, err = run_cli(["screen", folder, "--model", siamese_file, "--out", tmp_path / "screen"])
    assert status == 0, err
    rows = _rows(tmp_path / "screen" / "pairs.csv")
    assert len(rows) == 1
    assert {os.path.basename(rows[0]["a_file"]), os.path.basename(rows[0]["b_file"])} == {"good.png",
                                                                                          "copy\\xff\\xfe.png"}
    assert "copy\\xff\\xfe.png" in (tmp_path / "screen" / "report.html").read_text(encoding="utf-8")

    status, _, err = run_cli(["detect", folder, "--model", detector_run, "--out", tmp_path / "detect"])
    assert status == 0, err
    names = {os.path.basename(r["file"]) for r in _rows(tmp_path / "detect" / "scores.csv")}
    assert names == {"good.png", "copy\\xff\\xfe.png"}
    assert "copy\\xff\\xfe.png" in (tmp_path / "detect" / "report.html").read_text(encoding="utf-8")


def test_item03_detect_scores_images_of_any_size(tmp_path, detector_run):
    camera = skimage_gray("camera")
    folder = tmp_path / "in"
    folder.mkdir()
    sizes = [(200, 200), (1, 300), (300, 1), (1, 1), (2, 2), (3, 500), (7, 7)]
    for height, width in sizes:
        save_gray(folder / f"{height}x{width}.png", camera[:height, :width])
    status, _, err = run_cli(["detect", folder, "--model", detector_run, "--out", tmp_path / "out"])
    assert status == 0, err
    rows = {os.path.basename(r["file"]): r for r in _rows(tmp_path / "out" / "scores.csv")}
    assert set(rows) == {f"{h}x{w}.png" for h, w in sizes}
    assert all(0 <= float(r["p_fake"]) <= float(r["p_fake_max_patch"]) <= 1 for r in rows.values())
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert page.count("no spectrum: a side of") == 6  # every image under 8 px on a side


@pytest.mark.parametrize("flags, message", [
    (["--threshold", "abc"], "error: --threshold must be a non-negative number, got 'abc'"),
    (["--neighbours", "many"], "error: --neighbours must be a whole number >= 0, got 'many'"),
    (["--out", "/etc/passwd/x"], "error: --out /etc/passwd/x: /etc/passwd is a file, not a folder"),
])
def test_item07_screen_checks_flags_and_the_output_folder_first(tmp_path, flags, message, monkeypatch):
    from keras_forensics.screening import model as model_lib

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the flags were checked")

    monkeypatch.setattr(model_lib, "load_scorer", no_model)
    save_gray(tmp_path / "a.png", skimage_gray("camera")[:100, :100])
    argv = ["screen", tmp_path / "a.png", "--out", tmp_path / "out"] + flags
    status, out, err = run_cli(argv)
    assert (status, out, err.strip()) == (2, "", message)
    assert not (tmp_path / "out").exists()


def test_item07_screen_accepts_no_threshold_and_numbers(tmp_path, siamese_file):
    camera = skimage_gray("camera")
    save_gray(tmp_path / "a.png", camera[:100, :100])
    save_gray(tmp_path / "b.png", camera[:100, :100][::-1])
    for threshold in ([], ["--threshold", "0.5"], ["--threshold", "2"]):
        status, _, err = run_cli(["screen", tmp_path / "a.png", tmp_path / "b.png", "--model", siamese_file,
                                  "--out", tmp_path / "out"] + threshold)
        assert status == 0, err


@pytest.mark.parametrize("command, flags, message", [
    ("siamese", ["--learning_rate", "fast"], "error: --learning_rate takes a number, got 'fast'"),
    ("siamese", ["--learning_rate", "-1"], "error: --learning_rate must not be negative, got -1.0"),
    ("siamese", ["--filters", "abc"], "error: --filters takes a comma-separated list (a whole number each), "
                                      "got ['abc']"),
    ("detector", ["--steps", "1.5"], "error: --steps takes a whole number, got 1.5"),
    ("detector", ["--p_jpeg", "often"], "error: --p_jpeg takes a number, got 'often'"),
    ("wgan", ["--seed", "-3"], "error: --seed must not be negative, got -3"),
])
def test_item06_config_fields_are_checked_before_anything_is_written(tmp_path, command, flags, message):
    from keras_forensics.train import main

    model_dir = tmp_path / "run"
    status, out, err = run_cli([command, "--model_dir", model_dir] + flags, main=main)
    assert (status, out, err.strip()) == (2, "", message)
    assert not model_dir.exists()


def test_item06_every_preset_and_default_passes_the_checks():
    import dataclasses

    from keras_forensics import config
    from keras_forensics.config import base, presets

    for presets_of, cls in ((presets.SIAMESE_PRESETS, config.SiameseTrainConfig),
                            (presets.DETECTOR_PRESETS, config.DetectorTrainConfig),
                            (presets.WGAN_PRESETS, config.WGANTrainConfig),
                            (presets.CYCLEGAN_PRESETS, config.CycleGANTrainConfig),
                            (presets.DESCRIPTOR_PRESETS, config.DescriptorTrainConfig)):
        for flags in presets_of.values():
            assert dataclasses.is_dataclass(base.replace(cls(), **flags))
    with pytest.raises(base.ForensicsError, match="low <= high"):
        base.replace(config.DescriptorTrainConfig(), intensity_shift_range=(0.2, -0.2))


def test_item11_cli_messages_come_without_tensorflow_log_lines(tmp_path, siamese_file):
    import json
    import subprocess
    import sys

    from conftest import ROOT

    save_gray(tmp_path / "a.png", skimage_gray("camera")[:100, :100])
    argv = [sys.executable, "-m", "keras_forensics", "compare", tmp_path / "a.png", tmp_path / "a.png",
            "--model", siamese_file]
    environment = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "KERAS_FORENSICS_DEBUG")}
    quiet = subprocess.run(argv, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert json.loads(quiet.stdout)["distance"] == pytest.approx(0, abs=1e-5)

    debug = subprocess.run(argv[:-1] + [tmp_path / "missing"], cwd=ROOT,
                           env={**environment, "KERAS_FORENSICS_DEBUG": "1"}, capture_output=True, text=True,
                           timeout=120)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_item02_aes_encrypted_pdfs_open_or_are_reported(tmp_path):
    import configparser

    from PIL import Image
    from pypdf import PdfWriter

    from conftest import ROOT
    from keras_forensics.screening.panels import collect

    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    requirements = [line.split("#")[0].strip() for line in setup["options"]["install_requires"].splitlines()]
    assert "cryptography" in requirements  # pypdf's AES needs it

    plain = tmp_path / "plain.pdf"
    Image.fromarray(np.uint8(skimage_gray("camera")[:200, :200] * 255)).save(plain, resolution=72)
    for name, user_password in (("open.pdf", ""), ("locked.pdf", "secret")):
        writer = PdfWriter(clone_from=str(plain))
        writer.encrypt(user_password, owner_password="owner", algorithm="AES-256")
        writer.write(tmp_path / name)
    collection = collect([tmp_path / "open.pdf", tmp_path / "locked.pdf"])
    assert {panel.file for panel in collection.panels} == {str(tmp_path / "open.pdf")}
    assert [(os.path.basename(p.path), "password" in p.message) for p in collection.problems] == [("locked.pdf", True)]
