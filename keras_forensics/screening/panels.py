"""From what the user hands over (image files, folders, PDFs) to panels with their provenance.

* Byte-identical files are found first, by SHA-256, and reported as identical (distance 0)
  without running any network; only the first copy is screened further.
* PDFs give their embedded images (`pdf.extract_images`); figures are split into panels
  (`split_figure`: connected components of the non-white area, boxes of at least `min_size` px).
* Image files are one panel each, or split like PDF figures with `split="all"`; every page of a
  multi-page TIFF is read (`io.read_pages`) and numbered as a PDF's pages are.
* Everything that cannot be screened (non-images, broken or encrypted PDFs, PDFs without
  images, images smaller than the minimum panel) becomes a `Problem`: one line for the report
  and stderr, while the rest goes on.

Provenance: a panel knows its file, page and image number (PDFs), its box inside that image, its
*figure* (one image: a file, or one embedded image of a PDF) and its *paper* (the PDF, or the
folder holding an image file). Pairs are labelled within-figure, within-paper or across-papers
from these, the three classes of re-use counted by Acuna et al. (bioRxiv 2018).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from keras_forensics.data import io
from keras_forensics.errors import ImageReadError

logger = logging.getLogger(__name__)

#: Panels smaller than this on either side are not screened (the network sees 128x128).
MIN_PANEL_SIZE = 64

#: Gray level above which a pixel counts as page background when splitting a figure.
WHITE_LEVEL = 0.94

SPLIT_MODES = ("pdf", "all", "none")


@dataclasses.dataclass
class Panel:
    """One panel to screen.

    Attributes:
        image: [H, W] float32 in [0, 1].
        file: the file it comes from.
        page, figure: 1-based page and image number inside a PDF or a multi-page TIFF (None for
            other image files).
        box: (x, y, width, height) of the panel inside its figure image, in pixels.
        paper: the document: the PDF, or the folder holding an image file (or an index's record).
        figure_key: unique name of the figure image the panel was cut from.
        key: a short unique name, used for the crop file.
        figure_size: (width, height) of the figure image.
        sha256: the file's SHA-256 digest.
    """

    image: np.ndarray
    file: str
    page: int | None
    figure: int | None
    box: tuple[int, int, int, int]
    paper: str
    figure_key: str
    key: str = ""
    figure_size: tuple[int, int] = (0, 0)  # (width, height) of the figure image
    sha256: str = ""  # of the file

    @property
    def label(self) -> str:
        """Human-readable provenance: `file`, `file p2 img1 [x,y,w,h]`."""
        parts = [self.file]
        if self.page is not None:
            parts.append(f"p{self.page} img{self.figure}")
        if self.page is not None or tuple(self.box[2:]) != tuple(self.figure_size):
            parts.append("[" + ",".join(str(v) for v in self.box) + "]")
        return " ".join(parts)


@dataclasses.dataclass
class Problem:
    """An input (or part of one) that could not be screened, with the reason."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclasses.dataclass
class IdenticalFiles:
    """`copy` has exactly the bytes of `original` (found before any network runs)."""

    original: str
    copy: str
    sha256: str


@dataclasses.dataclass
class Collection:
    panels: list[Panel]
    problems: list[Problem]
    identical: list[IdenticalFiles]
    files_read: int = 0

    @property
    def nothing_readable(self) -> bool:
        return not self.panels and not self.identical


def relation(a: Panel, b: Panel) -> str:
    """within-figure, within-paper or across-papers."""
    if a.figure_key == b.figure_key:
        return "within-figure"
    if a.paper == b.paper:
        return "within-paper"
    return "across-papers"


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# splitting figures


def split_figure(image: np.ndarray, min_size: int = MIN_PANEL_SIZE, white: float = WHITE_LEVEL):
    """Boxes (x, y, w, h) of the panels of a figure on a white background.

    The non-white area (gray < `white`) is cleaned with a 3x3 closing, its 8-connected components
    are boxed, boxes that overlap are merged (a panel with white inside it, a label touching its
    panel), border lines that are mostly near-white are trimmed (JPEG ringing of a figure saved
    as JPEG), and boxes at least `min_size` on both sides are kept, in reading order (top to
    bottom, then left to right). An image without a white background is one panel.
    """
    import cv2

    foreground = (np.asarray(image) < white).astype(np.uint8)
    foreground = cv2.morphologyEx(foreground, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(foreground, connectivity=8)
    boxes = [tuple(int(v) for v in stats[i, :4]) for i in range(1, count)]
    boxes = [_trim(np.asarray(image), box, white - 0.04) for box in _merge_overlapping(boxes)]
    kept = [b for b in boxes if b[2] >= min_size and b[3] >= min_size]
    return sorted(kept, key=lambda b: (b[1] // max(min_size, 1), b[0]))


def _trim(image: np.ndarray, box, level: float):
    """Drop border rows / columns of a box whose median is near white: JPEG ringing around a
    panel on a white page, which the non-white mask includes."""
    x, y, w, h = box
    while h > 1 and np.median(image[y, x:x + w]) >= level:
        y, h = y + 1, h - 1
    while h > 1 and np.median(image[y + h - 1, x:x + w]) >= level:
        h -= 1
    while w > 1 and np.median(image[y:y + h, x]) >= level:
        x, w = x + 1, w - 1
    while w > 1 and np.median(image[y:y + h, x + w - 1]) >= level:
        w -= 1
    return x, y, w, h


def _merge_overlapping(boxes):
    """Union boxes that intersect until none do (a few dozen boxes per figure: cheap)."""
    boxes = list(boxes)
    merged = True
    while merged:
        merged = False
        out = []
        while boxes:
            x, y, w, h = boxes.pop()
            changed = True
            while changed:
                changed = False
                for other in list(boxes):
                    ox, oy, ow, oh = other
                    if x < ox + ow and ox < x + w and y < oy + oh and oy < y + h:
                        nx, ny = min(x, ox), min(y, oy)
                        w, h = max(x + w, ox + ow) - nx, max(y + h, oy + oh) - ny
                        x, y = nx, ny
                        boxes.remove(other)
                        changed = merged = True
            out.append((x, y, w, h))
        boxes = out
    return boxes


# ---------------------------------------------------------------------------------------------
# collecting inputs


def expand_inputs(inputs: Iterable[str | os.PathLike], problems: list[Problem]) -> list[Path]:
    """Files to screen: the given files, and every non-hidden file below given folders.

    Folder entries that are neither images (by suffix) nor PDFs become problems, and so do
    broken symbolic links, link loops, links to folders (not followed, as a folder walk does not
    follow them) and entries that are not regular files; explicitly named files are judged by
    their content later.
    """
    from keras_forensics.screening.pdf import is_pdf

    files = []
    for entry in inputs:
        path = Path(entry)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if any(p.startswith(".") for p in child.relative_to(path).parts):
                    continue
                name = io.display_path(child)
                if (reason := io.link_problem(child)) is not None:
                    problems.append(Problem(name, reason))
                elif child.is_dir():
                    if child.is_symlink():
                        problems.append(Problem(name, "symbolic link to a folder, not followed (name that folder "
                                                      "as an INPUT to screen it)"))
                elif not child.is_file():
                    problems.append(Problem(name, "not a regular file (a socket, pipe or device)"))
                elif child.suffix.lower() in io.IMAGE_SUFFIXES or is_pdf(child):
                    files.append(child)
                else:
                    problems.append(Problem(name, "not an image or PDF file"))
        elif path.is_file():
            files.append(path)
        else:
            problems.append(Problem(io.display_path(path), io.link_problem(path) or "no such file or folder"))
    unique, seen = [], set()
    for path in files:
        resolved = path.resolve()
        if resolved not in seen:
            seen.add(resolved)
            unique.append(path)
    return unique


def collect(inputs, split: str = "pdf", min_size: int = MIN_PANEL_SIZE, progress: bool = False,
            skip_sha256: Iterable[str] = (), max_pixels: int = io.DEFAULT_MAX_PIXELS) -> Collection:
    """Panels, problems and identical files of the inputs (see the module docstring).

    Args:
        inputs: files and folders (recursive), any mix of images and PDFs.
        split: "pdf" splits PDF figures into panels, "all" also image files, "none" nothing.
        min_size: smallest panel side in pixels.
        progress: show a progress bar over files.
        skip_sha256: digests of files already handled elsewhere (e.g. already in an index).
        max_pixels: an image (or PDF image, or TIFF page) above this many pixels is a problem.
    """
    from tqdm.auto import tqdm

    from keras_forensics.screening.pdf import PdfError, extract_images, is_pdf

    if split not in SPLIT_MODES:
        from keras_forensics.errors import ForensicsError

        raise ForensicsError(f"--split must be one of {', '.join(SPLIT_MODES)}, got {split!r}")
    problems: list[Problem] = []
    files = expand_inputs(inputs, problems)
    collection = Collection([], problems, [])
    first_of: dict[str, str] = {}
    skip_sha256 = set(skip_sha256)
    for path in tqdm(files, desc="reading inputs", unit="file", disable=not progress, leave=False):
        name = io.display_path(path)  # what the report shows and pairs.csv holds
        try:
            digest = sha256_of(path)
        except OSError as error:
            problems.append(Problem(name, f"cannot read ({error.strerror or error})"))
            continue
        if digest in first_of:
            collection.identical.append(IdenticalFiles(first_of[digest], name, digest))
            continue
        first_of[digest] = name
        if digest in skip_sha256:
            continue
        before = len(collection.panels)
        if is_pdf(path):
            try:
                extracted = extract_images(path, max_pixels=max_pixels)
            except PdfError as error:
                problems.append(Problem(name, error.reason))
                continue
            collection.files_read += 1
            problems.extend(Problem(name, message) for message in extracted.problems)
            if not extracted.images and not extracted.problems:
                problems.append(Problem(name, f"PDF has no embedded images ({extracted.pages} page(s)); "
                                               "nothing to screen"))
            for item in extracted.images:
                where = f"page {item.page} image {item.index}"
                collection.panels.extend(_figure_panels(
                    item.image, name, item.page, item.index, name, f"{name}#p{item.page}i{item.index}",
                    split in ("pdf", "all"), min_size, problems, where))
        else:
            try:
                pages = io.read_pages(path, max_pixels=max_pixels)
            except ImageReadError as error:
                problems.append(Problem(name, error.reason))
                continue
            collection.files_read += 1
            folder = io.display_path(path.parent)
            if len(pages) == 1 and pages[0].image is not None:  # the usual one-image file
                collection.panels.extend(_figure_panels(pages[0].image, name, None, None, folder, name,
                                                        split == "all", min_size, problems, "image"))
            else:  # a multi-page TIFF: every page, numbered as a PDF's
                for page in pages:
                    if page.image is None:
                        problems.append(Problem(name, f"page {page.number}: {page.problem}"))
                        continue
                    collection.panels.extend(_figure_panels(
                        page.image, name, page.number, page.index, folder, f"{name}#p{page.number}i{page.index}",
                        split == "all", min_size, problems, f"page {page.number} image {page.index}"))
        for panel in collection.panels[before:]:
            panel.sha256 = digest
    for index, panel in enumerate(collection.panels):
        panel.key = f"{index:05d}_{_slug(panel)}"
    return collection


def _figure_panels(image, file, page, figure, paper, figure_key, split, min_size, problems, where):
    height, width = image.shape
    if height < min_size or width < min_size:
        problems.append(Problem(file, f"{where} is {width}x{height} px, smaller than the minimum panel "
                                      f"size {min_size} px"))
        return []
    boxes = split_figure(image, min_size) if split else []
    if not boxes:
        boxes = [(0, 0, width, height)]
    return [Panel(image[y:y + h, x:x + w].copy(), file, page, figure, (x, y, w, h), paper, figure_key,
                  figure_size=(width, height))
            for x, y, w, h in boxes]


def _slug(panel: Panel) -> str:
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(panel.file).stem)[:40]
    if panel.page is not None:
        stem += f"_p{panel.page}i{panel.figure}"
    return stem + f"_{panel.box[0]}x{panel.box[1]}"
