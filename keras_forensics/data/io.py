"""Reading images from disk: validated float32 grayscale in [0, 1], or one clear error naming the file.

Every entry point that reads a user's file goes through `read_image`, so a corrupt, truncated,
empty, oversized or exotic file gives the same one-line message everywhere, and a folder scan
(`scan_images`) skips such files with a warning and a count instead of stopping.

Supported: PNG, JPEG, BMP, GIF, WebP (Pillow) and TIFF (tifffile: 8/16/32-bit, float, multi-page,
multi-channel; `read_image` gives a multi-page TIFF's first page, `read_pages` every page, which
is what `screen` reads). Colour is reduced to luminance with the ITU-R BT.601 weights that
`tf.image.rgb_to_grayscale` uses, so a file read here and bytes decoded inside a serving graph give
the same pixels. Transparent pixels are composited over white, as a reader sees them on a page.
`read_image(path, color=True)` keeps colour instead ([H, W, 3]; the GANs' RGB data), with
16-bit PNG and TIFF samples at full precision.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import warnings
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from PIL import Image

from keras_forensics.errors import ForensicsError, ImageReadError

logger = logging.getLogger(__name__)

#: Default decompression-bomb limit: 100 million pixels per plane (10,000 x 10,000), far above any
#: figure panel. Decoding costs about 14 bytes a pixel at its peak (the file's samples, float32 gray
#: and the copies on the way): a 351 KB PNG of 19,000 x 19,000 px took 5 GB under the earlier
#: 400 Mpx limit. The commands that read images take --max_pixels to raise it.
DEFAULT_MAX_PIXELS = 100_000_000

#: Luminance weights of tf.image.rgb_to_grayscale (BT.601).
LUMA_WEIGHTS = np.array([0.2989, 0.5870, 0.1140], dtype=np.float32)

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp"}
)
_TIFF_SUFFIXES = frozenset({".tif", ".tiff"})
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def read_image(
    path: str | os.PathLike,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    all_planes: bool = False,
    color: bool = False,
) -> np.ndarray:
    """Read one image file as float32 grayscale in [0, 1].

    Args:
        path: the file. Its content decides the format, not its suffix.
        max_pixels: refuse planes with more pixels than this before decoding them (decompression
            bombs).
        all_planes: for multi-page / multi-plane TIFFs, return every plane as [P, H, W] instead of
            only the first as [H, W]. Other formats give [1, H, W] with this flag.
        color: return RGB [H, W, 3] (or [P, H, W, 3]) instead of luminance; grayscale files give
            three equal channels.

    Returns:
        [H, W] float32 (or [P, H, W] with `all_planes`; a trailing 3 with `color`).

    Raises:
        ImageReadError: the file is missing, empty, not an image, truncated, too large, or has a
            layout this function does not understand. The message names the file.
    """
    path = Path(path)
    head = _file_head(path)
    if head[:4] in _TIFF_MAGIC:
        planes = _read_tiff(path, max_pixels, all_planes, color=color)
    elif color and _png_bit_depth(head) == 16 and head[25] in (2, 6):
        planes = _read_png16_color(path, head, max_pixels)  # Pillow would drop 8 of the 16 bits
    else:
        planes = _read_pillow(path, max_pixels, all_planes, color=color)
    return planes if all_planes else planes[0]


def _file_head(path: Path) -> bytes:
    """The first bytes of an image file (enough for the PNG header), or ImageReadError."""
    if not path.exists():
        raise ImageReadError(path, "no such file")
    if path.is_dir():
        raise ImageReadError(path, "is a folder, not an image file")
    try:
        with open(path, "rb") as handle:
            head = handle.read(_PNG_HEADER_SIZE)
    except OSError as error:
        raise ImageReadError(path, f"cannot open ({error.strerror or error})") from None
    if not head:
        raise ImageReadError(path, "empty file")
    return head


@dataclasses.dataclass
class Page:
    """One page of an image file (`read_pages`): its number and image number are 1-based, as a
    reader counts them (a page has several images only when its samples are not RGB(A) colour)."""

    number: int
    index: int
    image: np.ndarray | None  # [H, W] float32 in [0, 1]; None when the page could not be read
    problem: str = ""  # why it could not be read


def read_pages(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> list[Page]:
    """Every page of an image file, each as `read_image` reads a file ([H, W] float32 gray).

    A multi-page TIFF gives each page (IFD) in file order, whether tifffile sees one series of
    pages (a stack written at once) or one series per page (pages written one by one, or of
    different sizes); reduced-resolution pages (thumbnails, pyramid levels of a page) are left
    out. A page that cannot be read (too large, corrupt) is a `Page` with its `problem`, and the
    other pages are still read. Every other file is one page.

    Raises:
        ImageReadError: the file itself cannot be read (as `read_image`).
    """
    path = Path(path)
    if _file_head(path)[:4] not in _TIFF_MAGIC:
        return [Page(1, 1, read_image(path, max_pixels=max_pixels))]
    import tifffile

    pages = []
    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.pages:
                raise ImageReadError(path, "TIFF file has no pages")
            for number in range(1, len(tif.pages) + 1):
                try:
                    page = tif.pages[number - 1]
                    if page.is_reduced:
                        continue
                    spatial = _tiff_spatial_size(page.shape, page.axes)
                    if spatial is None:
                        raise ImageReadError(path, f"unsupported TIFF layout (shape {page.shape}, axes "
                                                   f"{page.axes!r})")
                    _check_size(path, spatial[1], spatial[0], max_pixels)
                    planes = _tiff_to_planes(np.asarray(page.asarray()), page.axes, path)
                except ImageReadError as error:
                    pages.append(Page(number, 1, None, error.reason))
                    continue
                except Exception as error:  # tifffile raises many types for a corrupt page
                    pages.append(Page(number, 1, None, f"corrupt or unreadable TIFF page ({type(error).__name__}: "
                                                       f"{error})"))
                    continue
                pages.extend(Page(number, index, plane) for index, plane in enumerate(planes, start=1))
            if not pages:
                raise ImageReadError(path, "TIFF file has reduced-resolution pages only")
    except ImageReadError:
        raise
    except Exception as error:  # tifffile raises many types for corrupt files
        raise ImageReadError(path, f"corrupt or unreadable TIFF ({type(error).__name__}: {error})") from None
    return pages


def file_bit_depth(path) -> int:
    """16 for image files with more than 8 bits per sample (16-bit or float PNG / TIFF), else 8;
    from the header only."""
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(_PNG_HEADER_SIZE)
    if head[:4] in _TIFF_MAGIC:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            dtype = tif.pages[0].dtype
        return 8 if dtype is not None and np.dtype(dtype).itemsize == 1 else 16
    if _png_bit_depth(head):
        return 16 if _png_bit_depth(head) == 16 else 8
    with Image.open(path) as image:
        return 16 if image.mode.startswith("I") or image.mode == "F" else 8


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_HEADER_SIZE = 26  # signature, IHDR length and type, width, height, bit depth, colour type


def _png_bit_depth(head: bytes) -> int | None:
    """The bit depth in a PNG's IHDR chunk (the first 26 bytes of the file), None if not a PNG."""
    if len(head) < _PNG_HEADER_SIZE or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        return None
    return head[24]


