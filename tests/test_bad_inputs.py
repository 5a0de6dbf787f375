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
    (["--groups_in_full", "-1"], "error: --groups_in_full must be a whole number >= 0, got -1"),
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


# ---------------------------------------------------------------------------------------------
# The REST server: slow clients, bad bodies, pixel caps (items 5, 8, 12)

REST_TIMEOUT_S = 2.0  # the test server's --rest_api_timeout_in_ms, in seconds
UPLOADS_PER_CLIENT = 4


@pytest.fixture(scope="module")
def rest_server():
    """A REST-only server of the tiny stand-in detector, with a short body deadline, 4 slots."""
    import serving_support
    from keras_forensics.serving.model_manager import ModelManager, ModelSource
    from keras_forensics.serving.server import ModelServer

    base = serving_support.exported("detector").path.parent
    manager = ModelManager([ModelSource("detector", base)], poll_seconds=60)
    server = ModelServer(manager, port=None, rest_api_port=0, rest_api_timeout_in_ms=int(REST_TIMEOUT_S * 1000),
                         rest_api_num_threads=4, max_image_pixels=600_000, max_request_pixels=1_000_000,
                         max_uploads_per_client=UPLOADS_PER_CLIENT)
    server.start()
    yield server
    server.stop()


def _png_bytes(height: int = 40, width: int = 40) -> bytes:
    import io as _io

    from PIL import Image

    buffer = _io.BytesIO()
    Image.fromarray(np.uint8(skimage_gray("camera")[:height, :width] * 255)).save(buffer, format="PNG")
    return buffer.getvalue()


def _classify_body(*images: bytes) -> bytes:
    import base64
    import json

    return json.dumps({"signature_name": "classify_bytes",
                       "instances": [{"b64": base64.b64encode(i).decode()} for i in images]}).encode()


