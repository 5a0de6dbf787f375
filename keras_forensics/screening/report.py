"""What `screen --out REPORT_DIR` writes: pairs.csv, panels/ and a self-contained report.html.

pairs.csv (one row per candidate pair, best first; the column names are a contract):

    rank, a, b, distance, p_same, inliers, transform, combined, relation,
    a_file, a_page, a_box, b_file, b_page, b_box, note, group

* a, b: the panel crops, relative to REPORT_DIR (panels/<key>.png); for identical PDF files,
  the files themselves.
* distance: the Siamese distance f; p_same = sigmoid(s (1 - distance)), s = 1 for the paper's network
  and calibrated for the copy-detection descriptor.
* inliers: keypoint inliers of the verifier (empty when not verified); transform: the estimated
  similarity from a to b (rotation, scale, shift, mirror).
* combined: the calibrated combined score (see `scoring`), the ranking key.
* relation: within-figure, within-paper, across-papers, or identical-file.
* *_file, *_page, *_box: where each panel comes from (page empty for image files; box
  "x,y,width,height" in pixels of the figure image).
* note: "identical file (sha256 ...)" for byte-identical files; "verifier rejected: ..." when
  the verifier found a transform no re-use has (`verify.implausible`).
* group: the re-use group (`groups`: 1 = the best) of a confirmed pair (combined >
  `scoring.REUSE_SCORE`); empty for the others.

report.html embeds every picture as a data URI, so it can be mailed or archived as one file. One
card per re-use group, best first: the reference panel and every other member aligned to it (the
verifier's transform), then the group's pairs with both panels, the aligned overlay, the
similarity maps and the scores. The first `groups_in_full` groups are shown so; the rest are rows
of a table without pictures. Then the heat map of all pairwise p_same and every input that could
not be screened, with the reason. Pictures are JPEG thumbnails at the size they are shown (the
heat map a PNG), and the page stays under `max_bytes` (10 MB) whatever the input: when the cards
would exceed it, the later groups lose their pictures first, then move to the table, and the page
says so. pairs.csv always holds every pair.

A REPORT_DIR used before is cleared of the earlier screen's files first (`clear_previous`):
report.html, pairs.csv and the crops of panels/; nothing else in it is touched.
"""

from __future__ import annotations

import csv
import html
import re
from pathlib import Path

import numpy as np

from keras_forensics.data import pictures
from keras_forensics.screening import groups as groups_lib
from keras_forensics.screening.scoring import REUSE_SCORE

PAIR_COLUMNS = ("rank", "a", "b", "distance", "p_same", "inliers", "transform", "combined", "relation",
                "a_file", "a_page", "a_box", "b_file", "b_page", "b_box", "note", "group")

#: The first this many groups get their card in full (`screen --groups_in_full`).
GROUPS_IN_FULL = 50
#: Similarity maps (a gradient pass each) for at most this many pairs.
MAX_EXPLAINED = 60
#: report.html stays under this many bytes.
MAX_REPORT_BYTES = 10_000_000
HEATMAP_MAX_PANELS = 150
#: Thumbnails' longer side, in CSS pixels: they are encoded at the size they are shown.
THUMBNAIL_SIDE = 200
JPEG_QUALITY = pictures.JPEG_QUALITY


def write(out, result, scorer=None, progress: bool = False, groups_in_full: int = GROUPS_IN_FULL,
          max_explained: int = MAX_EXPLAINED, max_bytes: int = MAX_REPORT_BYTES) -> Path:
    """Write pairs.csv, panels/ and report.html for a `ScreenResult`; returns report.html's path.

    What an earlier screen wrote into `out` is removed first (`clear_previous`), so a re-used
    folder holds this run's output only."""
    out = Path(out)
    clear_previous(out)
    (out / "panels").mkdir(parents=True, exist_ok=True)
    names = _write_panels(out, result)
    groups = groups_lib.find_groups(result)
    write_pairs_csv(out / "pairs.csv", result, names, groups)
    page = render_html(result, names, scorer, progress, groups_in_full, max_explained, max_bytes, groups)
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


#: The files a screen writes into REPORT_DIR; panels/ holds crops named as `_CROP_NAME` says.
OWN_FILES = ("report.html", "pairs.csv")
_CROP_NAME = re.compile(r"(?:[0-9]{5,}_.*|identical[0-9]+[ab])\.png")


def clear_previous(out) -> list[Path]:
    """Remove the files an earlier screen wrote into `out`: report.html, pairs.csv and the panel
    crops in panels/ (by their names: `<5-digit number>_*.png`, `identical<n>a|b.png`). A user's
    other files stay where they are; a re-used --out used to keep the old run's crops beside the
    new ones. Returns what it removed."""
    out = Path(out)
    removed = [out / name for name in OWN_FILES if (out / name).is_file()]
    crops = out / "panels"
    if crops.is_dir() and not crops.is_symlink():
        removed += [crop for crop in crops.iterdir() if _CROP_NAME.fullmatch(crop.name) and crop.is_file()
                    and not crop.is_symlink()]
    for path in removed:
        path.unlink()
    return removed


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


