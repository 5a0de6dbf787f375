"""Build a folder of real-case panel re-uses from micrographs a Siamese model never saw.

    python tools/make_real_cases.py --out /tmp/real_cases_test [--split test] \
        [--data ../shared/data/micrographs] [--split_json training_state/descriptor-shipped/split.json (default)]

For every micrograph of the chosen split's field groups (split.json of the model's training run,
so the model saw none of them; one file per field group, so two channels of one field never
pose as a re-use), `--originals` non-overlapping regions are cut as panels, and each gets
`--reuses` re-used copies made with OpenCV and Pillow -- not the training pipeline's TF
deformations -- by a random chain of what real re-uses show: a crop of part of the panel
(one that still shows content), 90-degree rotations, mirroring, rescaling, JPEG re-compression,
contrast / brightness / gamma changes and text labels (panel letters, scale bars).

Writes OUT/<name>.png|jpg and OUT/manifest.csv (file, source, x, y, width, height, edits):
two panels are a re-use when they come from the same source file and their regions overlap by
at least a quarter of the smaller region. Negatives include the hard cases: other regions of the
same micrograph and micrographs of the same plate. Same seed, same folder.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MANIFEST_COLUMNS = ("file", "source", "x", "y", "width", "height", "edits")


#: The shipped descriptor's (saved_models/siamese/2) split, kept in git (runs/ is not).
DEFAULT_SPLIT = ROOT / "training_state" / "descriptor-shipped" / "split.json"


def split_files(data: Path, split_json: Path, split: str) -> list[Path]:
    """One micrograph per field group of `split` (groups as the training run formed them)."""
    from keras_forensics.config import SHARED_MICROGRAPH_GROUPS
    from keras_forensics.datasets import regex_group

    saved = json.loads(split_json.read_text())
    if saved.get("split_by") == "patch":
        raise SystemExit(f"{split_json}: a run split by patch (--split_by patch) has no held-out images; "
                         "use a run split by group")
    groups = set(saved[split])
    key = regex_group(SHARED_MICROGRAPH_GROUPS)
    chosen = {}
    for path in sorted(data.glob("*.png")):
        group = f"{data.name}/{key(path.stem)}"
        if group in groups and group not in chosen:
            chosen[group] = path
    return list(chosen.values())


def _shows_content(image: np.ndarray, x: int, y: int, w: int, h: int) -> bool:
    """Whether a region's contrast is at least half its image's: nobody re-uses blank background,
    and a crop of noise-only background is not a re-use any method (or person) could confirm."""
    return float(image[y:y + h, x:x + w].std()) >= 0.5 * float(image.std())


def _regions(image: np.ndarray, count: int, rng) -> list[tuple[int, int, int, int]]:
    """Up to `count` non-overlapping square-ish regions (x, y, w, h), 35-50% of the short side,
    each showing content (`_shows_content`)."""
    height, width = image.shape
    regions = []
    for _ in range(200):
        if len(regions) == count:
            break
        side = int(rng.uniform(0.35, 0.5) * min(height, width))
        w = int(side * rng.uniform(0.85, 1.15))
        h = side
        if w >= width or h >= height:
            continue
        x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        if not _shows_content(image, x, y, w, h):
            continue
        if all(x + w <= ox or ox + ow <= x or y + h <= oy or oy + oh <= y for ox, oy, ow, oh in regions):
            regions.append((x, y, w, h))
    return regions


def _reuse(source: np.ndarray, region, rng):
    """A re-used copy of `region` of `source` (uint8): (image uint8, its region in the source, edits, jpeg quality)."""
    import cv2
    from PIL import Image, ImageDraw, ImageEnhance

    x, y, w, h = region
    edits = []
    if rng.random() < 0.6:  # crop 55-90% of each side, keeping content (else no crop)
        for _ in range(20):
            cw, ch = int(w * rng.uniform(0.55, 0.9)), int(h * rng.uniform(0.55, 0.9))
            cx, cy = x + int(rng.integers(0, w - cw + 1)), y + int(rng.integers(0, h - ch + 1))
            if _shows_content(source, cx, cy, cw, ch):
                x, y, w, h = cx, cy, cw, ch
                edits.append("crop")
                break
    image = source[y:y + h, x:x + w].copy()
    turns = int(rng.integers(0, 4))
    if turns:
        image = np.ascontiguousarray(np.rot90(image, turns))
        edits.append(f"rot{90 * turns}")
    if rng.random() < 0.4:
        image = np.ascontiguousarray(image[:, ::-1] if rng.random() < 0.5 else image[::-1])
        edits.append("mirror")
    if rng.random() < 0.5:
        factor = rng.uniform(0.6, 1.5)
        image = cv2.resize(image, (max(32, int(image.shape[1] * factor)), max(32, int(image.shape[0] * factor))),
                           interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC)
        edits.append(f"scale{factor:.2f}")
    pil = Image.fromarray(image)
    if rng.random() < 0.6:
        kind = rng.integers(0, 3)
        if kind == 0:
            pil = ImageEnhance.Contrast(pil).enhance(rng.uniform(0.6, 1.8))
            edits.append("contrast")
        elif kind == 1:
            pil = ImageEnhance.Brightness(pil).enhance(rng.uniform(0.7, 1.4))
            edits.append("brightness")
        else:
            gamma = rng.uniform(0.6, 1.6)
            pil = pil.point(lambda v: int(255 * (v / 255) ** gamma))
            edits.append("gamma")
    if rng.random() < 0.5:
        draw = ImageDraw.Draw(pil)
        width, height = pil.size
        if rng.random() < 0.5:
            draw.text((int(width * 0.05), int(height * 0.05)), "ABCDEFGH"[int(rng.integers(0, 8))], fill=255,
                      font_size=max(12, height // 8))
        else:
            bar = (int(width * 0.6), int(height * 0.9), int(width * 0.9), int(height * 0.9) + max(2, height // 60))
            draw.rectangle(bar, fill=255)
            draw.text((bar[0], bar[1] - max(12, height // 14) - 2), "10 um", fill=255, font_size=max(10, height // 14))
        edits.append("label")
    quality = int(rng.integers(30, 85)) if rng.random() < 0.5 else None
    if quality:
        edits.append(f"jpeg{quality}")
    return np.asarray(pil), (x, y, w, h), edits, quality


def make(out, split: str = "test", data=None, split_json=None, originals: int = 4, reuses: int = 2,
         seed: int = 0, layout: str = "flat") -> dict:
    """Write the folder (see the module docstring); returns counts.

    --layout flat (screening: one folder, labels from manifest.csv) or folders (the original
    test.py layout that `evaluate siamese --real_cases` reads: one sub-folder per original panel
    holding it and its re-uses; the manifest's file column then includes the sub-folder).
    """
    if layout not in ("flat", "folders"):
        raise SystemExit(f"--layout must be flat or folders, got {layout!r}")
    from PIL import Image

    from keras_forensics.data.io import read_image

    data = Path(data) if data else ROOT.parent / "shared" / "data" / "micrographs"
    split_json = Path(split_json) if split_json else DEFAULT_SPLIT
    if not data.is_dir():
        raise SystemExit(f"{data}: no such folder (../shared/data is needed)")
    if not split_json.is_file():
        raise SystemExit(f"{split_json}: no such file (the training run's split)")
    files = split_files(data, split_json, split)
    if not files:
        raise SystemExit(f"no micrograph of split {split!r} in {data}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for source_path in files:
        source = np.clip(np.round(read_image(source_path) * 255), 0, 255).astype(np.uint8)
        for number, region in enumerate(_regions(source, originals, rng)):
            stem = f"{source_path.stem[:40]}_r{number}"
            if layout == "folders":
                (out / stem).mkdir(exist_ok=True)
                stem = f"{stem}/{stem}"
            x, y, w, h = region
            Image.fromarray(source[y:y + h, x:x + w]).save(out / f"{stem}_orig.png")
            rows.append({"file": f"{stem}_orig.png", "source": source_path.name, "x": x, "y": y, "width": w,
                         "height": h, "edits": ""})
            for copy in range(reuses):
                image, (rx, ry, rw, rh), edits, quality = _reuse(source, region, rng)
                name = f"{stem}_reuse{copy}." + ("jpg" if quality else "png")
                if quality:
                    Image.fromarray(image).save(out / name, quality=quality)
                else:
                    Image.fromarray(image).save(out / name)
                rows.append({"file": name, "source": source_path.name, "x": rx, "y": ry, "width": rw,
                             "height": rh, "edits": "+".join(edits)})
    with open(out / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    labels = pair_labels(rows)
    return {"folder": str(out), "sources": len(files), "panels": len(rows), "pairs": int(labels.size),
            "reused_pairs": int(labels.sum())}


def read_manifest(folder) -> list[dict]:
    with open(Path(folder) / "manifest.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def pair_labels(rows) -> np.ndarray:
    """[n_pairs] bool over pairs (i < j, row-major upper triangle): same source and regions
    overlapping by >= 1/4 of the smaller one."""
    source = np.array([r["source"] for r in rows])
    box = np.array([[int(r["x"]), int(r["y"]), int(r["width"]), int(r["height"])] for r in rows], np.int64)
    x0, y0 = box[:, 0], box[:, 1]
    x1, y1 = x0 + box[:, 2], y0 + box[:, 3]
    overlap_w = np.clip(np.minimum(x1[:, None], x1[None]) - np.maximum(x0[:, None], x0[None]), 0, None)
    overlap_h = np.clip(np.minimum(y1[:, None], y1[None]) - np.maximum(y0[:, None], y0[None]), 0, None)
    area = box[:, 2] * box[:, 3]
    same = (source[:, None] == source[None]) & (overlap_w * overlap_h >= 0.25 * np.minimum(area[:, None], area[None]))
    first, second = np.triu_indices(len(rows), 1)
    return same[first, second]


if __name__ == "__main__":
    import fire

    fire.Fire(make)