def _read_png16_color(path: Path, head: bytes, max_pixels) -> np.ndarray:
    """A 16-bit RGB(A) PNG as [1, H, W, 3] with every bit (Pillow reduces these to 8 bits)."""
    import tensorflow as tf

    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    _check_size(path, width, height, max_pixels)
    try:
        data = tf.io.decode_png(path.read_bytes(), channels=0, dtype=tf.uint16).numpy()
    except (tf.errors.InvalidArgumentError, OSError) as error:
        raise ImageReadError(path, f"corrupt or truncated PNG ({error})") from None
    return _rgb_over_white(data.astype(np.float32) / 65535.0)[None]


def _rgb_over_white(array: np.ndarray) -> np.ndarray:
    """[..., 3 or 4] in [0, 1] -> [..., 3] float32, transparency composited over white."""
    rgb = array[..., :3]
    if array.shape[-1] == 4:
        alpha = array[..., 3:]
        rgb = rgb * alpha + (1.0 - alpha)
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)


def decode_image_bytes(data: bytes, name: str = "<bytes>", *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """`read_image` for bytes already in memory (uploads, PDF images). Returns [H, W] float32."""
    import io as _io

    if not data:
        raise ImageReadError(name, "empty file")
    if data[:4] in _TIFF_MAGIC:
        return _read_tiff(_io.BytesIO(data), max_pixels, False, name=name)[0]
    return _read_pillow(_io.BytesIO(data), max_pixels, False, name=name)[0]


def _read_pillow(source, max_pixels, all_planes, name=None, color: bool = False) -> np.ndarray:
    name = name or source
    try:
        image = _open_header(source)
    except Image.UnidentifiedImageError:
        raise ImageReadError(name, "not an image file (unrecognised format)") from None
    except OSError as error:
        raise ImageReadError(name, f"cannot read image header ({error})") from None
    with image:
        width, height = image.size
        _check_size(name, width, height, max_pixels)
        planes = []
        frames = getattr(image, "n_frames", 1) if all_planes else 1
        for frame in range(frames):
            try:
                if frame:
                    image.seek(frame)
                image.load()
                planes.append(_pillow_to_rgb(image, name) if color else _pillow_to_gray(image, name))
            except ImageReadError:
                raise
            except (OSError, SyntaxError, ValueError) as error:
                raise ImageReadError(name, f"corrupt or truncated image data ({error})") from None
    return np.stack(planes)


def _open_header(source) -> Image.Image:
    """`Image.open` (which reads the header only), with this module's per-call `max_pixels` in place
    of Pillow's decompression-bomb limit: the caller checks the size (`_check_size`) before any
    pixel is decoded.

    Pillow's limit is process-wide (`Image.MAX_IMAGE_PIXELS`) and is never changed here, since
    other threads read images at the same time. Above twice that limit Pillow refuses to open the
    file; the header is then read by the format's own plugin, which is what `Image.open` does
    before its check.
    """
    with warnings.catch_warnings():
        # Pillow's own bomb warning is replaced by the caller's explicit limit.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            return Image.open(source)
        except Image.DecompressionBombError:
            pass
    is_path = isinstance(source, (str, os.PathLike))
    if is_path:
        with open(source, "rb") as handle:
            prefix = handle.read(16)
    else:
        source.seek(0)
        prefix = source.read(16)
    Image.init()
    for format_id in Image.ID:
        factory, accept = Image.OPEN[format_id]
        if accept and not accept(prefix):
            continue
        try:
            if is_path:  # the plugin opens (and the image later closes) the file itself
                return factory(os.fspath(source))
            source.seek(0)
            return factory(source, "")
        except (SyntaxError, IndexError, TypeError, ValueError, OSError):
            continue
    raise Image.UnidentifiedImageError(f"cannot identify image file {source!r}")


def pixel_limit(max_pixels=None, flag: str = "--max_pixels") -> int:
    """The limit a command's `flag` sets: `DEFAULT_MAX_PIXELS` when it is None; ForensicsError
    naming the flag for anything but a whole number >= 1 (checked before any work)."""
    if max_pixels is None:
        return DEFAULT_MAX_PIXELS
    if not isinstance(max_pixels, (int, np.integer)) or isinstance(max_pixels, bool) or max_pixels < 1:
        raise ForensicsError(f"{flag} must be a whole number >= 1, got {max_pixels!r}")
    return int(max_pixels)


def _check_size(name, width: int, height: int, max_pixels: int) -> None:
    """Refuse empty planes and planes over the pixel limit, from the header alone."""
    if width < 1 or height < 1:
        raise ImageReadError(name, f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageReadError(
            name,
            f"image is {width}x{height} = {width * height:,} pixels, above the limit of {max_pixels:,} "
            f"(a decompression bomb, or a genuine image: then pass --max_pixels {width * height} or more)",
        )


def _pillow_to_gray(image: Image.Image, name) -> np.ndarray:
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("1", "L"):
        return np.asarray(image, dtype=np.float32) / (1.0 if mode == "1" else 255.0)
    if mode == "LA":
        array = np.asarray(image, dtype=np.float32) / 255.0
        return _composite_over_white(array[..., 0], array[..., 1])
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(image, dtype=np.uint16).astype(np.float32) / 65535.0
    if mode == "I":
        return _scale_to_unit(np.asarray(image), name)
    if mode == "F":
        return _scale_to_unit(np.asarray(image, dtype=np.float32), name)
    if mode in ("RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa", "La", "PA"):
        if mode not in ("RGB", "RGBA"):
            image = image.convert("RGBA" if "A" in mode or "a" in mode else "RGB")
        array = np.asarray(image, dtype=np.float32) / 255.0
        gray = array[..., :3] @ LUMA_WEIGHTS
        if array.shape[-1] == 4:
            gray = _composite_over_white(gray, array[..., 3])
        return np.clip(gray, 0.0, 1.0).astype(np.float32)
    raise ImageReadError(name, f"unsupported pixel layout (Pillow mode {mode!r})")


def _pillow_to_rgb(image: Image.Image, name) -> np.ndarray:
    """[H, W, 3] float32; grayscale modes (at their full bit depth) give three equal channels."""
    mode = image.mode
    if mode in ("1", "L", "LA", "I", "F") or mode.startswith("I;16"):
        return np.repeat(_pillow_to_gray(image, name)[..., None], 3, axis=-1)
    if mode not in ("RGB", "RGBA"):
        transparent = "A" in mode or "a" in mode or "transparency" in image.info
        image = image.convert("RGBA" if transparent else "RGB")
    return _rgb_over_white(np.asarray(image, dtype=np.float32) / 255.0)


def _read_tiff(source, max_pixels, all_planes, name=None, color: bool = False) -> np.ndarray:
    import tifffile

    name = name or source
    try:
        with tifffile.TiffFile(source) as tif:
            if not tif.pages:
                raise ImageReadError(name, "TIFF file has no pages")
            series = tif.series[0]
            shape, axes = series.shape, series.axes
            spatial = _tiff_spatial_size(shape, axes)
            if spatial is None:
                raise ImageReadError(name, f"unsupported TIFF layout (shape {shape}, axes {axes!r})")
            height, width = spatial
            _check_size(name, width, height, max_pixels)
            if all_planes:
                data = series.asarray()
            else:
                data = tif.pages[0].asarray()
                shape, axes = data.shape, tif.pages[0].axes
    except ImageReadError:
        raise
    except Exception as error:  # tifffile raises many types for corrupt files
        raise ImageReadError(name, f"corrupt or unreadable TIFF ({type(error).__name__}: {error})") from None
    return _tiff_to_planes(np.asarray(data), axes, name, color)


def _tiff_spatial_size(shape, axes):
    if "Y" in axes and "X" in axes:
        return shape[axes.index("Y")], shape[axes.index("X")]
    return None


def _tiff_to_planes(data: np.ndarray, axes: str, name, color: bool = False) -> np.ndarray:
    """Turn any TIFF array into [P, H, W] float32 in [0, 1] (or [P, H, W, 3] with `color`)."""
    if "Y" not in axes or "X" not in axes or data.ndim != len(axes):
        raise ImageReadError(name, f"unsupported TIFF layout (shape {data.shape}, axes {axes!r})")
    # Move Y, X (and a colour axis S of 3 or 4 samples) to the end.
    order = [i for i, a in enumerate(axes) if a not in "YXS"]
    colour = "S" in axes and data.shape[axes.index("S")] in (3, 4)
    tail = [axes.index("Y"), axes.index("X")] + ([axes.index("S")] if "S" in axes else [])
    data = np.transpose(data, order + tail)
    if "S" in axes and not colour:
        # Extra samples that are not RGB(A): treat each as its own plane.
        data = np.moveaxis(data, -1, -3)
    unit = _scale_to_unit(data, name)
    if color:
        rgb = _rgb_over_white(unit) if colour else np.repeat(unit[..., None], 3, axis=-1)
        return rgb.reshape((-1,) + rgb.shape[-3:]).astype(np.float32)
    if colour:
        gray = unit[..., :3] @ LUMA_WEIGHTS
        if unit.shape[-1] == 4:
            gray = _composite_over_white(gray, unit[..., 3])
        unit = gray
    return unit.reshape((-1,) + unit.shape[-2:]).astype(np.float32)


def _scale_to_unit(array: np.ndarray, name) -> np.ndarray:
    """Integers are divided by their type's maximum; floats already in [0, 1] are kept, others are
    min-max scaled (a float image has no natural white)."""
    if array.dtype == bool:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        if info.min < 0:
            array = array.astype(np.float64) - info.min
            return (array / (info.max - info.min)).astype(np.float32)
        return (array.astype(np.float64) / info.max).astype(np.float32)
    if np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32)
        if not np.all(np.isfinite(array)):
            raise ImageReadError(name, "image contains NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        if low >= 0.0 and high <= 1.0:
            return array
        return (array - low) / (high - low) if high > low else np.zeros_like(array)
    raise ImageReadError(name, f"unsupported pixel type {array.dtype}")


def _composite_over_white(gray: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return (gray * alpha + (1.0 - alpha)).astype(np.float32)


def display_path(path: str | os.PathLike) -> str:
    """A file name as text that any UTF-8 file, page or terminal can hold.

    A name whose bytes are not valid UTF-8 reaches Python with surrogate escapes, which no UTF-8
    writer accepts (one such name used to abort a whole report); its undecodable bytes are shown
    as `\\xNN` instead, the rest of the name as it is.
    """
    return os.fsencode(os.fspath(path)).decode("utf-8", "backslashreplace")


@dataclasses.dataclass
class ScanReport:
    """What a folder scan read and what it skipped (path, reason)."""

    read: int = 0
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        return f"read {self.read} image(s), skipped {len(self.skipped)} unreadable file(s)"


def link_problem(path: str | os.PathLike) -> str | None:
    """Why the symbolic link `path` leads to no file: broken, or a loop; None when `path` is not
    a symbolic link or leads somewhere. (`Path.is_file()` is False for both, so a folder scan
    used to leave such entries out without a word.)"""
    path = Path(path)
    if not path.is_symlink():
        return None
    try:
        path.stat()
    except FileNotFoundError:
        return f"broken symbolic link (to {display_path(os.readlink(path))}, which does not exist)"
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "symbolic link loop (following it leads back to a link already followed)"
        return f"cannot follow symbolic link ({error.strerror or error})"
    return None


def list_image_files(root: str | os.PathLike, recursive: bool = True, problems: list | None = None) -> list[Path]:
    """Image files below `root` (by suffix), sorted, hidden files and folders excluded.

    Entries with an image suffix that lead to no file (broken symbolic links, link loops) are
    appended to `problems` as (path, reason) when it is given.
    """
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise ImageReadError(root, link_problem(root) or "no such file or folder")
    pattern = root.rglob("*") if recursive else root.glob("*")
    files = []
    for path in pattern:
        if path.suffix.lower() not in IMAGE_SUFFIXES or any(
                part.startswith(".") for part in path.relative_to(root).parts):
            continue
        if path.is_file():
            files.append(path)
        elif problems is not None and (reason := link_problem(path)):
            problems.append((display_path(path), reason))
    if problems is not None:
        problems.sort()
    return sorted(files)


def list_inputs(
    paths: Iterable[str | os.PathLike] | str | os.PathLike,
    *,
    recursive: bool = True,
    report: ScanReport | None = None,
) -> list[Path]:
    """Every image file of `paths` (files and folders), in order; links that lead to no file are
    logged as warnings and recorded in `report`. A missing input raises `ImageReadError`."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    report = report if report is not None else ScanReport()
    files = []
    for entry in paths:
        links: list[tuple[str, str]] = []
        files += list_image_files(entry, recursive=recursive, problems=links)
        for name, reason in links:
            logger.warning("skipping %s: %s", name, reason)
        report.skipped.extend(links)
    return files


def read_images(
    files: Iterable[Path],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    report: ScanReport | None = None,
    color: bool = False,
    workers: int = 1,
    transform=None,
) -> Iterator[tuple[Path, object]]:
    """Yield (path, image) for every readable file of `files`, in order; skip the rest (a warning
    and an entry in `report` each).

    With `workers` > 1 the files are decoded by that many threads (Pillow and tifffile release the
    GIL while decoding), at most 4 x workers files ahead of the consumer, so memory stays bounded
    however many files there are. `transform(image)`, when given, runs in the reading thread too
    and its result is yielded instead of the image (e.g. cutting an image into patches).
    """
    from concurrent.futures import ThreadPoolExecutor

    report = report if report is not None else ScanReport()

    def load(path):
        try:
            image = read_image(path, max_pixels=max_pixels, color=color)
        except ImageReadError as error:
            return path, None, error
        return path, (transform(image) if transform is not None else image), None

    def results():
        if workers <= 1:
            yield from map(load, files)
            return
        with ThreadPoolExecutor(workers) as pool:
            window, pending = 4 * workers, []
            for path in files:
                pending.append(pool.submit(load, path))
                if len(pending) >= window:
                    yield pending.pop(0).result()
            for future in pending:
                yield future.result()

    for path, image, error in results():
        if error is not None:
            logger.warning("skipping %s", error)
            report.skipped.append((display_path(path), error.reason))
            continue
        report.read += 1
        yield path, image


def scan_images(
    paths: Iterable[str | os.PathLike] | str | os.PathLike,
    *,
    recursive: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    report: ScanReport | None = None,
    color: bool = False,
) -> Iterator[tuple[Path, np.ndarray]]:
    """Yield (path, image) for every readable image in files and folders; skip the rest.

    Unreadable files are logged as warnings and recorded in `report` (pass a ScanReport to get
    the count); no good file is lost because of a bad neighbour. (`list_inputs` then
    `read_images`, which can read in threads.)
    """
    report = report if report is not None else ScanReport()
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    for entry in paths:  # entry by entry, so a missing later input fails after the earlier ones
        yield from read_images(list_inputs([entry], recursive=recursive, report=report), max_pixels=max_pixels,
                               report=report, color=color)


# ---------------------------------------------------------------------------------------------
# writing


def check_output_folder(path: str | os.PathLike, flag: str = "--out") -> Path:
    """`path` if it is, or can be made, a writable folder; else ForensicsError naming `flag`.

    Nothing is created: commands call this before any work, so a bad --out ends at once with one
    line instead of a traceback after the whole run.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ForensicsError(f"{flag} {path}: exists and is not a folder")
    ancestor = path
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ForensicsError(f"{flag} {path}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ForensicsError(f"{flag} {path}: {ancestor} is not writable")
    return path


def quantize(images: np.ndarray, bit_depth: int) -> np.ndarray:
    """Float images in [0, 1] -> uint8 (bit_depth 8) or uint16 (bit_depth 16)."""
    if bit_depth not in (8, 16):
        raise ForensicsError(f"bit depth must be 8 or 16, got {bit_depth}")
    maximum, dtype = (255, np.uint8) if bit_depth == 8 else (65535, np.uint16)
    return np.clip(np.round(np.asarray(images, np.float64) * maximum), 0, maximum).astype(dtype)


def encode_png(image: np.ndarray, bit_depth: int = 8) -> bytes:
    """[H, W] or [H, W, C] floats in [0, 1] -> PNG bytes with 8 or 16 bits per sample."""
    import tensorflow as tf

    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    return tf.io.encode_png(quantize(image, bit_depth)).numpy()


def write_png(path, image: np.ndarray, bit_depth: int = 8) -> Path:
    """`encode_png` into `path` (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_png(image, bit_depth))
    return path