def pair_row(record, names: dict, group: int | None = None) -> dict:
    """One pairs.csv row of a PairRecord (`group`: its re-use group's number, if confirmed)."""
    row = {"rank": record.rank, "a": names.get(id(record.a), record.a.file),
           "b": names.get(id(record.b), record.b.file), "distance": _format(record.distance),
           "p_same": _format(record.p_same), "inliers": _format(record.inliers),
           "transform": record.transform, "combined": _format(record.combined), "relation": record.relation,
           "note": record.note, "group": "" if group is None else group}
    for side, panel in (("a", record.a), ("b", record.b)):
        row[f"{side}_file"] = panel.file
        row[f"{side}_page"] = "" if panel.page is None else panel.page
        row[f"{side}_box"] = ",".join(str(v) for v in panel.box) if panel.image is not None else ""
    return row


def write_pairs_csv(path, result, names: dict, groups=None) -> Path:
    """pairs.csv of a ScreenResult; `groups` (`groups.find_groups`, computed when not given) fill
    the group column."""
    number = groups_lib.group_numbers(groups_lib.find_groups(result) if groups is None else groups)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=PAIR_COLUMNS)
        writer.writeheader()
        for record in result:
            writer.writerow(pair_row(record, names, number.get(id(record))))
    return Path(path)


# ---------------------------------------------------------------------------------------------
# HTML


def _thumbnail(image: np.ndarray, max_side: int = THUMBNAIL_SIDE) -> tuple[str, int, int]:
    """(JPEG data URI, width, height) of a panel, at most max_side: encoded at the size shown."""
    return pictures.jpeg_thumbnail(image, max_side, JPEG_QUALITY)


def _figure(image, caption: str, css_class: str) -> str:
    uri, width, height = _thumbnail(image)
    return (f'<figure><img class="{css_class}" src="{uri}" width="{width}" height="{height}" '
            f'alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}</figcaption></figure>')


def heatmap_data_uri(vectors: np.ndarray, labels: list[str], metric: str = "l1", sharpness: float = 1.0) -> str:
    """The matrix of pairwise p_same = sigmoid(s (1 - f)) as a PNG data URI (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from keras_forensics.screening.pairs import distance_matrix

    p_same = 1.0 / (1.0 + np.exp(-sharpness * (1.0 - distance_matrix(vectors, metric))))
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
    return pictures.figure_png(figure)


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
h1 { margin-bottom: 4px; } .meta { color: #555; margin-top: 0; }
section.group { border: 1px solid #bbb; border-radius: 6px; padding: 8px 12px; margin: 0 0 18px 0; }
section.group h3 { margin: 2px 0 8px 0; font-size: 16px; }
.members { display: flex; flex-wrap: wrap; align-items: flex-start; }
table.pairs { border-collapse: collapse; width: 100%; }
table.pairs td { border-top: 1px solid #ccc; padding: 8px; vertical-align: top; }
table.pairs td.scores { width: 220px; }
table.groups { border-collapse: collapse; font-size: 13px; }
table.groups th, table.groups td { border-top: 1px solid #ccc; padding: 4px 8px; text-align: left;
                                   vertical-align: top; }
figure { margin: 0 6px 4px 0; display: inline-block; text-align: center; max-width: 204px;
         vertical-align: top; }
figure img { border: 1px solid #999; }
figcaption { font-size: 11px; color: #444; word-break: break-all; }
figure.reference img { border: 2px solid #1f618d; }
.scores { font-size: 13px; } .scores b { font-size: 18px; }
.relation { display: inline-block; padding: 1px 6px; border-radius: 4px; color: white; font-size: 12px; }
.within-figure { background: #b03a2e; } .within-paper { background: #ca6f1e; }
.across-papers { background: #1f618d; } .identical-file { background: #6c3483; }
.problems li { color: #922; } .note { color: #555; font-size: 12px; }
.unaligned { display: inline-block; width: 200px; padding: 6px; font-size: 12px; color: #555; }
"""


def _candidates_text(result) -> str:
    """How the verified pairs were chosen, for the report's header."""
    turned = " (smallest over 8 orientations)" if getattr(result, "turns", False) else ""
    index = f"; index {html.escape(result.index)}" if result.index else ""
    search = f"each panel's {getattr(result, 'neighbours', 0)} nearest by Siamese distance{turned}"
    if result.threshold is not None:
        search += f", and every pair within distance {result.threshold:g}"
    if result.method == "all pairs":
        text = "candidate pairs: all pairs within the input"
        return text + (f"; from the index, {search}{index}" if result.index else "")
    return f"candidate pairs: {search} ({html.escape(result.method)} search{index})"


