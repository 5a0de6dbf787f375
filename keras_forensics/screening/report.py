"""What `screen --out REPORT_DIR` writes: pairs.csv, panels/ and a self-contained report.html.

pairs.csv (one row per candidate pair, best first; the column names are a contract):

    rank, a, b, distance, p_same, inliers, transform, combined, relation,
    a_file, a_page, a_box, b_file, b_page, b_box, note

* a, b: the panel crops, relative to REPORT_DIR (panels/<key>.png); for identical PDF files,
  the files themselves.
* distance: the Siamese distance f; p_same = sigmoid(1 - distance).
* inliers: keypoint inliers of the verifier (empty when not verified); transform: the estimated
  similarity from a to b (rotation, scale, shift, mirror).
* combined: the calibrated combined score (see `scoring`), the ranking key.
* relation: within-figure, within-paper, across-papers, or identical-file.
* *_file, *_page, *_box: where each panel comes from (page empty for image files; box
  "x,y,width,height" in pixels of the figure image).
* note: "identical file (sha256 ...)" for byte-identical files.

report.html embeds every picture (base64 PNG), so it can be mailed or archived as one file: one
row per suspected pair (combined > 0.5) with both panels, the aligned overlay, the similarity
maps and the scores, sorted by the combined score; the heat map of all pairwise p_same; and every
input that could not be screened, with the reason.
"""

from __future__ import annotations

import base64
import csv
import html
import io as _io
from pathlib import Path

import numpy as np

PAIR_COLUMNS = ("rank", "a", "b", "distance", "p_same", "inliers", "transform", "combined", "relation",
                "a_file", "a_page", "a_box", "b_file", "b_page", "b_box", "note")

#: Pairs with a combined score above this get a row in report.html (all are in pairs.csv).
SUSPECT_SCORE = 0.5
MAX_ROWS = 200
MAX_EXPLAINED = 60
HEATMAP_MAX_PANELS = 150
THUMBNAIL_SIDE = 240


def write(out, result, scorer=None, progress: bool = False, max_rows: int = MAX_ROWS,
          max_explained: int = MAX_EXPLAINED) -> Path:
    """Write pairs.csv, panels/ and report.html for a `ScreenResult`; returns report.html's path."""
    out = Path(out)
    (out / "panels").mkdir(parents=True, exist_ok=True)
    names = _write_panels(out, result)
    write_pairs_csv(out / "pairs.csv", result, names)
    page = render_html(result, names, scorer, progress, max_rows, max_explained)
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def panel_name(panel) -> str:
    return f"panels/{panel.key}.png"


def _write_panels(out: Path, result) -> dict:
    """Save each panel crop once (8-bit PNG of its pixels); returns id(panel) -> its name in the CSV."""
    import cv2

    names = {}
    everything = list(result.panels) + [p for r in result for p in (r.a, r.b)]
    for panel in everything:
        if id(panel) in names:
            continue
        if panel.image is None:  # an identical PDF: the file is the evidence
            names[id(panel)] = panel.file
            continue
        name = panel_name(panel)
        cv2.imwrite(str(out / name), np.clip(np.round(panel.image * 255), 0, 255).astype(np.uint8))
        names[id(panel)] = name
    return names


def _format(value, digits=4):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value else f"{value:.{digits}f}"
    return str(value)


def pair_row(record, names: dict) -> dict:
    """One pairs.csv row of a PairRecord."""
    row = {"rank": record.rank, "a": names.get(id(record.a), record.a.file),
           "b": names.get(id(record.b), record.b.file), "distance": _format(record.distance),
           "p_same": _format(record.p_same), "inliers": _format(record.inliers),
           "transform": record.transform, "combined": _format(record.combined), "relation": record.relation,
           "note": record.note}
    for side, panel in (("a", record.a), ("b", record.b)):
        row[f"{side}_file"] = panel.file
        row[f"{side}_page"] = "" if panel.page is None else panel.page
        row[f"{side}_box"] = ",".join(str(v) for v in panel.box) if panel.image is not None else ""
    return row


def write_pairs_csv(path, result, names: dict) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=PAIR_COLUMNS)
        writer.writeheader()
        for record in result:
            writer.writerow(pair_row(record, names))
    return Path(path)


# ---------------------------------------------------------------------------------------------
# HTML