def _post(server, body: bytes, headers=None, source: str = "127.0.0.1"):
    """One POST to the detector's predict: (status, parsed JSON answer)."""
    import http.client
    import json

    connection = http.client.HTTPConnection("127.0.0.1", server.rest_api_port, timeout=10,
                                            source_address=(source, 0))
    try:
        connection.request("POST", "/v1/models/detector:predict", body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def _slow_upload(server, source: str, length: int = 100_000):
    """A client from `source` that sends its headers and the first byte of a `length`-byte body."""
    import socket

    connection = socket.create_connection(("127.0.0.1", server.rest_api_port), timeout=10,
                                          source_address=(source, 0))
    connection.sendall(b"POST /v1/models/detector:predict HTTP/1.1\r\nHost: localhost\r\n"
                       b"Content-Length: %d\r\n\r\n{" % length)
    return connection


def _status_line(connection) -> bytes:
    answer = b""
    while b"\r\n" not in answer:
        chunk = connection.recv(4096)
        if not chunk:
            break
        answer += chunk
    return answer.split(b"\r\n")[0]


def test_item05_a_good_request_is_answered_within_1_s_while_16_slow_clients_send(rest_server):
    import threading
    import time

    good = _classify_body(_png_bytes())
    assert _post(rest_server, good)[0] == 200  # warm: the first call traces the graph
    started = time.perf_counter()
    assert _post(rest_server, good)[0] == 200
    alone = time.perf_counter() - started  # the reference: no slow client
    # 16 clients, each from its own loopback address (so that no per-address limit is involved),
    # dripping a byte every 0.1 s: each read meets the socket timeout, the body never ends.
    slow = [_slow_upload(rest_server, f"127.0.0.{2 + number}") for number in range(16)]
    connected = time.monotonic()
    stop = threading.Event()

    def drip():
        while not stop.wait(0.1):
            for connection in slow:
                try:
                    connection.send(b" ")
                except OSError:
                    pass

    dripping = threading.Thread(target=drip, daemon=True)
    dripping.start()
    try:
        time.sleep(0.3)  # every slow client is inside its body by now, 4x the server's 4 slots
        started = time.perf_counter()
        status, answer = _post(rest_server, good)
        latency = time.perf_counter() - started
        print(f"item 5: a good request took {latency * 1000:.0f} ms with 16 slow clients sending, "
              f"{alone * 1000:.0f} ms alone")
        assert status == 200 and len(answer["predictions"]) == 1
        assert latency < 1.0
        # The slow clients get 408 at their body deadline, not when (if ever) their body ends.
        lines = [_status_line(connection) for connection in slow]
        assert lines == [b"HTTP/1.1 408 Request Timeout"] * 16
        assert time.monotonic() - connected < REST_TIMEOUT_S + 1.5
    finally:
        stop.set()
        dripping.join(timeout=5)
        for connection in slow:
            connection.close()


def test_item05_one_address_sends_a_bounded_number_of_bodies_at_once(rest_server):
    import json
    import time

    held = [_slow_upload(rest_server, "127.0.0.99") for _ in range(UPLOADS_PER_CLIENT)]
    try:
        time.sleep(0.3)
        started = time.monotonic()
        extra = _slow_upload(rest_server, "127.0.0.99")
        answer = extra.makefile("rb").read()
        extra.close()
        assert answer.startswith(b"HTTP/1.1 429") and time.monotonic() - started < 1.5
        message = json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
        assert "--max_uploads_per_client is 4" in message
        assert _post(rest_server, _classify_body(_png_bytes()))[0] == 200  # other addresses go on
    finally:
        for connection in held:
            connection.close()


@pytest.mark.parametrize("body, headers, message", [
    (b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", {}, "JSON Parse error: nested too deeply"),
    (b'{"instances": [[1]]}', {"Content-Length": "-5"}, "bad Content-Length '-5'"),
    (b'{"instances": [[1]]}', {"Content-Length": "1_9"}, "bad Content-Length '1_9'"),
], ids=["nested_100000_deep", "content_length_minus_5", "content_length_1_9"])
def test_item08_deep_json_and_bad_content_length_are_client_errors(rest_server, body, headers, message):
    status, answer = _post(rest_server, body, headers)
    assert status == 400 and message in answer["error"]
    assert _post(rest_server, _classify_body(_png_bytes()))[0] == 200


def test_item12_the_server_caps_the_pixels_of_one_request(rest_server):
    import struct
    import zlib

    def claiming(width, height):  # a tiny PNG whose header claims width x height
        def chunk(kind, data):
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b""))

    # 3 x 360,000 px: each under the 600,000 px per image, together over the 1,000,000 per request
    status, answer = _post(rest_server, _classify_body(*[claiming(600, 600)] * 3))
    assert status == 400 and "--max_request_pixels 1000000" in answer["error"]
    status, answer = _post(rest_server, _classify_body(*[claiming(600, 600)] * 2))
    assert status == 400 and "pixels" not in answer["error"]  # passes the caps; its fake data does not decode
    assert _post(rest_server, _classify_body(_png_bytes(), _png_bytes(60, 50)))[0] == 200


@pytest.mark.parametrize("layout", ["one_series_of_pages", "one_series_per_page"])
def test_item04_every_page_of_a_multipage_tiff_is_screened(tmp_path, siamese_file, layout):
    import tifffile

    camera = np.uint8(np.round(skimage_gray("camera") * 255))
    pages = [camera[:160, :160], camera[300:460, 300:460], camera[:160, :160]]  # page 3 re-uses page 1
    folder = tmp_path / "in"
    folder.mkdir()
    if layout == "one_series_of_pages":  # a stack written at once: tifffile sees one series of 3 pages
        tifffile.imwrite(folder / "figures.tif", np.stack(pages), photometric="minisblack")
    else:  # pages written one by one, one of another size: one series per page
        pages[1] = camera[300:480, 250:400]
        with tifffile.TiffWriter(folder / "figures.tif") as writer:
            for page in pages:
                writer.write(page, photometric="minisblack")
    with tifffile.TiffFile(folder / "figures.tif") as tif:
        assert len(tif.pages) == 3 and len(tif.series) == (1 if layout == "one_series_of_pages" else 3)
    status, _, err = run_cli(["screen", folder, "--model", siamese_file, "--out", tmp_path / "out"])
    assert status == 0, err
    rows = _rows(tmp_path / "out" / "pairs.csv")
    assert sorted(tuple(sorted((int(r["a_page"]), int(r["b_page"])))) for r in rows) == [(1, 2), (1, 3), (2, 3)]
    assert {r["a_file"] for r in rows} | {r["b_file"] for r in rows} == {str(folder / "figures.tif")}
    best = rows[0]
    assert {best["a_page"], best["b_page"]} == {"1", "3"} and best["group"] == "1"
    assert "p3 img1" in (tmp_path / "out" / "report.html").read_text(encoding="utf-8")