def _relations_html(records) -> str:
    counts = {}
    for record in records:
        counts[record.relation] = counts.get(record.relation, 0) + 1
    return "".join(f' <span class="relation {k}">{v} {k}</span>' for k, v in sorted(counts.items()))


def render_html(result, names: dict, scorer=None, progress: bool = False, groups_in_full: int = GROUPS_IN_FULL,
                max_explained: int = MAX_EXPLAINED, max_bytes: int = MAX_REPORT_BYTES, groups=None) -> str:
    """The report page (see the module docstring); `groups` are computed when not given."""
    from tqdm.auto import tqdm

    groups = groups_lib.find_groups(result) if groups is None else groups
    confirmed = [r for group in groups for r in group.pairs]
    head = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        "<title>keras_forensics screening report</title>", f"<style>{_STYLE}</style></head><body>",
        "<h1>Screening report</h1>",
        f'<p class="meta">Inputs: {html.escape(", ".join(result.inputs))}<br>'
        f"Model: {html.escape(str(result.model))}; {_candidates_text(result)}, "
        f"confirmed by SIFT keypoints + RANSAC.<br>"
        f"Combined score: {html.escape(_combiner_text(result.combiner))}<br>"
        f"{len(result.panels)} panel(s) screened, {len(result)} candidate pair(s), "
        f"<b>{len(confirmed)} suspected</b> (combined &gt; {REUSE_SCORE:g}) "
        f"in <b>{len(groups)} group(s)</b> of re-used panels" + _relations_html(confirmed) + "</p>",
    ]
    if result.problems:
        head.append(f'<h2>Not screened ({len(result.problems)})</h2><ul class="problems">')
        head += [f"<li>{html.escape(str(p))}</li>" for p in result.problems]
        head.append("</ul>")
    tail = [_heatmap_html(result, confirmed), "</body></html>"]
    rows = {group.number: _group_row_html(group, names) for group in groups}
    # The budget left for the cards, counting every group's table row as if all were tabled.
    budget = max_bytes - sum(pictures.size(p) + 1 for p in head + tail) - sum(map(pictures.size, rows.values())) - 4096
    cards, tabled, reduced = [], [], []
    level = "full"
    explained = 0
    for group in tqdm(groups, desc="writing report", unit="group", disable=not progress, leave=False):
        card = None
        while group.number <= groups_in_full and level != "table" and card is None:
            explain = scorer if level == "full" else None
            card = _group_html(group, names, explain, max_explained - explained, pictures=level == "full")
            if pictures.size(card) + 1 > budget:
                card = None
                level = "pictures dropped" if level == "full" else "table"
        if card is None:
            tabled.append(group)
            if group.number <= groups_in_full:
                reduced.append(group.number)
            continue
        budget -= pictures.size(card) + 1
        if level != "full":
            reduced.append(group.number)
        explained += _explained(group, scorer, max_explained - explained) if level == "full" else 0
        cards.append(card)
    body = ["<h2>Re-used panels</h2>"]
    if not groups:
        body.append("<p>No pair scored above the threshold. All candidate pairs are in pairs.csv.</p>")
    if reduced:
        several = len(reduced) > 1
        body.append(f'<p class="note">report.html is kept under {max_bytes / 1e6:g} MB: '
                    f"{'groups' if several else 'group'} {_numbers_text(reduced)} {'are' if several else 'is'} "
                    "shown with fewer pictures or in the table below. pairs.csv has every pair.</p>")
    body += cards
    if tabled:
        body.append(f"<h2>More groups ({len(tabled)}), without pictures</h2>"
                    '<table class="groups"><tr><th>group</th><th>best combined</th><th>panels</th>'
                    "<th>pairs (rank)</th><th>relation</th><th>members (reference first)</th></tr>")
        body += [rows[group.number] for group in tabled]
        body.append("</table>")
    return "\n".join(head + body + tail)


def _numbers_text(numbers) -> str:
    """[3, 4, 5, 9] -> '3-5, 9'."""
    runs = []
    for number in numbers:
        if runs and number == runs[-1][1] + 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)


def _explained(group, scorer, left: int) -> int:
    """How many of the group's pairs get similarity maps with `left` maps to go."""
    if scorer is None:
        return 0
    able = [r for r in group.pairs if r.a.image is not None and r.b.image is not None and not r.note]
    return min(len(able), max(left, 0))


