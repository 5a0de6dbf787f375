"""`python -m keras_forensics detect INPUT... --out DIR`: scores.csv and a self-contained report.html.

scores.csv has exactly the columns `file, p_fake, p_fake_max_patch` (a contract other tools rely
on), one row per readable image in the order read: the mean p_fake over the image's patches and
the largest patch p_fake. report.html stays under `max_bytes` (10 MB) whatever the input: a
histogram of p_fake over every image, then the `in_full` most suspicious images (highest
p_fake_max_patch first) each with its picture, its p_fake heat map and its spectrum (centred 2-D
log spectrum and the 1-D azimuthal profile); the other images are only in scores.csv. Pictures
are JPEG thumbnails at the size shown (the histogram a PNG), so the file can be mailed on its own;
when the pictures would pass the bound, the later images are left out and the page says so.

Scoring streams: files are decoded and cut into patches by reading threads
(`io.read_images`), the patches of consecutive images share model calls of `batch_size`
(`Detector.score_stream`), and only the patch scores are kept, so memory does not grow with
the number of files. A progress bar on stderr counts the files.
"""

from __future__ import annotations

import csv
import functools
import html
import logging
import sys
from pathlib import Path

import numpy as np

from keras_forensics.data import io, pictures
from keras_forensics.detection.inference import Detector
from keras_forensics.errors import ForensicsError, ImageReadError
from keras_forensics.ops import spectrum

logger = logging.getLogger(__name__)

CSV_COLUMNS = ("file", "p_fake", "p_fake_max_patch")
THUMBNAIL = 384  # longest side, in CSS pixels, of the pictures in the report
MIN_SHOWN = 128  # smaller images are shown enlarged to this (pixelated; the file keeps its own size)
SPECTRUM_SHOWN = 160  # side at which the 2-D spectrum is shown
SPECTRUM_SIZE = 256  # side of the centre crop whose spectrum the report shows
MIN_SPECTRUM_SIZE = 8  # below this side a spectrum has too few frequencies to show (a rule line)
#: The most suspicious this many images are shown in full (`detect --in_full`).
IN_FULL = 50
#: report.html stays under this many bytes.
MAX_REPORT_BYTES = 10_000_000
#: At most this many unreadable files are named in report.html (the log names every one).
MAX_SKIPPED_LISTED = 200


def _picture(image: np.ndarray, alt: str, longest: int = THUMBNAIL) -> str:
    """An <img> of a JPEG thumbnail encoded at the size shown (small images enlarged by the page)."""
    uri, width, height = pictures.jpeg_thumbnail(image, longest)
    zoom = max(1.0, MIN_SHOWN / max(width, height))
    return (f"<img src='{uri}' width='{round(width * zoom)}' height='{round(height * zoom)}' "
            f"alt='{html.escape(alt)}'>")


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
    """(<img> of the centred 2-D log spectrum, inline SVG of the 1-D profile) of the image's
    central square crop (at most SPECTRUM_SIZE px); (None, a note) for an image with a side below
    MIN_SPECTRUM_SIZE, whose spectrum would be a few numbers."""
    side = min(SPECTRUM_SIZE, *image.shape)
    if side < MIN_SPECTRUM_SIZE:
        return None, f"<span class='small'>no spectrum: a side of {side} px is below {MIN_SPECTRUM_SIZE} px</span>"
    top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    crop = image[None, top:top + side, left:left + side]
    log_power = spectrum.log_spectrum_2d(crop).numpy()[0]
    low, high = np.percentile(log_power, [1, 99.9])
    picture = _picture(_colour_map((log_power - low) / max(high - low, 1e-6)), "log spectrum", SPECTRUM_SHOWN)
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


