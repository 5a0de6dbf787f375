"""Re-use groups (connected components of confirmed pairs), pairs.csv's group column, and a
report.html that stays small: JPEG thumbnails at display size, a size bound, the rest as a table."""

from __future__ import annotations

import base64
import csv
import html.parser

import cv2
import numpy as np
import pytest

from keras_forensics.screening import groups as groups_lib
from keras_forensics.screening import report
from keras_forensics.screening.panels import Panel
from keras_forensics.screening.screener import PairRecord, ScreenResult
from keras_forensics.screening.verify import Verification


def _panel(name: str, image: np.ndarray) -> Panel:
    height, width = image.shape
    return Panel(image, f"/in/{name}.png", None, None, (0, 0, width, height), "/in", f"/in/{name}.png", key=name,
                 figure_size=(width, height))


def _shift(dx: float, dy: float) -> Verification:
    """A verifier result whose transform maps A's pixels to B's by a shift (x + dx, y + dy)."""
    return Verification(40, 50, matrix=np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]]), coverage=0.9)


def _record(a, b, combined, verification=None, rank=0):
    return PairRecord(a, b, 0.2, 0.69, combined, "within-paper", 40 if verification else 0, verification, rank=rank)


def _ranked(records):
    records = sorted(records, key=lambda r: -r.combined)
    for rank, record in enumerate(records, start=1):
        record.rank = rank
    return records


def test_connected_components_of_a_hand_made_pair_list():
    components = groups_lib.connected_components([("A", "B"), ("B", "C"), ("D", "E")], nodes=["F"])
    assert sorted(map(sorted, components)) == [["A", "B", "C"], ["D", "E"], ["F"]]
    # Order of first appearance, and a chain closing on itself stays one component.
    assert groups_lib.connected_components([("x", "y"), ("z", "w"), ("w", "y"), ("y", "x")]) == [
        ["x", "y", "z", "w"]]
    assert groups_lib.connected_components([]) == []


def test_groups_reference_order_and_numbers():
    image = np.zeros((16, 16), np.float32)
    a, b, c, d, e, f = (_panel(n, image) for n in "ABCDEF")
    records = _ranked([_record(a, b, 0.99, _shift(1, 0)), _record(d, e, 0.95), _record(b, c, 0.90, _shift(0, 2)),
                       _record(a, c, 0.30, _shift(1, 2)), _record(c, f, 0.20), _record(e, f, 0.10)])
    groups = groups_lib.find_groups(records)
    assert [g.number for g in groups] == [1, 2]
    first, second = groups
    # B has two confirmed links (A-B, B-C): the reference. A-C (0.30) is not confirmed: no link.
    assert [p.key for p in first.members] == ["B", "A", "C"] and first.reference is b
    assert [(r.a.key, r.b.key) for r in first.pairs] == [("A", "B"), ("B", "C")]
    assert first.best == 0.99 and first.links(b) == 2 and first.links(a) == 1
    assert first.to_reference[id(a)] is records[0] and first.to_reference[id(c)] is records[2]
    # A tie in links goes to the panel of the better-ranked pair, A before B.
    assert [p.key for p in second.members] == ["D", "E"] and second.best == 0.95
    numbers = groups_lib.group_numbers(groups)
    assert [numbers.get(id(r)) for r in records] == [1, 2, 1, None, None, None]
    # A result's groups are the same; the definition of "confirmed" is PairRecord.same.
    assert [[p.key for p in g.members] for g in ScreenResult(records).groups] == [["B", "A", "C"], ["D", "E"]]
    assert [r.same for r in records] == [True, True, True, False, False, False]


def test_members_align_to_the_reference_through_their_own_pair(rng):
    reference = rng.random((40, 48)).astype(np.float32)
    # member[y + 2, x + 3] = reference[y, x]: the transform reference -> member is a shift by (3, 2).
    member = np.zeros_like(reference)
    member[2:, 3:] = reference[:-2, :-3]
    ref, one, two, loner = (_panel("ref", reference), _panel("one", member), _panel("two", member),
                            _panel("loner", member))
    records = _ranked([_record(ref, one, 0.99, _shift(3, 2)),  # the reference is A
                       _record(two, ref, 0.98, _shift(-3, -2)),  # the reference is B
                       _record(one, loner, 0.97, _shift(0, 0))])  # loner: never verified against ref
    group, = groups_lib.find_groups(records)
    assert group.reference is ref
    for panel in (one, two):
        warped, shared, record = groups_lib.align_to_reference(group, panel)
        assert record.a is ref or record.b is ref
        assert warped.shape == reference.shape and shared[:-2, :-3].all() and not shared[-1].any()
        np.testing.assert_allclose(warped[:-2, :-3], reference[:-2, :-3], atol=1e-6)
    assert groups_lib.align_to_reference(group, loner) == (None, None, None)


def _synthetic_result(groups: int, size: int, rng) -> ScreenResult:
    """`groups` re-used pairs of large noise panels (the worst case for JPEG), plus one unconfirmed pair."""
    images = [rng.random((size, size)).astype(np.float32) for _ in range(4)]
    records = []
    for number in range(groups):
        a = _panel(f"p{number}a", images[number % 4])
        b = _panel(f"p{number}b", images[(number + 1) % 4])
        records.append(_record(a, b, 0.999 - 0.001 * number, _shift(0, 0)))
    records.append(_record(records[0].a, records[1].a, 0.2))
    records = _ranked(records)
    return ScreenResult(records, [p for r in records[:-1] for p in (r.a, r.b)], inputs=["/in"], model="tiny")


