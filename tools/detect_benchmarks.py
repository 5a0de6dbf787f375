"""The `detect` benchmark behind `tools/benchmark.py detect-files`: many small files, end to end.

`small_files` writes N small grayscale PNGs (random crops, sides drawn from [min_side, max_side],
of the blots in ../shared/data/western_blots, or random smoothed textures when the folder is
absent). `reference_detect` is the per-file path `detect` ran before issue 15 (read a file, score
it alone with `Detector.score`, heat map and spectrum pictures for every image, all of them in
report.html), kept here as the reference the batched command is measured against, in the same
process, on a subset of the same files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BLOTS = ROOT.parent / "shared" / "data" / "western_blots"


def _host_images(limit: int = 200) -> list[np.ndarray]:
    """Grayscale [0, 1] blots of ../shared/data (real ones, then synthetic patches), or []."""
    from keras_forensics.data import io

    files = []
    for folder in (BLOTS / "real", BLOTS / "synthetic_patches" / "tampered"):
        if folder.is_dir():
            files += io.list_image_files(folder)[:limit]
    return [io.read_image(path) for path in files[:limit]]


def small_files(folder, count: int, min_side: int = 64, max_side: int = 128, seed: int = 0) -> dict:
    """Write `count` PNGs of min_side..max_side px per side into `folder`; returns what they are."""
    from scipy.ndimage import gaussian_filter

    from keras_forensics.data.io import write_png

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    hosts = [h for h in _host_images() if min(h.shape) >= max_side]
    pixels = 0
    for index in range(count):
        height, width = (int(v) for v in rng.integers(min_side, max_side + 1, 2))
        if hosts:
            host = hosts[index % len(hosts)]
            top, left = rng.integers(0, host.shape[0] - height + 1), rng.integers(0, host.shape[1] - width + 1)
            image = host[top:top + height, left:left + width]
        else:
            image = gaussian_filter(rng.random((height, width)), 2.0)
            image = (image - image.min()) / max(float(np.ptp(image)), 1e-6)
        write_png(folder / f"{index // 1000:03d}" / f"small_{index:06d}.png", image)
        pixels += height * width
    return {"files": count, "sides": [min_side, max_side], "mean_pixels": round(pixels / max(count, 1), 1),
            "source": "western_blots crops" if hosts else "random textures"}


def reference_detect(inputs, out, detector, stride=None, batch_size: int = 256) -> int:
    """The pre-issue-15 `detect`: one file at a time, every image in report.html in full."""
    from keras_forensics.data import io
    from keras_forensics.detection import report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows, entries = [], []
    for path, image in io.scan_images(list(inputs)):
        verdict = detector.score(image, stride=stride, batch_size=batch_size)
        row = {"file": io.display_path(path), "p_fake": verdict.p_fake, "p_fake_max_patch": verdict.p_fake_max_patch}
        rows.append(row)
        spectrum_png, profile_svg = report.spectrum_pictures(image)
        entries.append({
            **row, "shape": image.shape, "patches": int(verdict.informative.sum()),
            "image": _png(_thumbnail((image * 255).round().astype(np.uint8))),
            "overlay": _png(_thumbnail(report.heat_overlay(image, verdict.heat_map))),
            "spectrum": spectrum_png, "profile": profile_svg,
        })
    report.write_scores(rows, out / "scores.csv")
    (out / "report.html").write_text("".join(_entry_html(e) for e in entries), encoding="utf-8")
    return len(rows)


def _png(array: np.ndarray) -> str:
    import base64
    import io as _io

    from PIL import Image

    buffer = _io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _thumbnail(array: np.ndarray, longest: int = 384) -> np.ndarray:
    from PIL import Image

    height, width = array.shape[:2]
    factor = longest / max(height, width)
    if factor >= 1:
        return array
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return np.asarray(Image.fromarray(array).resize(size, Image.Resampling.BILINEAR))


def _entry_html(entry) -> str:
    spectrum = f"<img src='{entry['spectrum']}'>" if entry["spectrum"] else ""
    return (f"<tr><td>{entry['file']} {entry['p_fake']:.3f} {entry['p_fake_max_patch']:.3f}</td>"
            f"<td><img src='{entry['image']}'></td><td><img src='{entry['overlay']}'></td>"
            f"<td>{spectrum}{entry['profile']}</td></tr>")
