"""Screening PDFs: extraction with pypdf, panel splitting, re-use across pages, broken PDFs."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from screening_helpers import run_cli, skimage_gray, tiny_triplet_model

PANEL = 150  # panel side in the test figure
GUTTER = 30


def _panel(name: str) -> np.ndarray:
    # Kept below the white level so a panel never splits at its own bright pixels.
    return 0.05 + 0.8 * skimage_gray(name)[:PANEL, :PANEL]


def _figure(panels, columns: int) -> tuple[Image.Image, list[tuple[int, int, int, int]]]:
    """White page with panels in a grid; returns the page and each panel's box (x, y, w, h)."""
    rows = int(np.ceil(len(panels) / columns))
    page = np.ones((GUTTER + rows * (PANEL + GUTTER), GUTTER + columns * (PANEL + GUTTER)), np.float32)
    boxes = []
    for number, panel in enumerate(panels):
        r, c = divmod(number, columns)
        y, x = GUTTER + r * (PANEL + GUTTER), GUTTER + c * (PANEL + GUTTER)
        page[y:y + panel.shape[0], x:x + panel.shape[1]] = panel
        boxes.append((x, y, panel.shape[1], panel.shape[0]))
    return Image.fromarray(np.uint8(np.round(page * 255))), boxes


@pytest.fixture(scope="module")
def manuscript(tmp_path_factory):
    """Page 1: a 2x2 figure (camera, coins, cells, astronaut); page 2: coffee and coins rotated 90."""
    folder = tmp_path_factory.mktemp("pdf")
    first, boxes_1 = _figure([_panel(n) for n in ("camera", "coins", "immunohistochemistry", "astronaut")], 2)
    second, boxes_2 = _figure([_panel("coffee"), np.rot90(_panel("coins"))], 2)
    path = folder / "manuscript.pdf"
    first.save(path, save_all=True, append_images=[second], resolution=72)
    return path, boxes_1, boxes_2


def test_pdf_extraction_and_panel_boxes(manuscript):
    from keras_forensics.screening.panels import collect

    path, boxes_1, boxes_2 = manuscript
    collection = collect([path])
    assert not collection.problems
    pages = [(p.page, p.figure) for p in collection.panels]
    assert pages == [(1, 1)] * 4 + [(2, 1)] * 2
    for panel, box in zip(collection.panels, boxes_1 + boxes_2):
        assert np.max(np.abs(np.array(panel.box) - np.array(box))) <= 2, (panel.box, box)


def test_pdf_reuse_found_across_pages(manuscript, tmp_path):
    path, boxes_1, boxes_2 = manuscript
    model = tmp_path / "model.keras"
    tiny_triplet_model().save(model)
    status, _, stderr = run_cli(["screen", path, "--out", tmp_path / "report", "--model", model])
    assert status == 0, stderr
    with open(tmp_path / "report" / "pairs.csv", newline="") as handle:
        top = list(csv.DictReader(handle))[0]
    assert top["relation"] == "within-paper" and int(top["inliers"]) >= 20
    sides = sorted([(top["a_page"], top["a_box"]), (top["b_page"], top["b_box"])])
    (page_a, box_a), (page_b, box_b) = sides
    assert (page_a, page_b) == ("1", "2")
    assert np.max(np.abs(np.array(box_a.split(","), int) - boxes_1[1])) <= 2  # coins on page 1
    assert np.max(np.abs(np.array(box_b.split(","), int) - boxes_2[1])) <= 2  # rotated coins on page 2
    assert "rotate 90.0" in top["transform"] or "rotate -90.0" in top["transform"]
    assert top["a_file"] == top["b_file"] == str(path)


def test_bad_pdfs_are_reported_and_screen_goes_on(manuscript, tmp_path):
    from pypdf import PdfWriter

    from keras_forensics.screening.panels import collect
    from keras_forensics.screening.pdf import PdfError, extract_images

    path, _, _ = manuscript
    encrypted = tmp_path / "encrypted.pdf"
    writer = PdfWriter(clone_from=str(path))
    writer.encrypt("secret", algorithm="RC4-128")
    writer.write(encrypted)
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(path.read_bytes()[:400])
    blank = tmp_path / "blank.pdf"
    writer = PdfWriter()
    writer.add_blank_page(200, 200)
    writer.write(blank)
    with pytest.raises(PdfError, match="encrypted PDF"):
        extract_images(encrypted)
    assert len(extract_images(encrypted, password="secret").images) == 2
    with pytest.raises(PdfError, match="broken or not a PDF"):
        extract_images(broken)
    assert extract_images(blank).images == []

    collection = collect([encrypted, broken, blank, path])
    messages = {p.path.split("/")[-1]: p.message for p in collection.problems}
    assert set(messages) == {"encrypted.pdf", "broken.pdf", "blank.pdf"}
    assert "password" in messages["encrypted.pdf"]
    assert "no embedded images" in messages["blank.pdf"]
    assert len(collection.panels) == 6  # the good PDF is screened in full


def test_split_figure_keeps_panels_of_the_minimum_size():
    from keras_forensics.screening.panels import split_figure

    page = np.ones((200, 300), np.float32)
    page[10:110, 10:90] = 0.3  # 80 x 100: kept
    page[10:60, 150:200] = 0.3  # 50 x 50: too small
    page[120:190, 120:290] = 0.2  # 170 x 70: kept
    page[125:130, 100:125] = 0.0  # a thin mark touching the last panel: merged, then trimmed away
    page[:, 295:] = 0.97  # JPEG-like ringing at the page edge is not a panel
    assert split_figure(page, 64) == [(10, 10, 80, 100), (120, 120, 170, 70)]
    assert split_figure(np.full((100, 100), 0.5, np.float32)) == [(0, 0, 100, 100)]
