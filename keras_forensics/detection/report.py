"""`python -m keras_forensics detect INPUT... --out DIR`: scores.csv and a self-contained report.html.

scores.csv has exactly the columns `file, p_fake, p_fake_max_patch` (a contract other tools rely
on): the mean p_fake over the image's patches and the largest patch p_fake. report.html shows, per
image (most suspicious first), the image, its p_fake heat map and its spectrum (centred 2-D log
spectrum and the 1-D azimuthal profile); every picture is a base64 PNG or inline SVG, so the file
can be mailed on its own.
"""

from __future__ import annotations

import base64
import csv
import html
import io as _io
import logging
from pathlib import Path

import numpy as np

from keras_forensics.ops import spectrum
from keras_forensics.data import io
from keras_forensics.detection.inference import Detector
from keras_forensics.errors import ForensicsError

logger = logging.getLogger(__name__)

CSV_COLUMNS = ("file", "p_fake", "p_fake_max_patch")
THUMBNAIL = 384  # longest side of the pictures in the report
SPECTRUM_SIZE = 256  # side of the centre crop whose spectrum the report shows
MIN_SPECTRUM_SIZE = 8  # below this side a spectrum has too few frequencies to show (a rule line)


def _png(array: np.ndarray) -> str:
    from PIL import Image

    buffer = _io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _thumbnail(array: np.ndarray, longest: int = THUMBNAIL) -> np.ndarray:
    from PIL import Image

    height, width = array.shape[:2]
    factor = longest / max(height, width)
    if factor >= 1:
        return array
    image = Image.fromarray(array)
    return np.asarray(image.resize((max(1, round(width * factor)), max(1, round(height * factor))),
                                   Image.Resampling.BILINEAR))


def _colour_map(values: np.ndarray) -> np.ndarray:
    """[H, W] in [0, 1] -> [H, W, 3] uint8, black -> purple -> orange -> yellow (an inferno-like ramp)."""
    anchors = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], np.float32)
    position = np.clip(values, 0, 1) * (len(anchors) - 1)
    low = np.floor(position).astype(int).clip(0, len(anchors) - 2)
    fraction = (position - low)[..., None]
    return (anchors[low] * (1 - fraction) + anchors[low + 1] * fraction).astype(np.uint8)


def heat_overlay(image: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """The image in gray with p_fake laid over it in red (transparent where p_fake is 0)."""
    gray = np.repeat(image[..., None], 3, axis=2)
    red = np.zeros_like(gray)
    red[..., 0] = 1.0
    alpha = 0.7 * np.clip(heat, 0, 1)[..., None] ** 2  # faint where p_fake is middling
    return np.clip(255 * ((1 - alpha) * gray + alpha * red), 0, 255).astype(np.uint8)


def spectrum_pictures(image: np.ndarray) -> tuple[str, str]:
    """(PNG data URI of the centred 2-D log spectrum, inline SVG of the 1-D profile) of the image's
    central square crop (at most SPECTRUM_SIZE px); (None, a note) for an image with a side below
    MIN_SPECTRUM_SIZE, whose spectrum would be a few numbers."""
    side = min(SPECTRUM_SIZE, *image.shape)
    if side < MIN_SPECTRUM_SIZE:
        return None, f"<span class='small'>no spectrum: a side of {side} px is below {MIN_SPECTRUM_SIZE} px</span>"
    top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    crop = image[None, top:top + side, left:left + side]
    log_power = spectrum.log_spectrum_2d(crop).numpy()[0]
    low, high = np.percentile(log_power, [1, 99.9])
    picture = _png(_colour_map((log_power - low) / max(high - low, 1e-6)))
    profile = spectrum.azimuthal_power_spectrum(crop).numpy()[0]
    width, height = 240, 120
    x = np.linspace(0, width, len(profile))
    span = max(profile.max() - profile.min(), 1e-6)
    y = height - 8 - (profile - profile.min()) / span * (height - 16)
    points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(x, y))
    svg = (f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="1-D power spectrum"><rect width="{width}" height="{height}" fill="#fafafa" '
           f'stroke="#ccc"/><polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{points}"/>'
           f'<text x="4" y="12" font-size="10">log10 power (range {span:.2f})</text>'
           f'<text x="{width - 92}" y="{height - 2}" font-size="10">frequency &#8594; Nyquist</text></svg>')
    return picture, svg


def write_scores(rows, path) -> Path:
    """scores.csv: one row per image, columns exactly CSV_COLUMNS."""
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({"file": row["file"], "p_fake": f"{row['p_fake']:.6f}",
                             "p_fake_max_patch": f"{row['p_fake_max_patch']:.6f}"})
    return path


