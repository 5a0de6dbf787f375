"""`Screener`: the Python API of screening (the CLI commands are thin wrappers around it).

Example:
    >>> from keras_forensics import Screener
    >>> screener = Screener.load()                       # saved_models/siamese, or model=RUN_DIR
    >>> screener.similarity("fig1.png", "fig2.png")      # {"distance": ..., "p_same": ..., "same": ...}
    >>> pairs = screener.screen(["manuscript.pdf", "figures/"], out="report")
    >>> for pair in pairs[:5]:
    ...     print(pair.rank, pair.a.label, pair.b.label, pair.combined, pair.relation)

Two stages (Cicconet et al. retrieve; a keypoint verifier confirms):
1. every panel is embedded once (weighted embeddings, batched, with a progress bar). Up to
   `verify_all_max` pairs (a manuscript), every pair is a candidate. Above, the shortlist: each
   panel's `neighbours` (K, default 10) nearest panels, from an exact blockwise comparison (up to
   `exact_max` panels), FAISS flat (exact, up to `pairs.FLAT_MAX`) or FAISS HNSW (above); pairs
   within an optional `threshold` are added. An index of earlier papers (`index=`) adds each
   panel's K nearest indexed panels;
2. each candidate is verified with SIFT + RANSAC (`verify.Verifier`), and the calibrated
   `scoring.CombinedScore` of p_same and inliers ranks the pairs.
Byte-identical files are reported first, with distance 0, before any network runs.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from pathlib import Path

import numpy as np

from keras_forensics.data import io
from keras_forensics.errors import ForensicsError
from keras_forensics.screening import panels as panels_lib
from keras_forensics.screening.panels import Panel
from keras_forensics.screening.scoring import REUSE_SCORE, CombinedScore

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class PairRecord:
    """One suspected pair. `a` / `b` are Panels (their file, page, box, pixels).

    Attributes:
        distance: the Siamese distance f (0 for identical files).
        p_same: sigmoid(1 - distance).
        inliers: verifier inlier count (None when the pair was not verified).
        verification: the verifier's full result (transform, inlier points), or None.
        combined: the calibrated combined score in [0, 1]; pairs are ranked by it.
        relation: within-figure, within-paper or across-papers.
        note: "identical file" for byte-identical files, why the verifier rejected the
            transform it found ("verifier rejected: scale 0.09 ..."), else "".
        rank: 1 = most suspicious.
    """

    a: Panel
    b: Panel
    distance: float
    p_same: float
    combined: float
    relation: str
    inliers: int | None = None
    verification: object = None
    note: str = ""
    rank: int = 0

    @property
    def transform(self) -> str:
        return self.verification.transform_text() if self.verification is not None else ""

    @property
    def same(self) -> bool:
        """Whether the screen calls this pair a re-use: combined > `scoring.REUSE_SCORE`."""
        return self.combined > REUSE_SCORE


class ScreenResult(list):
    """The ranked PairRecords, plus what was screened and what was skipped.

    Attributes:
        panels: every panel screened (index panels excluded).
        problems: inputs or parts of inputs that could not be screened, with the reason.
        method: how candidate pairs were found ("exact", "hnsw", ...).
        timings: wall seconds of each stage of the screen: read, embed, search, verify, report.
    """

    def __init__(self, records=(), panels=(), problems=(), method="", inputs=(), model="", threshold=1.0,
                 combiner=None, index=None):
        super().__init__(records)
        self.panels = list(panels)
        self.problems = list(problems)
        self.method = method
        self.inputs = [str(i) for i in inputs]
        self.model = model
        self.threshold = threshold
        self.combiner = combiner
        self.index = index
        self.vectors = None  # weighted embeddings of `panels` ([N, D] or oriented [N, 8, D]), for the heat map
        self.turns = False  # whether panels were compared in 8 orientations
        self.metric, self.sharpness = "l1", 1.0  # how `vectors` are compared (the scorer's)
        self.neighbours = 0  # the shortlist's K
        self.timings: dict[str, float] = {}  # seconds per stage: read, embed, search, verify, report

    @property
    def groups(self) -> list:
        """The re-use groups: confirmed pairs joined into connected components (`groups.Group`,
        best first)."""
        from keras_forensics.screening.groups import find_groups

        return find_groups(self)


class Screener:
    """Screens panels for re-use. See the module docstring for the two stages.

    Args:
        scorer: a `model.SiameseScorer`.
        combiner: the calibrated `CombinedScore` (default: the shipped calibration).
        neighbours: the shortlist: each panel's `neighbours` nearest panels (K) are its
            candidates, whatever their distance, so the verifier's work grows linearly with the
            archive.
        threshold: optionally, also every pair within this Siamese distance (f <= 1 is the paper's
            "same"); None (the default): the distance alone admits no pair, since a threshold
            that admits the re-uses of a weak descriptor admits a share of all pairs.
        exact_max: above this many panels, FAISS (flat up to `pairs.FLAT_MAX`, HNSW above)
            replaces the exact blockwise comparison.
        verify_all_max: up to this many pairs (and with `verify`), every pair is verified, not
            only the Siamese candidates: the verifier is far more accurate than the network on
            real re-uses, and cheap enough for a manuscript. 0: always retrieve first.
        split: "pdf" splits PDF figures into panels, "all" also image files, "none" nothing.
        min_panel_size: panels smaller than this (px, either side) are skipped with a message.
        max_pixels: images (PDF images, TIFF pages) above this many pixels are not decoded but
            skipped with a message (decompression bombs; default `io.DEFAULT_MAX_PIXELS`).
        verify: run the keypoint verifier on candidates (False: Siamese only).
        turns: compare panels in all 8 orientations (quarter turns, mirrored), so a panel re-used
            turned or mirrored is found; a pair's distance is then the smallest over orientations.
            False: each panel only as it is (the network's own f, as TF-Serving computes it).
        normalise: normalise distances against the model's background set (SSCD score
            normalisation, `screening.background`), when the model ships one: the shortlist, the
            threshold and the reported distance are then f_norm. Off by default: on the
            validation archive (`tools/benchmark.py archive --split validation`) it lowered the
            descriptor's all-pairs AP from 0.45 to 0.16 and left recall@10 at 0.78 (README).
        progress: progress bars on stderr.
    """

    def __init__(self, scorer, combiner: CombinedScore | None = None, threshold: float | None = None,
                 neighbours: int = 10, exact_max: int | None = None, verify_all_max: int | None = None,
                 split: str = "pdf",
                 min_panel_size: int = panels_lib.MIN_PANEL_SIZE, verify: bool = True, turns: bool = True,
                 progress: bool = True, normalise: bool = False, max_pixels: int | None = None):
        from keras_forensics.screening.pairs import EXACT_MAX, VERIFY_ALL_MAX

        check_options(threshold=threshold, neighbours=neighbours, exact_max=exact_max,
                      verify_all_max=verify_all_max, min_panel_size=min_panel_size, max_pixels=max_pixels)
        self.scorer = scorer
        self.combiner = combiner or CombinedScore.load()
        self.threshold = None if threshold is None else float(threshold)
        self.neighbours = int(neighbours)
        self.exact_max = EXACT_MAX if exact_max is None else int(exact_max)
        self.verify_all_max = VERIFY_ALL_MAX if verify_all_max is None else int(verify_all_max)
        self.split = split
        self.min_panel_size = int(min_panel_size)
        self.max_pixels = io.pixel_limit(max_pixels)
        self.verify = verify
        self.turns = bool(turns)
        self.progress = progress
        self.normalise = bool(normalise)
        if self.normalise and scorer.background is None:
            raise ForensicsError(f"--normalise: {scorer.source} ships no background set (a descriptor run's "
                                 "background.npz, which tools/export.py copies into assets.extra/)")
        self._verifier = None

    @classmethod
    def load(cls, model: str | os.PathLike | None = None, calibration: str | os.PathLike | None = None,
             **options) -> "Screener":
        """A Screener with the Siamese model at `model` (default saved_models/siamese) and the
        calibration file `calibration` (default: the shipped one). Other options: see the class."""
        from keras_forensics.screening.model import load_scorer

        return cls(load_scorer(model), CombinedScore.load(calibration), **options)

    @property
    def _admitting(self) -> float:
        """The distance up to which the search admits every pair (-inf: only the shortlist)."""
        return -math.inf if self.threshold is None else self.threshold

    @property
    def oriented(self) -> bool:
        """Whether panels are compared in 8 orientations: `turns`, unless the model's embedding is
        invariant to them already (the copy-detection descriptor), where the search would only
        cost 8x for the same distances."""
        return self.turns and not self.scorer.invariant

    @property
    def background(self):
        """The `Background` that normalises distances in this screen, or None (raw distances)."""
        return self.scorer.background if self.normalise else None

    @property
    def verifier(self):
        if self._verifier is None:
            from keras_forensics.screening.verify import Verifier

            self._verifier = Verifier()
        return self._verifier

    # -----------------------------------------------------------------------------------------

    def similarity(self, a, b) -> dict:
        """{distance, p_same, same} of two panels (paths or [H, W] float arrays), Siamese only
        (with `turns`, the smallest distance between A in any orientation and B)."""
        images = [_as_image(x, self.max_pixels) for x in (a, b)]
        vectors = self.scorer.embed_panels(images, progress=False, oriented=self.oriented)
        distance = self.scorer.pair_distance(vectors[0], vectors[1])
        p_same = float(self.scorer.p_same(distance))
        return {"distance": distance, "p_same": p_same, "same": p_same > 0.5}

    def embed(self, images) -> np.ndarray:
        """Weighted embeddings [N, D] of panels (paths or arrays); the distance between rows under
        the scorer's metric (L1, or squared L2 for the copy-detection descriptor) is f."""
        return self.scorer.embed_panels([_as_image(x, self.max_pixels) for x in images], progress=self.progress)

    def screen(self, inputs, out: str | os.PathLike | None = None, index: str | os.PathLike | None = None,
               method: str = "auto", groups_in_full: int | None = None) -> ScreenResult:
        """Screen files, folders and PDFs; returns the ranked pairs (a `ScreenResult` list).

        Args:
            inputs: a path or a list of paths (image files, folders searched recursively, PDFs).
            out: if given, write out/pairs.csv, out/panels/ and out/report.html.
            index: an index folder (`index build`): also compare against every panel indexed
                before (the across-papers case).
            method: "auto", "exact", "flat" or "hnsw" for the within-input comparison ("auto"
                verifies all pairs up to `verify_all_max`).
            groups_in_full: report.html shows this many re-use groups in full (cards with
                pictures), the rest in a table (default `report.GROUPS_IN_FULL`).

        Problems (unreadable inputs etc.) are logged as warnings and listed in the result and the
        report; the screen goes on. Raises `NothingToScreen` when no input could be read.
        """
        from keras_forensics.screening import report
        from keras_forensics.screening.pairs import all_pairs, search_pairs, verifies_every_pair

        groups_in_full = report.GROUPS_IN_FULL if groups_in_full is None else groups_in_full
        if not _is_whole(groups_in_full) or groups_in_full < 0:
            raise ForensicsError(f"--groups_in_full must be a whole number >= 0, got {groups_in_full!r}")
        if out is not None:
            io.check_output_folder(out)
        if isinstance(inputs, (str, os.PathLike)):
            inputs = [inputs]
        inputs = list(inputs)
        started, timings = time.perf_counter(), {}

        def lap(stage):  # the wall time since the last lap, as timings[stage]
            nonlocal started
            timings[stage], started = time.perf_counter() - started, time.perf_counter()

        collection = panels_lib.collect(inputs, split=self.split, min_size=self.min_panel_size,
                                        progress=self.progress, max_pixels=self.max_pixels)
        for problem in collection.problems:
            logger.warning("skipped %s", problem)
        if collection.nothing_readable:
            raise NothingToScreen(collection.problems)
        records = [self._identical_record(number, item) for number, item in enumerate(collection.identical)]
        panels = collection.panels
        opened_index = None
        if index is not None:
            from keras_forensics.screening.index import ScreeningIndex

            opened_index = ScreeningIndex.open(index, scorer=self.scorer, normalised=self.background is not None)
        turns = self.oriented
        metric = self.scorer.metric
        lap("read")
        oriented = self.scorer.embed_panels([p.image for p in panels], progress=self.progress, oriented=turns)
        lap("embed")
        vectors = oriented[:, 0] if turns else oriented
        background = self.background
        if method == "auto" and self.verify and verifies_every_pair(len(panels), self.verify_all_max):
            candidates, used = all_pairs(oriented, metric), "all pairs"
            if background is not None:
                offsets = background.offsets(vectors)
                candidates.distance = background.normalise(candidates.distance, offsets[candidates.first],
                                                           offsets[candidates.second])
        else:
            candidates, used = search_pairs(vectors, self._admitting, method=method, k=self.neighbours,
                                            exact_max=self.exact_max, progress=self.progress,
                                            turned=oriented[:, 1:] if turns else None, metric=metric,
                                            background=background)
        pairs = [(panels[i], panels[j], float(d)) for i, j, d in
                 zip(candidates.first, candidates.second, candidates.distance)]
        if opened_index is not None and len(panels):
            rows, entries, distances = opened_index.query(oriented, self._admitting, self.neighbours)
            for row, entry, distance in zip(rows, entries, distances):
                indexed = opened_index.panel(int(entry))
                if indexed.sha256 == panels[row].sha256:
                    continue  # the same file, indexed earlier: not a re-use of itself
                pairs.append((panels[row], indexed, float(distance)))
        lap("search")
        records.extend(self._score(pairs))
        records.sort(key=lambda r: (-r.combined, r.distance))
        for rank, record in enumerate(records, start=1):
            record.rank = rank
        result = ScreenResult(records, panels, collection.problems, used, inputs, self.scorer.source,
                              self.threshold, self.combiner, str(index) if index is not None else None)
        result.vectors = oriented
        result.turns = turns
        result.metric, result.sharpness = metric, self.scorer.sharpness
        result.neighbours = self.neighbours
        lap("verify")
        if out is not None:
            report.write(out, result, scorer=self.scorer, progress=self.progress, groups_in_full=groups_in_full)
        lap("report")
        result.timings = timings
        return result

    # -----------------------------------------------------------------------------------------

    def _score(self, pairs) -> list[PairRecord]:
        from tqdm.auto import tqdm

        records = []
        for a, b, distance in tqdm(pairs, desc="verifying candidates", unit="pair",
                                   disable=not self.progress or not pairs, leave=False):
            verification = None
            inliers, coverage = 0, 0.0
            if self.verify:
                verification = self.verifier.verify(a.image, b.image, _cache_key(a), _cache_key(b))
                inliers, coverage = verification.inliers, verification.coverage
            combined = float(self.combiner(distance, inliers, coverage))
            rejected = verification.rejected if verification is not None else ""
            note = f"verifier rejected: {rejected}" if rejected else ""
            records.append(PairRecord(a, b, distance, float(self.scorer.p_same(distance)), combined,
                                      panels_lib.relation(a, b), inliers if self.verify else None,
                                      verification, note=note))
        return records

    def _identical_record(self, number: int, item) -> PairRecord:
        """Byte-identical files: distance 0 by definition; no network, no verifier."""
        a, b = (_file_panel(item.original, f"identical{number}a", self.max_pixels),
                _file_panel(item.copy, f"identical{number}b", self.max_pixels))
        return PairRecord(a, b, 0.0, float(self.scorer.p_same(0.0)), 1.0,
                          "identical-file", None, None, note=f"identical file (sha256 {item.sha256[:12]})")