class _Images(html.parser.HTMLParser):
    """Every <img> of a page (with the card or table row it is in)."""

    def __init__(self):
        super().__init__()
        self.images, self.cards, self.table_rows, self._where = [], [], [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section" and attrs.get("class") == "group":
            self._where = ("card", int(attrs["data-group"]))
            self.cards.append(self._where[1])
        elif tag == "tr" and attrs.get("class") == "group-row":
            self._where = ("table", int(attrs["data-group"]))
            self.table_rows.append(self._where[1])
        elif tag == "img":
            self.images.append((self._where, attrs))

    def handle_endtag(self, tag):
        if tag in ("section", "tr") and self._where and self._where[0] == ("card" if tag == "section" else "table"):
            self._where = None


def _pixels(uri: str) -> np.ndarray:
    header, data = uri.split(",", 1)
    assert header == "data:image/jpeg;base64"
    return cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_UNCHANGED)


def test_pairs_csv_keeps_its_columns_and_adds_group(tmp_path, rng):
    result = _synthetic_result(3, 64, rng)
    report.write(tmp_path, result, groups_in_full=2)
    with open(tmp_path / "pairs.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames[-1] == "group" and tuple(reader.fieldnames) == report.PAIR_COLUMNS
    assert report.PAIR_COLUMNS[:-1] == ("rank", "a", "b", "distance", "p_same", "inliers", "transform", "combined",
                                        "relation", "a_file", "a_page", "a_box", "b_file", "b_page", "b_box", "note")
    assert [r["group"] for r in rows] == ["1", "2", "3", ""]
    assert [r["rank"] for r in rows] == ["1", "2", "3", "4"]


def test_thumbnails_are_jpeg_at_the_size_shown(tmp_path, rng):
    result = _synthetic_result(2, 900, rng)
    page = report.write(tmp_path, result).read_text()
    parser = _Images()
    parser.feed(page)
    assert parser.cards == [1, 2] and len(parser.images) == 2 * (2 + 3)  # card: 2 members; pair: A, B, overlay
    for _, attrs in parser.images:
        pixels = _pixels(attrs["src"])
        assert pixels.shape[:2] == (int(attrs["height"]), int(attrs["width"])) == (200, 200)
    assert "image/png" not in page  # no heat map without embeddings; nothing else is a PNG


def _render(result, path, **options):
    """report.html alone (report.write would also save every large panel as a PNG crop)."""
    names = {id(p): report.panel_name(p) for p in result.panels}
    path.write_text(report.render_html(result, names, **options), encoding="utf-8")
    return path


def _in_full(parser) -> list[int]:
    """The groups whose pairs are shown with their pictures."""
    return sorted({where[1] for where, attrs in parser.images if where and attrs.get("class") == "panel-a"})


def test_report_stays_under_the_size_bound_and_tables_the_rest(tmp_path, rng):
    result = _synthetic_result(400, 640, rng)
    path = _render(result, tmp_path / "report.html", groups_in_full=300)
    size = path.stat().st_size
    assert 5e6 < size < report.MAX_REPORT_BYTES == 10_000_000
    page = path.read_text()
    parser = _Images()
    parser.feed(page)
    # Early groups keep their pictures, later ones lose them, the rest are table rows without any.
    full = _in_full(parser)
    assert full == list(range(1, len(full) + 1)) and 10 < len(full) < 300
    assert parser.cards + parser.table_rows == list(range(1, 401))
    assert all(where is None or where[0] == "card" for where, _ in parser.images)
    assert f"report.html is kept under 10 MB: groups {len(full) + 1}-300 are shown with fewer pictures" in page
    # Within the bound, the groups beyond N are the table: N cards, 400 - N rows.
    small = _render(result, tmp_path / "small.html", groups_in_full=5)
    parser = _Images()
    parser.feed(small.read_text())
    assert parser.cards == [1, 2, 3, 4, 5] and parser.table_rows == list(range(6, 401))
    assert small.stat().st_size < 1e6 and "is kept under" not in small.read_text()
    # A tighter bound drops detail from the later groups first.
    tight = _render(result, tmp_path / "tight.html", groups_in_full=5, max_bytes=600_000)
    parser = _Images()
    parser.feed(tight.read_text())
    full = _in_full(parser)
    assert tight.stat().st_size < 600_000 and 1 <= len(full) < 5 and full == list(range(1, len(full) + 1))
    assert parser.cards + parser.table_rows == list(range(1, 401))
    reduced = "group 5 is" if len(full) == 4 else f"groups {len(full) + 1}-5 are"
    assert f"kept under 0.6 MB: {reduced} shown with fewer pictures" in tight.read_text()


@pytest.mark.parametrize("value", [-1, 2.5, True])
def test_groups_in_full_must_be_a_count(value):
    from keras_forensics.errors import ForensicsError
    from keras_forensics.screening.screener import Screener

    with pytest.raises(ForensicsError, match="--groups_in_full must be a whole number >= 0"):
        Screener(scorer=None, progress=False).screen(["/nowhere"], groups_in_full=value)