_STYLE = """body{font-family:system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:8px;vertical-align:top;text-align:left}
.score{font-size:20px;font-weight:600}.fake{color:#b00}.real{color:#070}img{image-rendering:pixelated;max-width:384px}
.small{color:#666;font-size:12px}"""


def write_report(entries, path, detector_name: str, skipped=()) -> Path:
    """report.html from entries {file, p_fake, p_fake_max_patch, image, overlay, spectrum, profile}."""
    rows = []
    for entry in sorted(entries, key=lambda e: -e["p_fake_max_patch"]):
        verdict = "fake" if entry["p_fake_max_patch"] >= 0.5 else "real"
        spectrum_picture = (f"<img src='{entry['spectrum']}' alt='log spectrum' width='160'><br>"
                            if entry["spectrum"] else "")
        rows.append(
            f"<tr><td><b>{html.escape(entry['file'])}</b><br><span class='small'>{entry['shape'][1]}x"
            f"{entry['shape'][0]} px, {entry['patches']} patches judged</span><br>"
            f"<span class='score {verdict}'>max patch {entry['p_fake_max_patch']:.3f}</span><br>"
            f"mean p_fake {entry['p_fake']:.3f}</td>"
            f"<td><img src='{entry['image']}' alt='image'></td>"
            f"<td><img src='{entry['overlay']}' alt='p_fake heat map'></td>"
            f"<td>{spectrum_picture}{entry['profile']}</td></tr>"
        )
    skipped_html = "".join(f"<li>{html.escape(f)}: {html.escape(r)}</li>" for f, r in skipped)
    document = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>GAN-image detection report</title>
<style>{_STYLE}</style></head><body>
<h1>GAN-image detection report</h1>
<p>Model: <code>{html.escape(detector_name)}</code>. {len(entries)} image(s), most suspicious first.
p_fake is the mean over overlapping patches, <i>max patch</i> the highest patch score (a pasted synthetic
region in a real figure); the heat map shows each pixel's mean patch p_fake in red. Flat background patches
(no texture to judge) are left out, as in training. The spectrum is the centred
log power spectrum of the central crop; periodic bright spots away from the centre are the up-sampling traces of
many generators (Wang et al. 2022, Fig. 1E; Durall et al. 2020).</p>
{"<p>Skipped (unreadable):</p><ul>" + skipped_html + "</ul>" if skipped else ""}
<table><tr><th>file</th><th>image</th><th>p_fake heat map</th><th>spectrum</th></tr>
{''.join(rows)}
</table></body></html>
"""
    path = Path(path)
    path.write_text(document, encoding="utf-8")
    return path


def detect(inputs, out, model=None, stride: int | None = None, batch_size: int = 256,
           max_pixels: int | None = None) -> dict:
    """Score every image of `inputs` (files and folders, recursive) and write OUT/scores.csv and
    OUT/report.html. Returns their paths and the counts. Images above `max_pixels` (default
    `io.DEFAULT_MAX_PIXELS`) are skipped unread."""
    max_pixels = io.pixel_limit(max_pixels)
    if not inputs:
        raise ForensicsError("give at least one image file or folder to score")
    if not out:
        raise ForensicsError("--out DIR is required (scores.csv and report.html are written there)")
    out = io.check_output_folder(out)  # before the model loads and any image is scored
    detector = Detector.load(model)
    out.mkdir(parents=True, exist_ok=True)
    report = io.ScanReport()
    rows, entries = [], []
    for path, image in io.scan_images(list(inputs), report=report, max_pixels=max_pixels):
        verdict = detector.score(image, stride=stride, batch_size=batch_size)
        row = {"file": io.display_path(path), "p_fake": verdict.p_fake, "p_fake_max_patch": verdict.p_fake_max_patch}
        rows.append(row)
        spectrum_png, profile_svg = spectrum_pictures(image)
        entries.append({
            **row, "shape": image.shape, "patches": int(verdict.informative.sum()),
            "image": _png(_thumbnail((image * 255).round().astype(np.uint8))),
            "overlay": _png(_thumbnail(heat_overlay(image, verdict.heat_map))),
            "spectrum": spectrum_png, "profile": profile_svg,
        })
    if not rows:
        raise ForensicsError(f"no readable image in {', '.join(map(str, inputs))} ({report.summary()})")
    scores = write_scores(rows, out / "scores.csv")
    html_path = write_report(entries, out / "report.html", detector.name, report.skipped)
    return {"scores": str(scores), "report": str(html_path), "images": len(rows), "skipped": len(report.skipped)}