def test_item09_broken_links_and_link_loops_are_listed_not_dropped(tmp_path, siamese_file, detector_run):
    camera = skimage_gray("camera")
    folder = tmp_path / "in"
    folder.mkdir()
    save_gray(folder / "good.png", camera[:160, :160])
    save_gray(folder / "copy.png", camera[:160, :160][:, ::-1])
    os.symlink("gone.png", folder / "broken.png")
    os.symlink("loop.png", folder / "loop.png")  # a link to itself
    os.symlink("ping.png", folder / "pong.png")  # two links to each other
    os.symlink("pong.png", folder / "ping.png")
    status, _, err = run_cli(["screen", folder, "--model", siamese_file, "--out", tmp_path / "screen"])
    assert status == 0, err
    assert len(_rows(tmp_path / "screen" / "pairs.csv")) == 1  # the good pair is still screened
    page = (tmp_path / "screen" / "report.html").read_text(encoding="utf-8")
    for name, reason in (("broken.png", "broken symbolic link (to gone.png, which does not exist)"),
                         ("loop.png", "symbolic link loop"), ("ping.png", "symbolic link loop"),
                         ("pong.png", "symbolic link loop")):
        assert f"{folder / name}: {reason}" in err and f"{folder / name}: {reason}" in page

    status, _, err = run_cli(["detect", folder, "--model", detector_run, "--out", tmp_path / "detect"])
    assert status == 0, err
    assert len(_rows(tmp_path / "detect" / "scores.csv")) == 2
    page = (tmp_path / "detect" / "report.html").read_text(encoding="utf-8")
    assert f"{folder / 'broken.png'}: broken symbolic link" in page and page.count("symbolic link loop") == 3


def test_item09_a_reused_out_folder_holds_only_the_new_runs_output(tmp_path, siamese_file):
    camera = skimage_gray("camera")
    for number in range(3):
        save_gray(tmp_path / f"old{number}.png", camera[100 * number:100 * number + 120, :120])
    out = tmp_path / "out"
    old = [tmp_path / f"old{number}.png" for number in range(3)]
    assert run_cli(["screen", *old, "--model", siamese_file, "--out", out])[0] == 0
    assert len(list((out / "panels").iterdir())) == 3
    (out / "notes.txt").write_text("the user's own file")
    (out / "panels" / "keep.txt").write_text("and another")
    save_gray(tmp_path / "new.png", camera[300:420, 300:420])
    status, _, err = run_cli(["screen", tmp_path / "new.png", old[0], "--model", siamese_file, "--out", out])
    assert status == 0, err
    rows = _rows(out / "pairs.csv")
    crops = {rows[0]["a"], rows[0]["b"]}
    assert len(rows) == 1 and all((out / crop).is_file() for crop in crops)
    assert {f"panels/{p.name}" for p in (out / "panels").iterdir()} == crops | {"panels/keep.txt"}
    assert (out / "notes.txt").read_text() == "the user's own file"


