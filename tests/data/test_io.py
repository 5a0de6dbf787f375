"""Image I/O: every documented format and every documented failure."""

import struct
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image

from keras_forensics.data import io
from keras_forensics.errors import ImageReadError


def test_png_8bit_gray(tmp_path):
    data = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(data).save(tmp_path / "a.png")
    image = io.read_image(tmp_path / "a.png")
    assert image.dtype == np.float32 and image.shape == (16, 16)
    np.testing.assert_allclose(image, data / 255.0, atol=1e-6)


def test_tiff_16bit(tmp_path):
    data = np.array([[0, 65535], [32768, 1000]], np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", data)
    np.testing.assert_allclose(io.read_image(tmp_path / "a.tif"), data / 65535.0, atol=1e-6)


def test_png_16bit(tmp_path):
    data = np.array([[0, 65535], [32768, 1000]], np.uint16)
    Image.fromarray(data).save(tmp_path / "a.png")
    np.testing.assert_allclose(io.read_image(tmp_path / "a.png"), data / 65535.0, atol=1e-5)


def test_multipage_tiff_first_or_all_planes(tmp_path):
    planes = np.stack([np.full((8, 9), v, np.uint8) for v in (10, 20, 30)])
    tifffile.imwrite(tmp_path / "stack.tif", planes, photometric="minisblack")
    first = io.read_image(tmp_path / "stack.tif")
    every = io.read_image(tmp_path / "stack.tif", all_planes=True)
    assert first.shape == (8, 9) and np.allclose(first, 10 / 255)
    assert every.shape == (3, 8, 9) and np.allclose(every[:, 0, 0], np.array([10, 20, 30]) / 255)


def test_rgb_tiff_is_luminance(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 1] = 255
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    np.testing.assert_allclose(io.read_image(tmp_path / "rgb.tif"), 0.587, atol=1e-3)


def test_float_tiff_is_scaled(tmp_path):
    tifffile.imwrite(tmp_path / "f.tif", np.array([[-2.0, 0.0], [2.0, 6.0]], np.float32))
    np.testing.assert_allclose(io.read_image(tmp_path / "f.tif"), [[0, 0.25], [0.5, 1]], atol=1e-6)


def test_rgba_png_composited_over_white(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (0, 0, 0, 255)  # opaque black
    rgba[0, 1] = (0, 0, 0, 0)  # transparent -> white
    rgba[1, 0] = (255, 0, 0, 255)  # opaque red
    rgba[1, 1] = (0, 0, 0, 128)  # half transparent black
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    image = io.read_image(tmp_path / "a.png")
    np.testing.assert_allclose(image, [[0.0, 1.0], [0.2989, 1 - 128 / 255]], atol=2e-3)


def test_bmp_and_jpeg(tmp_path):
    data = np.full((8, 8), 200, np.uint8)
    Image.fromarray(data).save(tmp_path / "a.bmp")
    Image.fromarray(data).save(tmp_path / "a.jpg", quality=95)
    np.testing.assert_allclose(io.read_image(tmp_path / "a.bmp"), 200 / 255, atol=1e-6)
    np.testing.assert_allclose(io.read_image(tmp_path / "a.jpg"), 200 / 255, atol=0.02)


def test_one_pixel_image(tmp_path):
    Image.fromarray(np.array([[7]], np.uint8)).save(tmp_path / "one.png")
    assert io.read_image(tmp_path / "one.png").shape == (1, 1)


def test_truncated_jpeg(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(tmp_path / "a.jpg")
    data = (tmp_path / "a.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="cut.jpg.*(truncated|corrupt)"):
        io.read_image(tmp_path / "cut.jpg")


def test_text_file_named_png(tmp_path):
    (tmp_path / "notes.png").write_text("these are not pixels\n")
    with pytest.raises(ImageReadError, match="notes.png: not an image file"):
        io.read_image(tmp_path / "notes.png")


def test_empty_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty.png: empty file"):
        io.read_image(tmp_path / "empty.png")


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        io.read_image(tmp_path / "missing.png")


def _png_header_only(width, height):
    """A PNG whose header claims a huge size, with a tiny (invalid) body: a decompression bomb."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_bomb_sized_header_is_refused_before_decoding(tmp_path):
    (tmp_path / "bomb.png").write_bytes(_png_header_only(100_000, 100_000))
    with pytest.raises(ImageReadError, match="bomb.png: image is 100000x100000.*limit"):
        io.read_image(tmp_path / "bomb.png")
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(tmp_path / "ok.png")
    with pytest.raises(ImageReadError, match="above the limit"):
        io.read_image(tmp_path / "ok.png", max_pixels=5_000)


def test_decode_bytes_matches_read(tmp_path):
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(tmp_path / "a.png")
    np.testing.assert_array_equal(io.decode_image_bytes((tmp_path / "a.png").read_bytes()),
                                  io.read_image(tmp_path / "a.png"))
    with pytest.raises(ImageReadError, match="upload: empty"):
        io.decode_image_bytes(b"", "upload")


def test_folder_scan_skips_bad_files_and_counts_them(tmp_path):
    good = tmp_path / "sub"
    good.mkdir()
    for i in range(3):
        Image.fromarray(np.full((5, 5), i, np.uint8)).save(good / f"good{i}.png")
    (tmp_path / "bad.png").write_text("nope")
    (tmp_path / "empty.tif").write_bytes(b"")
    (tmp_path / "readme.txt").write_text("not an image suffix: not even tried")
    report = io.ScanReport()
    found = list(io.scan_images(tmp_path, report=report))
    assert sorted(p.name for p, _ in found) == ["good0.png", "good1.png", "good2.png"]
    assert report.read == 3 and len(report.skipped) == 2
    assert "skipped 2" in report.summary()