def histogram_picture(p_fake, p_fake_max_patch, bins: int = 50) -> str:
    """PNG data URI: histograms of the images' p_fake and p_fake_max_patch (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 2.8), dpi=90)
    edges = np.linspace(0.0, 1.0, bins + 1)
    axes.hist(np.asarray(p_fake), edges, alpha=0.7, label="p_fake (mean over patches)", color="#1f77b4")
    axes.hist(np.asarray(p_fake_max_patch), edges, alpha=0.5, label="p_fake_max_patch", color="#d62728")
    axes.set_xlabel("score")
    axes.set_ylabel("images")
    axes.set_yscale("symlog", linthresh=10)
    axes.axvline(0.5, color="#555", linewidth=0.8, linestyle="--")
    axes.legend(fontsize=8)
    axes.set_title(f"{len(p_fake)} image(s)")
    figure.tight_layout()
    return pictures.figure_png(figure)


_STYLE = """body{font-family:system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:8px;vertical-align:top;text-align:left}
.score{font-size:20px;font-weight:600}.fake{color:#b00}.real{color:#070}img{image-rendering:pixelated}
.small,.note{color:#666;font-size:12px}"""


def entry_html(entry) -> str:
    """One image shown in full: {file, p_fake, p_fake_max_patch, shape, patches, image, overlay,
    spectrum, profile} (the pictures as <img> tags, the profile an SVG)."""
    verdict = "fake" if entry["p_fake_max_patch"] >= 0.5 else "real"
    spectrum_picture = f"{entry['spectrum']}<br>" if entry["spectrum"] else ""
    return (f"<tr><td><b>{html.escape(entry['file'])}</b><br><span class='small'>{entry['shape'][1]}x"
            f"{entry['shape'][0]} px, {entry['patches']} patches judged</span><br>"
            f"<span class='score {verdict}'>max patch {entry['p_fake_max_patch']:.3f}</span><br>"
            f"mean p_fake {entry['p_fake']:.3f}</td>"
            f"<td>{entry['image']}</td><td>{entry['overlay']}</td>"
            f"<td>{spectrum_picture}{entry['profile']}</td></tr>")


def write_report(entries, path, detector_name: str, skipped=(), total: int | None = None, histogram: str = "",
                 max_bytes: int = MAX_REPORT_BYTES, wanted: int | None = None) -> tuple[Path, int]:
    """report.html: the histogram, then `entries` (an iterable, most suspicious first, None for an
    image without pictures; see `entry_html`) as long as the page stays under `max_bytes`, which
    stops the iteration. `wanted` entries were asked for (default: all), `total` images scored.
    Returns (the page's path, how many images it shows in full)."""
    entries = iter(entries)
    if wanted is None or total is None:
        entries = list(entries)
        wanted = len(entries) if wanted is None else wanted
        total = len(entries) if total is None else total
    listed = list(skipped)[:MAX_SKIPPED_LISTED]
    skipped_html = "".join(f"<li>{html.escape(f)}: {html.escape(r)}</li>" for f, r in listed)
    if len(skipped) > len(listed):
        skipped_html += f"<li>... and {len(skipped) - len(listed)} more (the log names every one)</li>"
    head = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>GAN-image detection report</title>
<style>{_STYLE}</style></head><body>
<h1>GAN-image detection report</h1>
<p>Model: <code>{html.escape(detector_name)}</code>. {total} image(s) scored; every score is in scores.csv.
p_fake is the mean over overlapping patches, <i>max patch</i> the highest patch score (a pasted synthetic
region in a real figure); the heat map shows each pixel's mean patch p_fake in red. Flat background patches
(no texture to judge) are left out, as in training. The spectrum is the centred
log power spectrum of the central crop; periodic bright spots away from the centre are the up-sampling traces of
many generators (Wang et al. 2022, Fig. 1E; Durall et al. 2020).</p>
{"<p>Skipped (unreadable): " + str(len(skipped)) + "</p><ul>" + skipped_html + "</ul>" if skipped else ""}
{f"<img src='{histogram}' alt='histogram of p_fake'>" if histogram else ""}
"""
    tail = "</table></body></html>\n"
    rows = []
    budget = max_bytes - pictures.size(head) - pictures.size(tail) - 4096  # 4 KB for the notes
    for entry in entries:
        if entry is None:
            continue
        row = entry_html(entry)
        if pictures.size(row) > budget:
            break
        budget -= pictures.size(row)
        rows.append(row)
    notes = []
    if len(rows) < wanted:
        notes.append(f"{wanted - len(rows)} more of the {wanted} most suspicious images asked for are not shown "
                     f"(report.html is kept under {max_bytes / 1e6:g} MB, or their files could no longer be read).")
    if total > len(rows):
        notes.append(f"The other {total - len(rows)} image(s) are in scores.csv only.")
    heading = (f"<h2>The {len(rows)} most suspicious image(s)</h2>"
               + (f"<p class='note'>{' '.join(notes)}</p>" if notes else "")
               + "<table><tr><th>file</th><th>image</th><th>p_fake heat map</th><th>spectrum</th></tr>")
    document = head + heading + "".join(rows) + tail
    path = Path(path)
    path.write_text(document, encoding="utf-8")
    return path, len(rows)


def _entry(path, verdict, detector: Detector, stride, max_pixels) -> dict | None:
    """The report entry of one scored image (read again: only the images shown keep pixels)."""
    try:
        image = io.read_image(path, max_pixels=max_pixels)
    except ImageReadError as error:  # changed since it was scored
        logger.warning("no pictures for %s", error)
        return None
    spectrum_picture, profile_svg = spectrum_pictures(image)
    return {"file": io.display_path(path), "p_fake": verdict.p_fake, "p_fake_max_patch": verdict.p_fake_max_patch,
            "shape": image.shape, "patches": int(verdict.informative.sum()),
            "image": _picture(image, "image"),
            "overlay": _picture(heat_overlay(image, detector.heat_map(verdict, stride)), "p_fake heat map"),
            "spectrum": spectrum_picture, "profile": profile_svg}


def detect(inputs, out, model=None, stride: int | None = None, batch_size: int = 256,
           max_pixels: int | None = None, in_full: int = IN_FULL, progress: bool = True, workers: int = 2,
           max_bytes: int = MAX_REPORT_BYTES) -> dict:
    """Score every image of `inputs` (files and folders, recursive) and write OUT/scores.csv and
    OUT/report.html (the `in_full` most suspicious images in full). `model` is a path for
    `Detector.load` or a loaded `Detector`. Returns their paths and the counts. Images above `max_pixels` (default `io.DEFAULT_MAX_PIXELS`) are skipped unread;
    `workers` threads decode and cut the files."""
    from tqdm.auto import tqdm

    max_pixels = io.pixel_limit(max_pixels)
    if not inputs:
        raise ForensicsError("give at least one image file or folder to score")
    if not out:
        raise ForensicsError("--out DIR is required (scores.csv and report.html are written there)")
    if not isinstance(in_full, int) or isinstance(in_full, bool) or in_full < 0:
        raise ForensicsError(f"--in_full takes a whole number >= 0, got {in_full!r}")
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ForensicsError(f"--workers takes a whole number >= 1, got {workers!r}")
    out = io.check_output_folder(out)  # before the model loads and any image is scored
    report = io.ScanReport()
    files = io.list_inputs(list(inputs), report=report)
    detector = model if isinstance(model, Detector) else Detector.load(model)
    out.mkdir(parents=True, exist_ok=True)
    unlisted = len(report.skipped)  # broken links, found while listing
    prepared = io.read_images(files, max_pixels=max_pixels, report=report, workers=workers,
                              transform=functools.partial(detector.prepare, stride=stride))
    scored = []
    with tqdm(total=len(files), desc="detect", unit="file", file=sys.stderr, disable=not progress) as bar:
        for path, verdict in detector.score_stream(prepared, batch_size):
            scored.append((path, verdict))
            bar.update(len(scored) + len(report.skipped) - unlisted - bar.n)
        bar.update(len(files) - bar.n)
    if not scored:
        raise ForensicsError(f"no readable image in {', '.join(map(str, inputs))} ({report.summary()})")
    rows = [{"file": io.display_path(path), "p_fake": v.p_fake, "p_fake_max_patch": v.p_fake_max_patch}
            for path, v in scored]
    scores = write_scores(rows, out / "scores.csv")
    order = sorted(range(len(scored)), key=lambda i: (-scored[i][1].p_fake_max_patch, -scored[i][1].p_fake))
    # Read again one at a time, and only until the page is full.
    entries = (_entry(*scored[i], detector, stride, max_pixels) for i in order[:in_full])
    histogram = histogram_picture([r["p_fake"] for r in rows], [r["p_fake_max_patch"] for r in rows])
    html_path, shown = write_report(entries, out / "report.html", detector.name, report.skipped, len(rows), histogram,
                             max_bytes, wanted=min(in_full, len(rows)))
    return {"scores": str(scores), "report": str(html_path), "images": len(rows), "skipped": len(report.skipped),
            "in_full": shown}