def _png_data_uri(image: np.ndarray, max_side: int = THUMBNAIL_SIDE) -> str:
    """[H, W] float in [0, 1] or [H, W, 3] uint8 RGB -> a data: URI of a PNG at most max_side."""
    import cv2

    if image.dtype != np.uint8:
        image = np.clip(np.round(np.asarray(image, np.float32) * 255), 0, 255).astype(np.uint8)
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        image = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                           interpolation=cv2.INTER_AREA)
    if image.ndim == 3:
        image = image[..., ::-1]  # OpenCV writes BGR
    ok, encoded = cv2.imencode(".png", image)
    return "data:image/png;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def _figure(image, caption: str, css_class: str) -> str:
    return (f'<figure><img class="{css_class}" src="{_png_data_uri(image)}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def heatmap_data_uri(vectors: np.ndarray, labels: list[str]) -> str:
    """The matrix of pairwise p_same = sigmoid(1 - f) as a PNG data URI (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from keras_forensics.screening.pairs import distance_matrix

    p_same = 1.0 / (1.0 + np.exp(-(1.0 - distance_matrix(vectors))))
    count = len(labels)
    size = min(10.0, 3.0 + 0.12 * count)
    figure, axes = plt.subplots(figsize=(size + 1.2, size), dpi=100)
    shown = axes.imshow(p_same, vmin=0.0, vmax=1.0, cmap="magma", interpolation="nearest")
    figure.colorbar(shown, ax=axes, fraction=0.046, pad=0.04, label="p_same")
    if count <= 40:
        axes.set_xticks(range(count), labels, rotation=90, fontsize=7)
        axes.set_yticks(range(count), labels, fontsize=7)
    else:
        axes.set_xlabel("panel number")
        axes.set_ylabel("panel number")
    axes.set_title("Siamese p_same of every pair of panels")
    figure.tight_layout()
    buffer = _io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
h1 { margin-bottom: 4px; } .meta { color: #555; margin-top: 0; }
table.pairs { border-collapse: collapse; width: 100%; }
table.pairs td { border-top: 1px solid #ccc; padding: 8px; vertical-align: top; }
figure { margin: 0 6px 4px 0; display: inline-block; text-align: center; max-width: 204px;
         vertical-align: top; }
figure img { max-width: 200px; max-height: 200px; border: 1px solid #999; image-rendering: auto; }
figcaption { font-size: 11px; color: #444; word-break: break-all; }
.scores { font-size: 13px; min-width: 190px; } .scores b { font-size: 18px; }
.relation { display: inline-block; padding: 1px 6px; border-radius: 4px; color: white; font-size: 12px; }
.within-figure { background: #b03a2e; } .within-paper { background: #ca6f1e; }
.across-papers { background: #1f618d; } .identical-file { background: #6c3483; }
.problems li { color: #922; } .note { color: #555; font-size: 12px; }
"""


def _candidates_text(result) -> str:
    """How the verified pairs were chosen, for the report's header."""
    turned = " (smallest over 8 orientations)" if getattr(result, "turns", False) else ""
    index = f"; index {html.escape(result.index)}" if result.index else ""
    search = f"Siamese distance{turned} &le; {result.threshold:g} or nearest neighbours"
    if result.method == "all pairs":
        text = "candidate pairs: all pairs within the input"
        return text + (f"; from the index, {search}{index}" if result.index else "")
    return f"candidate pairs: {search} ({html.escape(result.method)} search{index})"


def render_html(result, names: dict, scorer=None, progress: bool = False, max_rows: int = MAX_ROWS,
                max_explained: int = MAX_EXPLAINED) -> str:
    """The report page (see the module docstring)."""
    from tqdm.auto import tqdm

    suspects = [r for r in result if r.combined > SUSPECT_SCORE][:max_rows]
    counts = {}
    for record in suspects:
        counts[record.relation] = counts.get(record.relation, 0) + 1
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        "<title>keras_forensics screening report</title>", f"<style>{_STYLE}</style></head><body>",
        "<h1>Screening report</h1>",
        f'<p class="meta">Inputs: {html.escape(", ".join(result.inputs))}<br>'
        f"Model: {html.escape(str(result.model))}; {_candidates_text(result)}, "
        f"confirmed by SIFT keypoints + RANSAC.<br>"
        f"Combined score: {html.escape(_combiner_text(result.combiner))}<br>"
        f"{len(result.panels)} panel(s) screened, {len(result)} candidate pair(s), "
        f"<b>{len(suspects)} suspected</b> (combined &gt; {SUSPECT_SCORE:g})"
        + "".join(f', <span class="relation {k}">{v} {k}</span>' for k, v in sorted(counts.items()))
        + "</p>",
    ]
    if result.problems:
        parts.append(f'<h2>Not screened ({len(result.problems)})</h2><ul class="problems">')
        parts += [f"<li>{html.escape(str(p))}</li>" for p in result.problems]
        parts.append("</ul>")
    parts.append("<h2>Suspected re-uses</h2>")
    if not suspects:
        parts.append("<p>No pair scored above the threshold. All candidate pairs are in pairs.csv.</p>")
    else:
        parts.append('<table class="pairs">')
        explained = 0
        for record in tqdm(suspects, desc="writing report", unit="pair", disable=not progress, leave=False):
            explain = scorer is not None and explained < max_explained
            parts.append(_pair_html(record, names, scorer if explain else None))
            explained += explain and record.a.image is not None and record.b.image is not None
        parts.append("</table>")
        if len([r for r in result if r.combined > SUSPECT_SCORE]) > len(suspects):
            parts.append(f'<p class="note">Only the first {len(suspects)} suspected pairs are shown; '
                         "pairs.csv has them all.</p>")
    parts.append(_heatmap_html(result, suspects))
    parts.append("</body></html>")
    return "\n".join(parts)


