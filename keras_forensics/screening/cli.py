"""The screening commands of `python -m keras_forensics`: registered as they are by
keras_forensics/__main__.py, so these signatures and docstrings are the commands' `--help`.
This module imports only NumPy and the standard library at the top; TensorFlow and the rest load
when a command runs.

    similarity --pairs PAIRS.csv [--model M] --out OUT.csv
    compare IMG_A IMG_B [--model M]                       (prints JSON)
    screen INPUT... --out REPORT_DIR [--threshold 1.0] [--index DIR] [--groups_in_full 50]
    index build INPUT... --out INDEX_DIR
    index add INPUT... --index INDEX_DIR

Exit status: 0 when the command completed (screen: even if some inputs were skipped, each with a
line on stderr and in the report); 1 when screen could read no input at all; 2 for a usage
mistake (missing model, bad flag, unreadable PAIRS.csv).
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from pathlib import Path


from keras_forensics.errors import ForensicsError, ImageReadError

#: Columns `similarity` adds to PAIRS.csv (a contract).
SIMILARITY_COLUMNS = ("distance", "p_same", "same")


class _StderrLines(logging.Handler):
    """`warning: ...` lines on whatever sys.stderr is when the record is emitted."""

    def emit(self, record):
        print(f"{record.levelname.lower()}: {record.getMessage()}", file=sys.stderr)


def _warnings_to_stderr() -> None:
    """Skipped inputs and other warnings of the package as one line each on stderr."""
    package = logging.getLogger("keras_forensics")
    if not any(isinstance(h, _StderrLines) for h in package.handlers):
        package.addHandler(_StderrLines(logging.WARNING))


def _inputs(inputs) -> list[str]:
    """fire passes one INPUT as a string and several as a tuple; a comma list also works."""
    if isinstance(inputs, (str, Path)):
        return [str(inputs)]
    flat = []
    for item in inputs:
        flat.extend(_inputs(item) if isinstance(item, (list, tuple)) else [str(item)])
    return flat


def similarity(pairs: str, out: str, model: str | None = None, batch_size: int = 64, turns: bool = True,
               max_pixels: int | None = None) -> str:
    """Score the pairs of PAIRS.csv (columns a, b: image paths relative to the CSV's folder).

    OUT.csv is PAIRS.csv (extra columns carried through) plus distance, p_same = sigmoid(1 -
    distance) and same (p_same > 0.5). Each distinct image is embedded once. A row whose image
    cannot be read keeps empty scores, with a line on stderr. --model: saved_models/siamese
    (default), a SavedModel, a run dir or a .keras file. The distance is the smallest over a's 8
    orientations (quarter turns, mirrored) against b; --noturns: the network's distance of the
    two as they are (what TF-Serving's `similarity` gives). --max_pixels N: images above N pixels
    are refused before decoding (default 100,000,000).
    """
    from keras_forensics.data.io import pixel_limit, read_image
    from keras_forensics.screening.model import load_scorer

    _warnings_to_stderr()
    max_pixels = pixel_limit(max_pixels)
    pairs_path = Path(pairs)
    if not pairs_path.is_file():
        raise ForensicsError(f"--pairs {pairs}: no such file")
    try:
        with open(pairs_path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            fields = list(reader.fieldnames or [])
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as error:
        raise ForensicsError(f"--pairs {pairs}: not a readable CSV file ({error})") from None
    missing = [c for c in ("a", "b") if c not in fields]
    if missing:
        raise ForensicsError(f"--pairs {pairs}: missing column(s) {', '.join(missing)} (it has {', '.join(fields)})")
    scorer = load_scorer(model)
    base = pairs_path.parent
    images, position, unreadable = [], {}, {}
    for row in rows:
        for column in ("a", "b"):
            name = (row.get(column) or "").strip()
            if name in position or name in unreadable:
                continue
            try:
                if not name:
                    raise ImageReadError(f"(empty {column})", "no path given")
                images.append(read_image(base / name, max_pixels=max_pixels))
                position[name] = len(images) - 1
            except ImageReadError as error:
                unreadable[name] = str(error)
                print(f"warning: {error}", file=sys.stderr)
    vectors = scorer.embed_panels(images, batch_size=batch_size, oriented=turns and not scorer.invariant)
    for row in rows:
        a, b = (row.get("a") or "").strip(), (row.get("b") or "").strip()
        if a in position and b in position:
            distance = scorer.pair_distance(vectors[position[a]], vectors[position[b]])
            p_same = float(scorer.p_same(distance))
            row.update(distance=f"{distance:.6f}", p_same=f"{p_same:.6f}", same=str(p_same > 0.5))
        else:
            row.update(distance="", p_same="", same="")
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(out_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=[f for f in fields if f not in SIMILARITY_COLUMNS]
                                + list(SIMILARITY_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    return str(out_path)


def compare(image_a: str, image_b: str, model: str | None = None, turns: bool = True,
            max_pixels: int | None = None) -> None:
    """Compare two images with the Siamese network; prints JSON {distance, p_same, same}: the
    smallest distance over A's 8 orientations (quarter turns, mirrored) against B (--noturns: as
    they are). --max_pixels N: images above N pixels are refused before decoding (default
    100,000,000)."""
    from keras_forensics.screening.screener import Screener, check_options

    check_options(max_pixels=max_pixels)  # before the model loads
    result = Screener.load(model, progress=False, turns=turns, max_pixels=max_pixels).similarity(image_a, image_b)
    print(json.dumps(result))


def screen(*inputs, out: str, threshold: float | None = None, index: str | None = None, model: str | None = None,
           calibration: str | None = None, neighbours: int = 10, split: str = "pdf", min_panel_size: int = 64,
           method: str = "auto", exact_max: int = 5000, verify_all_max: int = 20000, verify: bool = True,
           turns: bool = True, groups_in_full: int = 50, normalise: bool = False,
           max_pixels: int | None = None) -> str:
    """Screen image files, folders (recursive) and PDFs for re-used panels; write REPORT_DIR.

    REPORT_DIR gets pairs.csv (rank, a, b, distance, p_same, inliers, transform, combined,
    relation, a_file, a_page, a_box, b_file, b_page, b_box, note, group), panels/ (the crops) and
    report.html: one card per group of re-used panels (confirmed pairs joined), its members
    aligned to one reference; the first --groups_in_full groups (default 50) with pictures, the
    rest in a table; under 10 MB whatever the input (pairs.csv has every pair). Up to
    --verify_all_max pairs (default 20,000: about 200 panels), every pair is verified with
    keypoints (SIFT + RANSAC); above, only the shortlist: each panel's --neighbours (default 10)
    nearest panels, plus pairs within --threshold when one is given (off by default). Pairs are
    ranked by the calibrated combined score. --index INDEX_DIR also compares each panel with its
    --neighbours nearest indexed panels.
    --split pdf|all|none: which figures are split into panels. --method auto|exact|flat|hnsw
    (auto: exact up to --exact_max panels, FAISS flat up to 100,000, then FAISS HNSW). Panels are
    compared in all 8 orientations (quarter turns, mirrored), unless the model's embedding is
    invariant to them; --noturns: as they are. --normalise: distances normalised against the
    model's background set of unrelated panels (SSCD score normalisation: a panel that is close
    to everything is pushed away); off by default, as it ranked re-uses worse on the validation
    archive (README, "Archive"); an --index must have been built the same way. --max_pixels N: an image (a PDF image, a TIFF
    page) above N pixels is skipped with a message before it is decoded (default 100,000,000).
    Exit status 0 when the screen completed (skipped inputs are listed), 1 if no input was
    readable.
    """
    from keras_forensics.data.io import check_output_folder
    from keras_forensics.screening.screener import NothingToScreen, Screener, check_options

    _warnings_to_stderr()
    paths = _inputs(inputs)
    if not paths:
        raise ForensicsError("screen needs at least one INPUT (image files, folders or PDFs)")
    check_output_folder(out)
    options = dict(threshold=threshold, neighbours=neighbours, split=split, min_panel_size=min_panel_size,
                   exact_max=exact_max, verify_all_max=verify_all_max, verify=verify, turns=turns,
                   max_pixels=max_pixels)
    check_options(**options, groups_in_full=groups_in_full)  # before the model loads: a bad flag costs nothing
    screener = Screener.load(model, calibration, normalise=normalise, **options)
    try:
        result = screener.screen(paths, out=out, index=index, method=method, groups_in_full=groups_in_full)
    except NothingToScreen as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    suspects = sum(r.same for r in result)
    print(f"{len(result.panels)} panel(s), {len(result)} candidate pair(s), {suspects} suspected in "
          f"{len(result.groups)} group(s); {len(result.problems)} input(s) skipped", file=sys.stderr)
    return str(Path(out) / "report.html")


class index:  # noqa: N801 - the command's name on the command line
    """Embed a corpus once, to screen new manuscripts against it: `index build` / `index add`."""

    def build(self, *inputs, out: str, model: str | None = None, kind: str = "hnsw", split: str = "pdf",
              min_panel_size: int = 64, max_pixels: int | None = None, normalise: bool = False) -> dict:
        """Embed every panel of INPUT... (files, folders, PDFs) into a new index at --out.

        --kind hnsw (approximate, scales to large corpora) or flat (exact). --max_pixels N: images
        above N pixels are skipped with a message (default 100,000,000). --normalise: rows for
        `screen --normalise` (the model's background set; see `screen --help`).
        """
        from keras_forensics.screening import index as index_lib
        from keras_forensics.screening.model import load_scorer
        from keras_forensics.screening.screener import check_options

        _warnings_to_stderr()
        check_options(min_panel_size=min_panel_size, max_pixels=max_pixels)
        result = index_lib.build(_inputs(inputs), out, load_scorer(model), kind=kind, split=split,
                                 min_size=min_panel_size, max_pixels=max_pixels, normalise=normalise)
        return _index_summary(result)

    def add(self, *inputs, index: str, model: str | None = None, split: str = "pdf",
            min_panel_size: int = 64, max_pixels: int | None = None) -> dict:
        """Embed the panels of INPUT... into the existing index --index (files already indexed are
        skipped). --max_pixels N: as `index build`."""
        from keras_forensics.screening import index as index_lib
        from keras_forensics.screening.model import load_scorer
        from keras_forensics.screening.screener import check_options

        _warnings_to_stderr()
        check_options(min_panel_size=min_panel_size, max_pixels=max_pixels)
        result = index_lib.add(_inputs(inputs), index, load_scorer(model), split=split, min_size=min_panel_size,
                               max_pixels=max_pixels)
        return _index_summary(result)


def _index_summary(result: dict) -> dict:
    for problem in result.pop("problems"):
        print(f"warning: skipped {problem}", file=sys.stderr)
    return result