def _combiner_text(combiner) -> str:
    if combiner is None:
        return "none"
    return (f"sigmoid({combiner.bias:.3g} + {combiner.siamese_weight:.3g}*(1 - distance) + "
            f"{combiner.inlier_weight:.3g}*log(1 + inliers) + {combiner.coverage_weight:.3g}*coverage), "
            f"calibration: {combiner.fitted_on}")


def _group_html(group, names: dict, scorer, explain: int, pictures: bool = True) -> str:
    """A group's card: the reference and the other members aligned to it, then its pairs (with
    their pictures, and similarity maps for the first `explain` of them, when `pictures`)."""
    members = []
    for member in group.members:
        if member is group.reference:
            members.append(_member_html(member, f"reference: {member.label}", "reference"))
            continue
        warped, shared, record = groups_lib.align_to_reference(group, member)
        if warped is not None:
            share = 100.0 * shared.mean()
            members.append(_member_html(warped, f"aligned to the reference ({share:.0f}% shared; pair "
                                        f"#{record.rank}): {member.label}", "aligned", member))
        else:
            why = "no transform to the reference" if record is not None else "not verified against the reference"
            members.append(_member_html(member, f"as it is ({why}): {member.label}", "unaligned"))
    pairs = []
    for record in group.pairs:
        explain_this = (scorer is not None and explain > 0 and record.a.image is not None
                        and record.b.image is not None and not record.note)
        pairs.append(_pair_html(record, names, scorer if explain_this else None, pictures))
        explain -= explain_this
    heading = (f"Group {group.number}: {len(group.members)} panels, {len(group.pairs)} confirmed pair(s), "
               f"best combined <b>{group.best:.3f}</b>" + _relations_html(group.pairs))
    return (f'<section class="group" id="group-{group.number}" data-group="{group.number}">'
            f'<h3>{heading}</h3><div class="members">{"".join(members)}</div>'
            f'<table class="pairs">{"".join(pairs)}</table></section>')


def _member_html(image_or_panel, caption: str, css_class: str, panel=None) -> str:
    """One picture of a card: a panel's pixels (or `image`, the aligned pixels of `panel`)."""
    image = getattr(image_or_panel, "image", image_or_panel)
    if image is None:  # an identical PDF file: no pixels, its name is the evidence
        return f'<p class="unaligned note">{html.escape(caption)}</p>'
    return _figure(image, caption, css_class)


def _group_row_html(group, names: dict) -> str:
    """A group as one row of the table of groups beyond the cards (no pictures)."""
    members = "<br>".join(html.escape(names.get(id(p), p.file)) + f' <span class="note">{html.escape(p.label)}</span>'
                          for p in group.members)
    ranks = ", ".join(f"#{r.rank}" for r in group.pairs)
    return (f'<tr class="group-row" data-group="{group.number}"><td>{group.number}</td>'
            f"<td>{group.best:.3f}</td><td>{len(group.members)}</td><td>{ranks}</td>"
            f"<td>{_relations_html(group.pairs)}</td><td>{members}</td></tr>")


def _pair_html(record, names: dict, scorer, pictures: bool = True) -> str:
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
    content = []
    if not pictures or a.image is None or b.image is None:
        content.append(f'<p class="note">A: {html.escape(a.label)}<br>B: {html.escape(b.label)}</p>')
    else:
        content.append(_figure(a.image, f"A: {a.label}", "panel-a"))
        content.append(_figure(b.image, f"B: {b.label}", "panel-b"))
        verification = record.verification
        if verification is not None and verification.matrix is not None:
            warped, shared = align(a.image, b.image, verification)
            share = 100.0 * shared.mean()
            content.append(_figure(overlay(a.image, warped, shared),
                                   f"aligned overlay (A magenta, B green; shared area {share:.0f}% of A)",
                                   "overlay"))
        if scorer is not None and not record.note:  # identical files need no explaining
            from keras_forensics.screening.explain import explain_pair, heat_overlay

            map_a, map_b, method = explain_pair(scorer, a.image, b.image)
            content.append(_figure(heat_overlay(a.image, map_a), f"{method}: A", "similarity-map"))
            content.append(_figure(heat_overlay(b.image, map_b), f"{method}: B", "similarity-map"))
    cells.append(f"<td>{''.join(content)}</td>")
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
    uri = heatmap_data_uri(np.asarray(vectors)[indices], labels, getattr(result, "metric", "l1"),
                           getattr(result, "sharpness", 1.0))
    legend = "".join(f"<li>{i + 1}: {html.escape(result.panels[i].label)}</li>" for i in indices)
    return (f"<h2>All pairs: Siamese p_same{html.escape(note)}</h2>"
            f'<img class="heatmap" src="{uri}" alt="heat map of pairwise p_same">'
            f"<details><summary>panel numbers</summary><ol style=\"list-style:none\">{legend}</ol></details>")