def _combiner_text(combiner) -> str:
    if combiner is None:
        return "none"
    return (f"sigmoid({combiner.bias:.3g} + {combiner.siamese_weight:.3g}*(1 - distance) + "
            f"{combiner.inlier_weight:.3g}*log(1 + inliers) + {combiner.coverage_weight:.3g}*coverage), "
            f"calibration: {combiner.fitted_on}")


def _pair_html(record, names: dict, scorer) -> str:
    from keras_forensics.screening.verify import align, overlay

    a, b = record.a, record.b
    name_a, name_b = names.get(id(a), a.file), names.get(id(b), b.file)
    scores = [f'<b>#{record.rank}</b> <span class="relation {record.relation}">{record.relation}</span><br>',
              f"combined <b>{record.combined:.3f}</b><br>",
              f"Siamese distance {record.distance:.3f}, p_same {record.p_same:.3f}<br>"]
    if record.inliers is not None:
        spread = record.verification.coverage if record.verification is not None else 0.0
        scores.append(f"verifier inliers {record.inliers}"
                      + (f", spanning {spread:.0%} of A" if record.inliers else "") + "<br>")
    if record.transform:
        scores.append(f"B = A {html.escape(record.transform)}<br>")
    if record.note:
        scores.append(f'<span class="note">{html.escape(record.note)}</span>')
    cells = [f'<td class="scores">{"".join(scores)}</td>']
    pictures = []
    if a.image is not None and b.image is not None:
        pictures.append(_figure(a.image, f"A: {a.label}", "panel-a"))
        pictures.append(_figure(b.image, f"B: {b.label}", "panel-b"))
        verification = record.verification
        if verification is not None and verification.matrix is not None:
            warped, shared = align(a.image, b.image, verification)
            share = 100.0 * shared.mean()
            pictures.append(_figure(overlay(a.image, warped, shared),
                                    f"aligned overlay (A magenta, B green; shared area {share:.0f}% of A)",
                                    "overlay"))
        if scorer is not None and not record.note:  # identical files need no explaining
            from keras_forensics.screening.explain import explain_pair, heat_overlay

            map_a, map_b, method = explain_pair(scorer, a.image, b.image)
            pictures.append(_figure(heat_overlay(a.image, map_a), f"{method}: A", "similarity-map"))
            pictures.append(_figure(heat_overlay(b.image, map_b), f"{method}: B", "similarity-map"))
    else:
        pictures.append(f'<p class="note">{html.escape(a.file)}<br>{html.escape(b.file)}</p>')
    cells.append(f"<td>{''.join(pictures)}</td>")
    return (f'<tr class="pair" data-rank="{record.rank}" data-a="{html.escape(name_a)}" '
            f'data-b="{html.escape(name_b)}">{"".join(cells)}</tr>')


def _heatmap_html(result, suspects) -> str:
    vectors = getattr(result, "vectors", None)
    if vectors is None or len(result.panels) < 2:
        return ""
    indices = list(range(len(result.panels)))
    note = ""
    if len(indices) > HEATMAP_MAX_PANELS:
        position = {id(p): i for i, p in enumerate(result.panels)}
        chosen = []
        for record in list(suspects) + list(result):
            for panel in (record.a, record.b):
                i = position.get(id(panel))
                if i is not None and i not in chosen:
                    chosen.append(i)
        indices = sorted(chosen[:HEATMAP_MAX_PANELS])
        note = (f" ({len(indices)} of {len(result.panels)} panels: those of the top candidate pairs)")
    labels = [f"{i + 1}" for i in indices]
    uri = heatmap_data_uri(np.asarray(vectors)[indices], labels)
    legend = "".join(f"<li>{i + 1}: {html.escape(result.panels[i].label)}</li>" for i in indices)
    return (f"<h2>All pairs: Siamese p_same{html.escape(note)}</h2>"
            f'<img class="heatmap" src="{uri}" alt="heat map of pairwise p_same">'
            f"<details><summary>panel numbers</summary><ol style=\"list-style:none\">{legend}</ol></details>")
