"""Images embedded in a PDF, with pypdf (BSD licensed; no AGPL dependency).

`extract_images(path)` returns every image XObject (and inline image) of every page, decoded to
float32 grayscale like any other file (`keras_forensics.data.io.decode_image_bytes`), with its page
and its position in the page's image list. A PDF that cannot be screened at all (encrypted with a
password, broken, not a PDF) raises `PdfError` with a one-line reason; a single unreadable image
or page is recorded in `PdfImages.problems` and the rest of the file goes on.

Positions on the page are not needed: a panel is identified by file, page, image number and its
box inside that image, which is what a reader needs to find it again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from pathlib import Path

import numpy as np

from keras_forensics.data.io import DEFAULT_MAX_PIXELS, decode_image_bytes
from keras_forensics.errors import ForensicsError, ImageReadError


class PdfError(ForensicsError):
    """A PDF that cannot be read at all. The message names the file."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclasses.dataclass
class PdfImage:
    """One embedded image: page and index are 1-based, as a reader counts them."""

    page: int
    index: int
    name: str
    image: np.ndarray  # [H, W] float32 in [0, 1]


@dataclasses.dataclass
class PdfImages:
    images: list[PdfImage]
    pages: int
    problems: list[str]  # one line per image or page that could not be read


@contextlib.contextmanager
def _quiet_pypdf():
    """pypdf logs a warning for every repairable defect; the caller reports what matters."""
    pypdf_logger = logging.getLogger("pypdf")
    level = pypdf_logger.level
    pypdf_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        pypdf_logger.setLevel(level)


def is_pdf(path: str | os.PathLike) -> bool:
    """True for a .pdf suffix or a file starting with the PDF header."""
    path = Path(path)
    if path.suffix.lower() == ".pdf":
        return True
    try:
        with open(path, "rb") as handle:
            return handle.read(5) == b"%PDF-"
    except OSError:
        return False


def extract_images(path: str | os.PathLike, password: str = "", max_pixels: int = DEFAULT_MAX_PIXELS) -> PdfImages:
    """Every embedded image of a PDF, page by page.

    Args:
        path: the PDF file.
        password: tried when the file is encrypted ("" opens files that only restrict
            printing or copying, which is most encrypted journal PDFs).
        max_pixels: an image above this many pixels is a problem, not an image.

    Raises:
        PdfError: the file is encrypted with another password, broken beyond repair, or not a
            PDF. (A PDF without images is not an error: `images` is empty.)
    """
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, PyPdfError

    path = Path(path)
    with _quiet_pypdf():
        try:
            reader = PdfReader(str(path))
            if reader.is_encrypted:
                try:
                    opened = reader.decrypt(password)
                except DependencyError as error:
                    raise PdfError(path, f"encrypted PDF; decrypting it needs an extra package ({error})") from None
                if not opened:
                    raise PdfError(path, "encrypted PDF (a password is required to open it)")
            pages = reader.pages
            page_count = len(pages)
        except PdfError:
            raise
        except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError) as error:
            raise PdfError(path, f"broken or not a PDF ({type(error).__name__}: {error})") from None
        images, problems = [], []
        for page_number in range(1, page_count + 1):
            try:
                page_images = pages[page_number - 1].images
                names = list(page_images.keys())
            except Exception as error:  # pypdf raises many types on damaged pages
                problems.append(f"page {page_number}: cannot list its images ({type(error).__name__}: {error})")
                continue
            for index, name in enumerate(names, start=1):
                where = f"page {page_number} image {index}"
                try:
                    image_file = page_images[name]
                    pixels = _decode(image_file, f"{path} {where}", max_pixels)
                except ImageReadError as error:
                    problems.append(f"{where}: {error.reason}")
                    continue
                except Exception as error:  # a damaged stream: report it, keep the other images
                    problems.append(f"{where}: cannot decode ({type(error).__name__}: {error})")
                    continue
                images.append(PdfImage(page_number, index, str(name), pixels))
    return PdfImages(images, page_count, problems)


def _decode(image_file, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The image's encoded bytes through the package's decoder; Pillow's object as a fallback
    (pypdf hands out formats such as JPEG 2000 or CMYK JPEG that it already decoded)."""
    import io

    try:
        return decode_image_bytes(image_file.data, name, max_pixels=max_pixels)
    except ImageReadError:
        pil = image_file.image
        if pil is None:
            raise
        buffer = io.BytesIO()
        pil.convert("RGBA" if "A" in pil.mode else "RGB").save(buffer, format="PNG")
        return decode_image_bytes(buffer.getvalue(), name, max_pixels=max_pixels)
