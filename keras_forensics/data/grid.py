"""Contact sheets: many equally sized images in one picture (GAN samples, translations)."""

from __future__ import annotations

import math

import numpy as np


def image_grid(images, columns: int | None = None, gap: int = 2, background: float = 1.0) -> np.ndarray:
    """[N, H, W(, C)] floats in [0, 1] -> one [rows * (H + gap) - gap, ..., C] float32 picture,
    row-major, `columns` wide (default: as square as possible); empty cells are `background`."""
    images = np.asarray(images, np.float32)
    if images.ndim == 3:
        images = images[..., None]
    count, height, width, channels = images.shape
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    grid = np.full((rows * (height + gap) - gap, columns * (width + gap) - gap, channels), background, np.float32)
    for index, image in enumerate(np.clip(images, 0.0, 1.0)):
        row, column = divmod(index, columns)
        grid[row * (height + gap):row * (height + gap) + height,
             column * (width + gap):column * (width + gap) + width] = image
    return grid
