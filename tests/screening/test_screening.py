"""Screening: command contracts, duplicate groups on top, the HTML report, bad input, exit status, API."""

from __future__ import annotations

import base64
import csv
import html.parser
import json
import math
import shutil

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import ROOT
from screening_helpers import run_cli, save_gray, skimage_gray, tiny_triplet_model

PAIR_COLUMNS = ["rank", "a", "b", "distance", "p_same", "inliers", "transform", "combined", "relation",
                "a_file", "a_page", "a_box", "b_file", "b_page", "b_box", "note", "group"]

#: Three re-use groups made with rotation, crop, JPEG, mirror and a text label, plus distractors.
GROUPS = {
    "camera": ("camera", [("rot90", None), ("jpeg", 35)]),
    "coins": ("coins", [("crop_label", None), ("rot270_jpeg", 50)]),
    "cells": ("immunohistochemistry", [("mirror", None), ("crop", None)]),
}
DISTRACTORS = ("astronaut", "coffee", "chelsea", "hubble_deep_field")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.keras"
    tiny_triplet_model().save(path)
    return path


def _edit(image: np.ndarray, edit: str) -> np.ndarray:
    if edit.startswith("rot90"):
        return np.ascontiguousarray(np.rot90(image))
    if edit.startswith("rot270"):
        return np.ascontiguousarray(np.rot90(image, 3))
    if edit == "mirror":
        return np.ascontiguousarray(image[:, ::-1])
    if edit.startswith("crop"):
        height, width = image.shape
        image = image[height // 8: height - height // 6, width // 10: width - width // 5].copy()
        if edit == "crop_label":
            pil = Image.fromarray(np.uint8(image * 255))
            ImageDraw.Draw(pil).text((8, 8), "B", fill=255, font_size=28)
            image = np.asarray(pil, np.float32) / 255
        return image
    return image


@pytest.fixture(scope="module")
def groups_folder(tmp_path_factory):
    """Folder with 3 groups of 3 re-used panels and 4 unrelated panels; returns (folder, group of file)."""
    folder = tmp_path_factory.mktemp("groups")
    group_of = {}
    for group, (source, edits) in GROUPS.items():
        image = skimage_gray(source)[:256, :256]
        save_gray(folder / f"{group}_0.png", image)
        group_of[f"{group}_0.png"] = group
        for number, (edit, quality) in enumerate(edits, start=1):
            name = f"{group}_{number}." + ("jpg" if quality or "jpeg" in edit else "png")
            save_gray(folder / name, _edit(image, edit), **({"quality": quality} if quality else {}))
            group_of[name] = group
    for name in DISTRACTORS:
        save_gray(folder / f"other_{name}.png", skimage_gray(name)[-256:, -256:])
    return folder, group_of


def _rows(path):
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        return reader.fieldnames, list(reader)


@pytest.fixture(scope="module")
def screened(groups_folder, model_file, tmp_path_factory):
    folder, _ = groups_folder
    out = tmp_path_factory.mktemp("report")
    status, stdout, stderr = run_cli(["screen", folder, "--out", out, "--model", model_file])
    return status, out, stdout, stderr


def test_screen_contract_and_duplicate_groups_on_top(screened, groups_folder):
    status, out, stdout, _ = screened
    _, group_of = groups_folder
    assert status == 0
    assert stdout.strip().endswith("report.html")
    fields, rows = _rows(out / "pairs.csv")
    assert fields == PAIR_COLUMNS
    expected = {frozenset((a, b)) for a in group_of for b in group_of if a < b and group_of[a] == group_of[b]}
    assert len(expected) == 9
    top = {frozenset((r["a_file"].split("/")[-1], r["b_file"].split("/")[-1])) for r in rows[:len(expected)]}
    assert top == expected
    assert [int(r["rank"]) for r in rows] == list(range(1, len(rows) + 1))
    combined = [float(r["combined"]) for r in rows]
    assert combined == sorted(combined, reverse=True)
    for row in rows[:len(expected)]:
        assert float(row["combined"]) > 0.9
        assert int(row["inliers"]) >= 20
        assert row["relation"] == "within-paper"  # one folder = one paper, one file = one figure
        assert (out / row["a"]).is_file() and (out / row["b"]).is_file()
        assert math.isclose(float(row["p_same"]), 1 / (1 + math.exp(float(row["distance"]) - 1)), abs_tol=2e-4)
        assert row["a_page"] == "" and len(row["a_box"].split(",")) == 4
    # Re-use groups: each planted group is one group of confirmed pairs; unconfirmed pairs have none.
    number_of = {}
    for row in rows[:len(expected)]:
        number_of.setdefault(group_of[row["a_file"].split("/")[-1]], set()).add(row["group"])
    assert sorted(n for numbers in number_of.values() for n in numbers) == ["1", "2", "3"]
    for row in rows:
        assert (row["group"] != "") == (float(row["combined"]) > 0.5)
    # The verifier's transform of the 90-degree rotation.
    rotation = [r for r in rows if {r["a_file"].split("/")[-1], r["b_file"].split("/")[-1]} ==
                {"camera_0.png", "camera_1.png"}][0]
    assert "rotate 90.0" in rotation["transform"] or "rotate -90.0" in rotation["transform"]


class _ReportParser(html.parser.HTMLParser):
    """Collects the group cards, pair rows and table rows of report.html with the images inside each."""

    def __init__(self):
        super().__init__()
        self.cards, self.rows, self.table_rows, self.heatmaps = [], [], [], 0
        self._card = self._row = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section" and attrs.get("class") == "group":
            self._card = {"group": int(attrs["data-group"]), "members": [], "rows": []}
            self.cards.append(self._card)
        elif tag == "tr" and attrs.get("class") == "pair":
            self._row = {"a": attrs["data-a"], "b": attrs["data-b"], "rank": int(attrs["data-rank"]), "images": {}}
            self.rows.append(self._row)
            self._card["rows"].append(self._row)
        elif tag == "tr" and attrs.get("class") == "group-row":
            self._row = {"group": int(attrs["data-group"]), "images": {}}
            self.table_rows.append(self._row)
        elif tag == "img":
            if attrs.get("class") == "heatmap":
                self.heatmaps += 1
            elif self._row is not None:
                self._row["images"].setdefault(attrs.get("class"), []).append(attrs["src"])
            elif self._card is not None:
                self._card["members"].append(attrs)

    def handle_endtag(self, tag):
        if tag == "tr":
            self._row = None
        elif tag == "section":
            self._card = None


def _decode(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/jpeg;base64,")
    image = cv2.imdecode(np.frombuffer(base64.b64decode(uri.split(",", 1)[1]), np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None and image.size
    return image


def test_report_html_shows_every_group_and_suspected_pair_with_images(screened, groups_folder):
    _, out, _, _ = screened
    _, group_of = groups_folder
    page = (out / "report.html").read_text()
    assert "<script" not in page and "src=\"http" not in page  # self-contained
    parser = _ReportParser()
    parser.feed(page)
    _, rows = _rows(out / "pairs.csv")
    suspected = {int(r["rank"]): r for r in rows if float(r["combined"]) > 0.5}
    assert sorted(r["rank"] for r in parser.rows) == sorted(suspected) and len(suspected) >= 9
    assert parser.heatmaps == 1 and not parser.table_rows
    # One card per group, in group order, each with its pairs; the planted groups have 3 members each.
    assert [c["group"] for c in parser.cards] == list(range(1, len(parser.cards) + 1))
    for card in parser.cards:
        assert {suspected[r["rank"]]["group"] for r in card["rows"]} == {str(card["group"])}
    for card in parser.cards[:3]:
        assert len(card["members"]) == 3
        assert [m["class"] for m in card["members"]][0] == "reference"
        names = {m["alt"].rsplit("/", 1)[-1] for m in card["members"]}
        assert len({group_of[n] for n in names}) == 1
        for member in card["members"]:
            assert _decode(member["src"]).shape[:2] == (int(member["height"]), int(member["width"]))
    for html_row in parser.rows:
        csv_row = suspected[html_row["rank"]]
        assert (html_row["a"], html_row["b"]) == (csv_row["a"], csv_row["b"])
        for side in ("a", "b"):
            shown = _decode(html_row["images"][f"panel-{side}"][0])
            crop = cv2.imread(str(out / csv_row[side]), cv2.IMREAD_GRAYSCALE)
            assert abs(shown.shape[0] / shown.shape[1] - crop.shape[0] / crop.shape[1]) < 0.02
        assert len(html_row["images"]["overlay"]) == 1  # every confirmed pair has its aligned overlay
        assert len(html_row["images"]["similarity-map"]) == 2
        _decode(html_row["images"]["overlay"][0])


def test_groups_in_full_flag_tables_the_rest(tmp_path, model_file, groups_folder):
    folder, _ = groups_folder
    out = tmp_path / "report"
    status, _, stderr = run_cli(["screen", folder, "--out", out, "--model", model_file, "--groups_in_full", 1])
    assert status == 0, stderr
    parser = _ReportParser()
    parser.feed((out / "report.html").read_text())
    assert [c["group"] for c in parser.cards] == [1]
    assert [r["group"] for r in parser.table_rows][:2] == [2, 3]
    assert all(not r["images"] for r in parser.table_rows)
    status, _, stderr = run_cli(["screen", folder, "--out", tmp_path / "r2", "--model", model_file,
                                 "--groups_in_full", -1])
    assert status == 2 and "--groups_in_full" in stderr and len(stderr.strip().splitlines()) == 1


def test_screen_bad_inputs_identical_files_and_exit_status(tmp_path, model_file, groups_folder):
    folder, _ = groups_folder
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(folder / "camera_0.png", inputs / "figure.png")
    shutil.copy(folder / "camera_0.png", inputs / "figure_copy.png")  # byte-identical
    shutil.copy(folder / "coins_0.png", inputs / "other.png")
    (inputs / "notes.txt").write_text("not an image")
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    save_gray(inputs / "tiny.png", np.full((40, 50), 0.5))
    (inputs / "empty.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")
    out = tmp_path / "report"
    status, _, stderr = run_cli(["screen", inputs, "--out", out, "--model", model_file])
    assert status == 0
    for name, reason in (("notes.txt", "not an image or PDF"), ("broken.png", "cannot read image header"),
                         ("tiny.png", "smaller than the minimum panel size 64 px"), ("empty.pdf", "")):
        line = [line for line in stderr.splitlines() if name in line]
        assert len(line) == 1 and reason in line[0], stderr
        assert name in (out / "report.html").read_text()
    _, rows = _rows(out / "pairs.csv")
    identical = [r for r in rows if r["relation"] == "identical-file"]
    assert len(identical) == 1 and identical[0]["rank"] == "1"
    assert float(identical[0]["distance"]) == 0.0 and float(identical[0]["combined"]) == 1.0
    assert {identical[0]["a_file"], identical[0]["b_file"]} == {str(inputs / "figure.png"),
                                                              str(inputs / "figure_copy.png")}
    # The copy is screened no further: the only other pair is figure vs other.
    assert {frozenset((r["a_file"], r["b_file"])) for r in rows if r["relation"] != "identical-file"} == {
        frozenset((str(inputs / "figure.png"), str(inputs / "other.png")))}

    # Nothing readable: exit status 1, one clear line.
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.txt").write_text("x")
    (junk / "b.png").write_bytes(b"nope")
    status, _, stderr = run_cli(["screen", junk, "--out", tmp_path / "r2", "--model", model_file])
    assert status == 1
    assert "error: no input could be read" in stderr

    # Usage mistakes: exit status 2 and one line, no traceback.
    status, _, stderr = run_cli(["screen", inputs, "--out", tmp_path / "r3", "--model", tmp_path / "missing"])
    assert status == 2 and "no Siamese model found" in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1
    status, _, stderr = run_cli(["screen", inputs, "--out", tmp_path / "r4", "--model", model_file,
                                 "--split", "sideways"])
    assert status == 2 and "--split" in stderr


def test_identical_files_are_reported_before_any_network_runs(tmp_path, model_file):
    from keras_forensics.screening.model import load_scorer
    from keras_forensics.screening.screener import Screener

    image = skimage_gray("camera")[:128, :128]
    save_gray(tmp_path / "a.png", image)
    shutil.copy(tmp_path / "a.png", tmp_path / "b.png")
    shutil.copy(tmp_path / "a.png", tmp_path / "c.png")
    scorer = load_scorer(model_file)
    embedded = []
    original = scorer.embed_panels
    scorer.embed_panels = lambda panels, **kw: (embedded.extend(panels), original(panels, **kw))[1]
    result = Screener(scorer, progress=False).screen([tmp_path])
    assert len(embedded) == 1  # only a.png reaches the network
    assert [r.relation for r in result] == ["identical-file", "identical-file"]
    assert all(r.distance == 0.0 and r.note.startswith("identical file") for r in result)


def test_similarity_and_compare_contracts(tmp_path, model_file, groups_folder):
    folder, _ = groups_folder
    pairs = tmp_path / "pairs.csv"
    rows = [("camera_0.png", "camera_1.png", "x"), ("camera_0.png", "other_coffee.png", "y"),
            ("camera_0.png", "missing.png", "z")]
    for name in {n for row in rows for n in row[:2] if n != "missing.png"}:
        shutil.copy(folder / name, tmp_path / name)
    with open(pairs, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["a", "b", "label"])
        writer.writerows(rows)
    out = tmp_path / "out" / "scores.csv"
    status, stdout, stderr = run_cli(["similarity", "--pairs", pairs, "--out", out, "--model", model_file])
    assert status == 0 and stdout.strip() == str(out)
    assert "missing.png" in stderr
    fields, scored = _rows(out)
    assert fields == ["a", "b", "label", "distance", "p_same", "same"]
    assert [r["label"] for r in scored] == ["x", "y", "z"]
    assert scored[2]["distance"] == scored[2]["p_same"] == scored[2]["same"] == ""
    for row in scored[:2]:
        distance, p_same = float(row["distance"]), float(row["p_same"])
        assert math.isclose(p_same, 1 / (1 + math.exp(distance - 1)), rel_tol=1e-5)
        assert row["same"] == str(p_same > 0.5)

    status, stdout, _ = run_cli(["compare", tmp_path / "camera_0.png", tmp_path / "camera_1.png", "--model", model_file])
    assert status == 0
    result = json.loads(stdout)
    assert set(result) == {"distance", "p_same", "same"}
    assert math.isclose(result["distance"], float(scored[0]["distance"]), rel_tol=1e-4, abs_tol=1e-6)

    status, _, stderr = run_cli(["similarity", "--pairs", tmp_path / "nope.csv", "--out", out, "--model", model_file])
    assert status == 2 and "no such file" in stderr


def test_python_api_readme_snippet(tmp_path, model_file, groups_folder):
    """The README's snippet, as written there (with an explicit model instead of the shipped one)."""
    source, group_of = groups_folder
    folder = tmp_path / "figures"
    folder.mkdir()
    for name in ("camera_0.png", "camera_1.png", "coins_0.png", "other_coffee.png"):
        shutil.copy(source / name, folder / name)
    from keras_forensics import Screener

    screener = Screener.load(model_file, progress=False)
    pairs = screener.screen([folder], out=tmp_path / "report")
    top = pairs[0]
    assert {top.a.file.split("/")[-1], top.b.file.split("/")[-1]} <= set(group_of)
    assert group_of[top.a.file.split("/")[-1]] == group_of[top.b.file.split("/")[-1]]
    assert (top.rank, top.relation) == (1, "within-paper") and top.combined > 0.9 and top.inliers > 20
    group = pairs.groups[0]  # camera_0 and its 90-degree turn
    assert (group.number, group.best) == (1, top.combined)
    assert {p.file.split("/")[-1] for p in group.members} == {"camera_0.png", "camera_1.png"}
    result = screener.similarity(folder / "camera_0.png", folder / "camera_1.png")
    assert set(result) == {"distance", "p_same", "same"}
    assert (tmp_path / "report" / "report.html").is_file()


def test_small_inputs_verify_every_pair_large_ones_retrieve_first(model_file, groups_folder):
    """Up to verify_all_max pairs every pair is verified (a re-use the network misses is still
    found); above, only the Siamese candidates, with the same scores for the pairs both verify."""
    from keras_forensics.screening.screener import Screener

    folder, group_of = groups_folder
    count = len(group_of) + len(DISTRACTORS)
    every = Screener.load(model_file, progress=False).screen([folder])
    assert every.method == "all pairs" and len(every) == count * (count - 1) // 2
    retrieved = Screener.load(model_file, progress=False, threshold=0.0, neighbours=1,
                              verify_all_max=count * (count - 1) // 2 - 1).screen([folder])
    assert retrieved.method == "exact" and count // 2 <= len(retrieved) < len(every)
    scores = {(r.a.file, r.b.file): r.combined for r in every}
    for record in retrieved:
        assert record.combined == pytest.approx(scores[(record.a.file, record.b.file)], rel=1e-3, abs=1e-5)


def test_model_loading_savedmodel_newest_version_and_errors(tmp_path, model_file):
    import tensorflow as tf

    from keras_forensics.errors import ForensicsError
    from keras_forensics.screening.model import load_scorer

    modules = pytest.importorskip("keras_forensics.serving.modules")
    keras_scorer = load_scorer(model_file)
    base = tmp_path / "saved_models" / "siamese"
    triplet = tiny_triplet_model()
    triplet.load_weights(model_file)
    module = modules.SiameseServing(triplet.get_layer("embedding"), triplet.get_layer("distance"))
    tf.saved_model.save(module, str(base / "2"), signatures=module.concrete_signatures())
    (base / "1").mkdir()  # an older version folder (here empty) is not chosen
    (base / "10").mkdir()  # nor a version folder without a SavedModel
    served = load_scorer(base)
    assert served.source.endswith("/2") and served.embedding is None
    images = np.stack([skimage_gray("camera")[:128, :128], skimage_gray("coins")[:128, :128]])[..., None]
    np.testing.assert_allclose(served.embed(images), keras_scorer.embed(images), atol=1e-5)
    with pytest.raises(ForensicsError, match="no Siamese model found"):
        load_scorer(tmp_path / "nothing")
    (tmp_path / "bad.keras").write_bytes(b"not a zip")
    with pytest.raises(ForensicsError, match="not a Keras .keras file"):
        load_scorer(tmp_path / "bad.keras")


@pytest.mark.skipif(not (ROOT / "saved_models" / "siamese").is_dir(), reason="no shipped Siamese model")
def test_shipped_model_knows_a_turned_recompressed_crop_from_other_cells():
    """The shipped saved_models/siamese on scikit-image's `cell` micrograph: a re-use turned by 90
    degrees, cropped and JPEG-compressed is much nearer than another, non-overlapping field of the
    same cells (measured 1.43 vs 3.02: above the paper's f = 1, which is why `screen` also takes
    each panel's nearest as candidates); 8 orientations never make the re-use look further away."""
    import io as std_io

    from keras_forensics import Screener

    cells = skimage_gray("cell")
    original = cells[:256, :256]
    crop = np.ascontiguousarray(np.rot90(original[20:236, 10:230]))
    buffer = std_io.BytesIO()
    Image.fromarray(np.uint8(np.clip(crop, 0, 1) * 255)).save(buffer, format="JPEG", quality=60)
    reused = np.asarray(Image.open(buffer), np.float32) / 255
    other = cells[-256:, -256:]
    screener = Screener.load(ROOT / "saved_models" / "siamese", progress=False)
    same, different = screener.similarity(original, reused), screener.similarity(original, other)
    assert same["distance"] < 0.7 * different["distance"]
    plain = Screener.load(ROOT / "saved_models" / "siamese", progress=False, turns=False)
    assert plain.similarity(original, reused)["distance"] >= same["distance"]


def test_verifier_coverage_tells_a_reuse_from_a_shared_label():
    """Inliers of a turned, mirrored re-use span the panel; two different panels that carry the
    same panel letter match only in its corner."""
    from keras_forensics.screening.verify import Verifier

    cells = skimage_gray("immunohistochemistry")

    def labelled(image):
        pil = Image.fromarray(np.uint8(np.clip(image, 0, 1) * 255))
        ImageDraw.Draw(pil).text((6, 4), "B", fill=255, font_size=30)
        return np.asarray(pil, np.float32) / 255

    a = labelled(cells[:300, :300])
    reuse = np.ascontiguousarray(np.rot90(a[::-1, :]))
    other = labelled(cells[-300:, -300:])
    verifier = Verifier()
    same = verifier.verify(a, reuse)
    assert same.inliers >= 20 and same.coverage > 0.6 and same.as_dict()["coverage"] == round(same.coverage, 4)
    different = verifier.verify(a, other)
    assert different.coverage < 0.3
    # a match confined to the shared letter is no re-use: rejected, with the reason kept
    if different.coverage < 0.15:
        assert different.inliers == 0 and different.matrix is None and "confined" in different.rejected


def test_verifier_rejects_implausible_transforms_and_keeps_crops():
    """A transform at a scale no re-use has is rejected (inliers 0, the reason kept); a small crop
    of a panel, whose inliers span little of the panel but all of the crop, is kept."""
    from keras_forensics.screening.verify import MIN_COVERAGE, Verification, Verifier, implausible

    assert "scale 0.09" in implausible(Verification(6, 9, matrix=np.array([[0.09, 0, 0], [0, 0.09, 0]]),
                                                    coverage=0.5))
    assert "confined" in implausible(Verification(8, 9, matrix=np.eye(2, 3), coverage=MIN_COVERAGE / 2))
    assert implausible(Verification(30, 40, matrix=np.eye(2, 3), coverage=0.8)) == ""
    cells = skimage_gray("immunohistochemistry")
    panel = cells[:400, :400]
    crop = np.ascontiguousarray(panel[40:140, 200:300])  # 1/16 of the panel's area
    kept = Verifier().verify(panel, crop)
    assert kept.inliers >= 10 and not kept.rejected and kept.coverage > 0.8