def test_item10_a_killed_siamese_runs_wall_time_counts_when_it_is_resumed(tmp_path, monkeypatch):
    import json

    import keras

    from keras_forensics import config as config_lib
    from keras_forensics.training import common
    from keras_forensics.training import siamese as trainer

    class Killed(Exception):
        pass

    class KillAtSecondInterval(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:  # the first interval is done and checkpointed: as a kill at that point
                raise Killed

    standard = common.standard_callbacks
    monkeypatch.setattr(common, "standard_callbacks", lambda *a, **k: standard(*a, **k) + [KillAtSecondInterval()])
    config = config_lib.replace(
        config_lib.SiameseTrainConfig(), input_size=32, filters=(4, 8), dense_units=16, embedding_dim=8,
        patch_size=64, crop_size=32, text_bank_size=8, batch_size=4, steps=4, validate_every=2,
        validation_triplets=8, test_triplets=8, projector_size=8)
    model_dir = tmp_path / "run"
    with pytest.raises(Killed):
        trainer.train(config, model_dir)
    killed = json.loads((model_dir / "metrics.json").read_text())["wall_time_s_total"]
    assert killed > 0  # written at the end of the killed run's first interval

    monkeypatch.setattr(common, "standard_callbacks", standard)
    trainer.train(config, model_dir)  # resumes at step 2
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert common.completed_epochs(model_dir) == 2
    assert metrics["wall_time_s_total"] >= killed + metrics["wall_time_s_this_run"] - 0.1


def test_item10_the_next_export_removes_stale_leftovers_of_killed_exports(tmp_path):
    import time

    import serving_support
    from keras_forensics.serving import export as exporting

    base = tmp_path / "saved_models" / "detector"
    hour_ago = time.time() - 3600
    for name, age in ((".tmp-1-0badc0de", hour_ago), (".old-1-5ca1ab1e", hour_ago), (".tmp-2-running", None)):
        (base / name / "variables").mkdir(parents=True)
        (base / name / "variables" / "variables.index").write_bytes(b"...")
        if age is not None:
            for path in (base / name / "variables" / "variables.index", base / name / "variables", base / name):
                os.utime(path, (age, age))
    (base / "notes.tmp-1").write_text("not an export's")  # only the export's own dot-folders go
    result = exporting.export("detector", serving_support.run_dir("detector"), export_base=tmp_path / "saved_models",
                              version=1, verbose=False)
    assert result.path == base / "1"
    assert sorted(p.name for p in base.iterdir()) == [".tmp-2-running", "1", "notes.tmp-1"]


def _white_png(path, width: int, height: int) -> None:
    """A valid 8-bit gray PNG of width x height, all white, compressed row by row: a few hundred
    KB for 144 Mpx, as a decompression bomb is (nothing of its size is ever held in memory)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor, row = zlib.compressobj(9), b"\x00" + b"\xff" * width
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    with open(path, "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def test_item12_huge_images_are_refused_before_decoding_and_the_flag_moves_the_limit(tmp_path, siamese_file):
    import json

    from keras_forensics.data import io
    from keras_forensics.screening import cli

    bomb = tmp_path / "bomb.png"
    _white_png(bomb, 12_000, 12_000)
    assert bomb.stat().st_size < 1_000_000
    small = tmp_path / "small.png"
    save_gray(small, skimage_gray("camera")[:100, :100])
    status, out, err = run_cli(["compare", bomb, small, "--model", siamese_file])
    assert (status, out, err.strip()) == (2, "", f"error: {bomb}: image is 12000x12000 = 144,000,000 pixels, "
                                                 "above the limit of 100,000,000 (a decompression bomb, or a "
                                                 "genuine image: then pass --max_pixels 144000000 or more)")
    # --max_pixels moves the limit either way (shown on a 100 x 100 image, so nothing big is decoded)
    status, _, err = run_cli(["compare", small, small, "--model", siamese_file, "--max_pixels", "9999"])
    assert status == 2 and "= 10,000 pixels, above the limit of 9,999" in err
    status, out, err = run_cli(["compare", small, small, "--model", siamese_file, "--max_pixels", "10000"])
    assert status == 0 and json.loads(out)["distance"] == pytest.approx(0, abs=1e-5)
    status, out, err = run_cli(["compare", small, small, "--model", siamese_file, "--max_pixels", "lots"])
    assert (status, out, err.strip()) == (2, "", "error: --max_pixels must be a whole number >= 1, got 'lots'")

    # screen lists the huge file and screens the rest
    save_gray(tmp_path / "mirrored.png", skimage_gray("camera")[:100, :100][:, ::-1])
    status, _, err = run_cli(["screen", bomb, small, tmp_path / "mirrored.png", "--model", siamese_file,
                              "--out", tmp_path / "out"])
    assert status == 0, err
    assert f"{bomb}: image is 12000x12000 = 144,000,000 pixels, above the limit" in err
    assert len(_rows(tmp_path / "out" / "pairs.csv")) == 1
    assert io.DEFAULT_MAX_PIXELS == 100_000_000
    for command in (cli.compare, cli.similarity, cli.screen):  # their --help states the default
        assert f"(default {io.DEFAULT_MAX_PIXELS:,})" in " ".join(command.__doc__.split())


# ---------------------------------------------------------------------------------------------
# The target: one folder with good files and every kind of bad one


def test_a_folder_of_good_and_bad_files_loses_nothing(tmp_path, siamese_file, detector_run):
    """`screen` and `detect` on one folder holding good images (one with a name that is not
    UTF-8, a two-page TIFF) and bad ones (truncated, not an image, a password-locked PDF, a
    broken link, a link loop, too many pixels): every good file is processed, every bad one is
    listed with its reason on stderr and in the report, and both exit 0."""
    import tifffile
    from PIL import Image
    from pypdf import PdfWriter

    camera = skimage_gray("camera")
    folder = tmp_path / "in"
    folder.mkdir()
    save_gray(folder / "good.png", camera[:160, :160])
    save_gray(_undecodable(folder, b"copy"), camera[:160, :160][:, ::-1])  # a mirrored copy
    pages = np.stack([np.uint8(camera[200:360, 200:360] * 255), np.uint8(camera[:160, :160] * 255)])
    tifffile.imwrite(folder / "pages.tif", pages)  # page 2 re-uses good.png
    (folder / "truncated.png").write_bytes((folder / "good.png").read_bytes()[:200])
    (folder / "notes.png").write_text("not an image")
    plain = tmp_path / "plain.pdf"
    Image.fromarray(np.uint8(camera[:200, :200] * 255)).save(plain, resolution=72)
    writer = PdfWriter(clone_from=str(plain))
    writer.encrypt("secret", owner_password="owner", algorithm="AES-256")
    writer.write(folder / "locked.pdf")
    os.symlink("gone.png", folder / "broken.png")
    os.symlink("loop.png", folder / "loop.png")
    save_gray(folder / "huge.png", np.zeros((1100, 1100)))  # above --max_pixels 1,000,000
    bad = {"truncated.png": "", "notes.png": "", "locked.pdf": "password", "broken.png": "broken symbolic link",
           "loop.png": "symbolic link loop", "huge.png": "pixels"}

    status, _, err = run_cli(["screen", folder, "--model", siamese_file, "--out", tmp_path / "screen",
                              "--max_pixels", "1000000"])
    assert status == 0, err
    rows = _rows(tmp_path / "screen" / "pairs.csv")
    screened = {os.path.basename(r[side]) for r in rows for side in ("a_file", "b_file")}
    assert screened == {"good.png", "copy\\xff\\xfe.png", "pages.tif"}
    assert any(r["a_page"] == "2" or r["b_page"] == "2" for r in rows)
    page = (tmp_path / "screen" / "report.html").read_text(encoding="utf-8")
    for name, reason in bad.items():
        lines = [line for line in err.splitlines() if name in line and reason in line]
        assert lines, f"{name} not listed on stderr:\n{err}"
        assert name in page

    detect_bad = {name: reason for name, reason in bad.items() if not name.endswith(".pdf")}  # detect reads images
    status, _, err = run_cli(["detect", folder, "--model", detector_run, "--out", tmp_path / "detect",
                              "--max_pixels", "1000000"])
    assert status == 0, err
    scored = {os.path.basename(r["file"]) for r in _rows(tmp_path / "detect" / "scores.csv")}
    assert {"good.png", "copy\\xff\\xfe.png", "pages.tif"} <= scored
    assert not scored & set(detect_bad)
    page = (tmp_path / "detect" / "report.html").read_text(encoding="utf-8")
    for name, reason in detect_bad.items():
        assert any(name in line and reason in line for line in err.splitlines()), f"{name}:\n{err}"
        assert name in page