def check_options(threshold=None, neighbours=None, exact_max=None, verify_all_max=None, min_panel_size=None,
                  max_pixels=None, groups_in_full=None, **_others) -> None:
    """ForensicsError naming the flag for a Screener option of the wrong type or range (None: the
    default); the CLI calls this before it loads a model."""
    if threshold is not None and (not _is_number(threshold) or threshold < 0 or not math.isfinite(threshold)):
        raise ForensicsError(f"--threshold must be a non-negative number, got {threshold!r}")
    for flag, value, minimum in (("--neighbours", neighbours, 0), ("--exact_max", exact_max, 0),
                                 ("--verify_all_max", verify_all_max, 0), ("--min_panel_size", min_panel_size, 1),
                                 ("--groups_in_full", groups_in_full, 0)):
        if value is not None and (not _is_whole(value) or value < minimum):
            raise ForensicsError(f"{flag} must be a whole number >= {minimum}, got {value!r}")
    io.pixel_limit(max_pixels)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _is_whole(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


class NothingToScreen(ForensicsError):
    """No input could be read (the CLI exits with status 1)."""

    def __init__(self, problems):
        self.problems = list(problems)
        detail = "; ".join(str(p) for p in self.problems[:3]) + (" ..." if len(self.problems) > 3 else "")
        super().__init__(f"no input could be read ({detail})" if detail else "no input given")


def _cache_key(panel: Panel):
    return (panel.figure_key, panel.box, panel.key)


def _as_image(item, max_pixels: int = io.DEFAULT_MAX_PIXELS) -> np.ndarray:
    if isinstance(item, (str, os.PathLike)):
        return io.read_image(item, max_pixels=max_pixels)
    image = np.asarray(item, np.float32)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim != 2:
        raise ForensicsError(f"a panel must be a path or an [H, W] array, got shape {image.shape}")
    return image


def _file_panel(path: str, key: str, max_pixels: int = io.DEFAULT_MAX_PIXELS) -> Panel:
    """A whole-file panel for the identical-files rows (pixels only for images, for the report)."""
    from keras_forensics.errors import ImageReadError
    from keras_forensics.screening.pdf import is_pdf

    image = None
    if not is_pdf(path):
        try:
            image = io.read_image(path, max_pixels=max_pixels)
        except ImageReadError:
            image = None
    height, width = image.shape if image is not None else (0, 0)
    return Panel(image, str(path), None, None, (0, 0, width, height), str(Path(path).parent), str(path),
                 key=key, figure_size=(width, height))
