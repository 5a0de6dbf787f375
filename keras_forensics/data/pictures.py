"""Pictures for self-contained HTML reports: images as data URIs, encoded at the size shown.

`screen` and `detect` both write one report.html that can be mailed on its own and stays under
10 MB whatever the input; they share these encoders and the byte count of their pages.
"""

from __future__ import annotations

import base64

import numpy as np

#: Quality of the JPEG thumbnails of the reports.
JPEG_QUALITY = 85


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[H, W] float in [0, 1] (or already uint8, gray or RGB) -> uint8."""
    if image.dtype == np.uint8:
        return image
    return np.clip(np.round(np.asarray(image, np.float32) * 255), 0, 255).astype(np.uint8)


def jpeg_thumbnail(image: np.ndarray, max_side: int, quality: int = JPEG_QUALITY) -> tuple[str, int, int]:
    """[H, W] float in [0, 1] or [H, W(, 3)] uint8 (RGB) -> (JPEG data URI, width, height), shrunk
    (area interpolation) to at most `max_side`: the picture is encoded at the size the page shows
    it, never larger."""
    import cv2

    image = to_uint8(image)
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    if image.ndim == 3:
        image = image[..., ::-1]  # OpenCV writes BGR
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii"), width, height


def png_data_uri(data: bytes) -> str:
    """Encoded PNG bytes -> a data URI."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def figure_png(figure) -> str:
    """A matplotlib figure as a PNG data URI (the figure is closed)."""
    import io
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return png_data_uri(buffer.getvalue())


def size(text: str) -> int:
    """Bytes of `text` in UTF-8: what a page's budget counts."""
    return len(text.encode("utf-8"))
