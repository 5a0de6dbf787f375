"""Pictures of what the Siamese network is trained on: grids of (anchor, same, different)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def triplet_grid(anchor, same, different, scores=None, gap: int = 4, label: bool = True) -> np.ndarray:
    """A uint8 [H, W] picture with one row per triplet: anchor | same | different.

    Args:
        anchor, same, different: [N, H, W] or [N, H, W, 1] floats in [0, 1].
        scores: optional [N, 2] (sigma_same, sigma_diff), printed under the pictures.
    """
    rows = []
    columns = [np.asarray(x, np.float32).reshape(len(anchor), *np.shape(anchor)[1:3]) for x in
               (anchor, same, different)]
    size = columns[0].shape[1:]
    for i in range(len(anchor)):
        tiles = []
        for column in columns:
            tiles.append(np.clip(column[i], 0, 1))
            tiles.append(np.ones((size[0], gap), np.float32))
        rows.append(np.concatenate(tiles[:-1], axis=1))
        rows.append(np.ones((gap, rows[-1].shape[1]), np.float32))
    grid = (np.concatenate(rows[:-1], axis=0) * 255).astype(np.uint8)
    header = 14 if label else 0
    text_rows = 14 if scores is not None else 0
    if not (header or text_rows):
        return grid
    canvas = Image.new("L", (grid.shape[1], grid.shape[0] + header), 255)
    canvas.paste(Image.fromarray(grid), (0, header))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=11)
    if label:
        for j, name in enumerate(("anchor", "same (deformed)", "different (deformed)")):
            draw.text((j * (size[1] + gap) + 2, 1), name, fill=0, font=font)
    if scores is not None:
        for i, (s_same, s_diff) in enumerate(np.asarray(scores)):
            y = header + i * (size[0] + gap) + size[0] - 13
            for j, value in ((1, s_same), (2, s_diff)):
                correct = value > 0.5 if j == 1 else value <= 0.5
                text = f"p_same {value:.2f}" + ("" if correct else " (wrong)")
                x = j * (size[1] + gap) + 2
                draw.rectangle([x - 1, y - 1, x + 8 + 6 * len(text), y + 12], fill=255)
                draw.text((x, y), text, fill=0, font=font)
    return np.asarray(canvas)


def preview(out: str = "triplets.png", data: str | None = None, n: int = 8, seed: int = 0) -> str:
    """Write a PNG grid of `n` training triplets (anchor | same | different).

    Args:
        out: the PNG to write.
        data: a folder of images (default: the embedded sample micrographs).
        n: how many triplets (rows).
        seed: the random seed; the same seed draws the same triplets.
    """
    from keras_forensics.data import folders
    from keras_forensics.data.pipeline import fixed_triplets

    patchset = folders.folder(data) if data else folders.sample_micrographs()
    triplets = fixed_triplets(patchset, count=n, seed=seed, batch_size=n)
    Image.fromarray(triplet_grid(triplets["anchor"], triplets["same"], triplets["different"])).save(out)
    Path(out).resolve()
    return str(out)
