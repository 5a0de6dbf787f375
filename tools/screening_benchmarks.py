"""The screening benchmarks behind `tools/benchmark.py screen`, `screen-accuracy` and `archive`.

screen: wall time and peak memory of finding all pairs within the threshold among N embeddings,
exact blockwise TF vs FAISS flat (exact) vs FAISS HNSW, with HNSW's recall against the exact
result, plus end-to-end panels per second of `Screener.screen` on a folder of real images.

screen-accuracy: average precision on a held-out folder of real-case re-uses
(tools/make_real_cases.py) of the Siamese network alone, the keypoint verifier alone, the
combined score (calibrated on a validation folder; every pair verified, as `screen` does up to
pairs.VERIFY_ALL_MAX pairs), the two-stage screen as it runs on larger corpora (only the Siamese
candidates verified), and pHash (imagehash) as the classical baseline -- all in one run, on the
same pairs.

archive: an archive of N real panels (make_real_cases' re-uses of test-split micrographs hidden
among disjoint crops of other images, written as image files) screened as `screen` screens it:
the descriptor's all-pairs AP and recall@k beside pHash over 8 orientations, the screen's
precision and recall at its decision, verifications per panel, wall time per stage and memory;
then a manuscript screened against an index of generated panels (the journal's everyday case).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np


class PeakMemory:
    """Peak resident memory above the level at entry, sampled every few ms (Linux /proc)."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()

    @staticmethod
    def _rss() -> int:
        try:
            with open("/proc/self/statm") as handle:
                return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.interval)

    def __enter__(self):
        self.start = self._rss()
        self.peak = self.start
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def megabytes(self) -> float:
        return round((self.peak - self.start) / 2**20, 1)


def synthetic_embeddings(count: int, dimension: int = 128, duplicates: float = 0.05, threshold: float = 1.0,
                         median_distance: float = 8.0, decay: float = 1.0, seed: int = 0) -> np.ndarray:
    """Weighted embeddings shaped like a trained network's, with planted near-duplicates.

    Unrelated panels: Gaussian with a power-law spectrum (the i-th principal axis has standard
    deviation i^-decay, in a random orientation): learned embeddings concentrate on few
    directions, unlike isotropic noise, the worst case of every approximate search. Scaled so the
    median L1 distance between unrelated panels is `median_distance` (a trained model puts
    different panels well beyond f = 1). A fraction `duplicates` of the rows are copies of other
    rows moved by an L1 distance uniform in [0, 1.5 * threshold]: re-uses, two thirds of them
    within the threshold.
    """
    rng = np.random.default_rng(seed)
    scales = np.arange(1, dimension + 1, dtype=np.float64) ** -decay
    rotation, _ = np.linalg.qr(rng.normal(size=(dimension, dimension)))
    base = (rng.normal(size=(count, dimension)) * scales) @ rotation
    sample = rng.integers(0, count, (2000, 2))
    median = np.median(np.abs(base[sample[:, 0]] - base[sample[:, 1]]).sum(1))
    vectors = (base * (median_distance / median)).astype(np.float32)
    copies = int(count * duplicates)
    if copies:
        targets = rng.choice(count, copies, replace=False)
        sources = rng.integers(0, count, copies)
        sources = np.where(sources == targets, (sources + 1) % count, sources)
        offset = rng.laplace(size=(copies, dimension))
        offset *= (rng.uniform(0, 1.5 * threshold, copies) / np.abs(offset).sum(1))[:, None]
        vectors[targets] = vectors[sources] + offset.astype(np.float32)
    return vectors


def search_benchmark(sizes=(1000, 10000, 100000), dimension: int = 128, threshold: float = 1.0,
                     duplicates: float = 0.05, exact_max: int = 20000, seed: int = 0,
                     folder: str | None = None, model: str | None = None) -> dict:
    """See the module docstring. Exact blockwise TF above `exact_max` embeddings is timed on a
    sample of row blocks and extrapolated (marked "estimated"); FAISS flat gives the exact pairs."""
    from keras_forensics.screening import pairs as pairs_lib

    faiss = pairs_lib.faiss_module()
    pairs_lib.exact_pairs(synthetic_embeddings(600, dimension, seed=seed + 1), threshold)  # warm-up: tracing
    results = []
    for count in sizes:
        vectors = synthetic_embeddings(count, dimension, duplicates, threshold, seed=seed)
        row = {"n": count, "dimension": dimension}

        truth = _timed(row, "faiss_flat", pairs_lib.faiss_pairs, vectors, threshold, kind="flat").as_set()
        row["pairs_within_threshold"] = len(truth)
        found = _timed(row, "faiss_hnsw", pairs_lib.faiss_pairs, vectors, threshold, kind="hnsw").as_set()
        row["hnsw_recall"] = round(len(found & truth) / max(len(truth), 1), 5)
        row["hnsw_false_pairs"] = len(found - truth)
        if count <= exact_max:
            exact = _timed(row, "exact_tf", pairs_lib.exact_pairs, vectors, threshold)
            row["exact_tf_agrees_with_faiss_flat"] = exact.as_set() == truth
        else:
            # Time whole row blocks of the upper triangle against every later column, then scale
            # by the share of the triangle they cover.
            block_rows = 256
            sample_rows = [r * block_rows for r in np.linspace(0, count // block_rows - 1, 4).astype(int)]
            pairs_lib.exact_pairs(vectors[:2 * block_rows], threshold)  # warm-up (tracing)
            with PeakMemory() as memory:
                start = time.perf_counter()
                covered = 0
                for r0 in sample_rows:
                    part = vectors[r0:]
                    _exact_rows_against(part[:block_rows], part, threshold)
                    covered += block_rows * (count - r0)
                elapsed = time.perf_counter() - start
            total = count * (count - 1) / 2
            row["exact_tf_s_estimated"] = round(elapsed * total / covered, 1)
            row["exact_tf_peak_mb"] = memory.megabytes
        results.append(row)
    out = {"benchmark": "screen", "threshold": threshold, "duplicates": duplicates, "cpu_count": os.cpu_count(),
           "faiss": faiss.__version__, "hnsw": {"M": pairs_lib.HNSW_M, "ef_construction": pairs_lib.HNSW_EF_CONSTRUCTION,
                                               "ef_search": pairs_lib.HNSW_EF_SEARCH,
                                               "max_neighbours": pairs_lib.MAX_NEIGHBOURS},
           "sizes": results}
    largest = results[-1]
    out["target_100k_under_60s_recall_0.99"] = bool(
        largest["n"] >= 100000 and largest["faiss_hnsw_s"] < 60 and largest["hnsw_recall"] >= 0.99)
    if folder:
        out["end_to_end"] = end_to_end(folder, model)
    return out


def _timed(row: dict, name: str, function, *args, **kwargs):
    """Run function(*args, **kwargs); record its wall time row[name + "_s"], its process CPU time
    row[name + "_cpu_s"] (on a shared machine, wall time includes waiting for the CPU) and
    row[name + "_peak_mb"]."""
    with PeakMemory() as memory:
        start, cpu = time.perf_counter(), time.process_time()
        result = function(*args, **kwargs)
        row[f"{name}_s"] = round(time.perf_counter() - start, 2)
        row[f"{name}_cpu_s"] = round(time.process_time() - cpu, 2)
    row[f"{name}_peak_mb"] = memory.megabytes
    return result


def _exact_rows_against(rows: np.ndarray, cols: np.ndarray, threshold: float) -> int:
    """The blockwise TF kernel of exact_pairs on rows x cols (no diagonal): count within threshold."""
    import tensorflow as tf

    from keras_forensics.screening import pairs as pairs_lib

    block_cols = 2048
    block = pairs_lib._kernel(len(rows), block_cols, rows.shape[1], "l1")
    rows_t = tf.constant(rows)
    found = 0
    for c0 in range(0, len(cols), block_cols):
        distances = block(rows_t, tf.constant(cols[c0:c0 + block_cols].T.copy()))
        found += int(tf.reduce_sum(tf.cast(distances <= threshold, tf.int32)))
    return found


def end_to_end(folder, model=None) -> dict:
    """Panels per second of Screener.screen (read, embed, search, verify; no report) on a folder."""
    from keras_forensics.screening.screener import Screener

    screener = Screener.load(model, progress=False)
    screener.similarity(np.zeros((128, 128), np.float32), np.zeros((128, 128), np.float32))  # warm-up
    start = time.perf_counter()
    result = screener.screen([folder])
    elapsed = time.perf_counter() - start
    return {"folder": str(folder), "panels": len(result.panels), "candidate_pairs": len(result),
            "seconds": round(elapsed, 2), "panels_per_s": round(len(result.panels) / elapsed, 2),
            "model": screener.scorer.source}


# ---------------------------------------------------------------------------------------------
# accuracy


def phash_bits(images, oriented: bool = True) -> np.ndarray:
    """64-bit DCT perceptual hashes (imagehash.phash) of uint8 [H, W] panels, as 0/1 float32 rows:
    [N, 8, 64], each panel in the 8 orientations of `model.DIHEDRAL` (as it is first), or [N, 64].
    The L1 (= squared L2) distance between two rows is the Hamming distance of the hashes, so the
    screening search code compares them as it compares embeddings."""
    import imagehash
    from PIL import Image

    from keras_forensics.screening.model import DIHEDRAL

    orientations = DIHEDRAL if oriented else DIHEDRAL[:1]
    bits = np.array([[imagehash.phash(Image.fromarray(np.ascontiguousarray(
        np.rot90(image[:, ::-1] if mirrored else image, turns)))).hash.ravel() for turns, mirrored in orientations]
        for image in images], np.float32).reshape(len(images), len(orientations), 64)
    return bits if oriented else bits[:, 0]


def _pair_scores(folder, scorer, verifier, progress=True, turns=True, normalise=False):
    """Everything measured on one real-case folder, for all pairs i < j (upper triangle order).

    With `turns`, the Siamese distance is the screener's: the smallest over either panel's 8
    orientations against the other as it is."""
    from PIL import Image
    from tqdm.auto import tqdm

    from keras_forensics.data.io import read_image
    from keras_forensics.screening.pairs import distance_matrix
    from make_real_cases import pair_labels, read_manifest

    folder = Path(folder)
    rows = read_manifest(folder)
    images = [read_image(folder / r["file"]) for r in rows]
    labels = pair_labels(rows)
    first, second = np.triu_indices(len(rows), 1)

    start = time.perf_counter()
    oriented = scorer.embed_panels(images, progress=progress, oriented=turns)
    embed_s = time.perf_counter() - start
    distance = distance_matrix(oriented, scorer.metric)[first, second]
    if normalise and scorer.background is not None:
        offsets = scorer.background.offsets(oriented[:, 0] if turns else oriented)
        distance = scorer.background.normalise(distance, offsets[first], offsets[second])

    start = time.perf_counter()
    inliers = np.zeros(len(first), np.int64)
    coverage = np.zeros(len(first), np.float64)
    for n, (i, j) in enumerate(tqdm(list(zip(first, second)), desc=f"verifying all pairs of {folder.name}",
                                    disable=not progress, leave=False)):
        verification = verifier.verify(images[i], images[j], i, j)
        inliers[n], coverage[n] = verification.inliers, verification.coverage
    verify_s = time.perf_counter() - start

    hashes = phash_bits([np.asarray(Image.open(folder / r["file"]).convert("L")) for r in rows], oriented=False)
    phash = np.abs(hashes[first] - hashes[second]).sum(1).astype(np.float64)  # Hamming distances
    return {"oriented": oriented if turns else oriented[:, None], "labels": labels, "distance": distance,
            "inliers": inliers, "coverage": coverage, "phash": phash, "first": first, "second": second,
            "panels": len(rows),
            "embed_ms_per_panel": 1000 * embed_s / len(rows), "verify_ms_per_pair": 1000 * verify_s / len(first)}


def accuracy_benchmark(folder, calibration_folder=None, model=None, threshold: float = 1.0, neighbours: int = 2,
                       write_calibration=None, progress: bool = True, turns: bool = True,
                       normalise: bool = False) -> dict:
    """See the module docstring."""
    from keras_forensics.screening.model import load_scorer
    from keras_forensics.screening.pairs import search_pairs, verifies_every_pair
    from keras_forensics.screening.scoring import CombinedScore, average_precision
    from keras_forensics.screening.verify import Verifier

    scorer = load_scorer(model)
    turns = turns and not scorer.invariant  # as the screener: an invariant embedding needs no 8x search
    normalise = normalise and scorer.background is not None
    verifier = Verifier()
    test = _pair_scores(folder, scorer, verifier, progress, turns, normalise)
    if calibration_folder:
        verifier.clear()
        validation = _pair_scores(calibration_folder, scorer, verifier, progress, turns, normalise)
        combiner = CombinedScore.fit(validation["distance"], validation["inliers"], validation["labels"],
                                     validation["coverage"],
                                     fitted_on=f"{Path(calibration_folder).name}: {len(validation['labels'])} "
                                               f"pairs, {int(validation['labels'].sum())} re-used; "
                                               f"model {scorer.source}")
        if write_calibration:
            combiner.save(write_calibration)
    else:
        combiner = CombinedScore.load()
    labels = test["labels"]
    combined_all = combiner(test["distance"], test["inliers"], test["coverage"])

    # Above VERIFY_ALL_MAX pairs (corpora), the screen is two-stage: only candidates (within the
    # threshold or among the nearest) are verified. Up to it (this folder), screen verifies every
    # pair, which is ap_combined.
    oriented = test["oriented"]
    candidates, _ = search_pairs(oriented[:, 0], threshold, "exact", k=neighbours, turned=oriented[:, 1:],
                                 metric=scorer.metric, background=scorer.background if normalise else None)
    position = {(int(i), int(j)): n for n, (i, j) in enumerate(zip(test["first"], test["second"]))}
    verified = np.zeros(len(labels), bool)
    verified[[position[p] for p in candidates.as_set()]] = True
    combined_screen = combiner(test["distance"], np.where(verified, test["inliers"], 0),
                               np.where(verified, test["coverage"], 0.0))

    result = {
        "benchmark": "screen-accuracy",
        "folder": str(folder), "panels": test["panels"], "pairs": int(len(labels)), "reused_pairs": int(labels.sum()),
        "model": scorer.source, "turns": bool(turns), "normalised": bool(normalise),
        "ap_siamese": round(average_precision(-test["distance"], labels), 4),
        "ap_verifier": round(average_precision(test["inliers"], labels), 4),
        "ap_combined": round(average_precision(combined_all, labels), 4),
        "ap_combined_two_stage": round(average_precision(combined_screen, labels), 4),
        "ap_phash": round(average_precision(-test["phash"], labels), 4),
        "two_stage_candidates": int(verified.sum()),
        "two_stage_candidate_recall": round(float(verified[labels].mean()), 4),
        "screen_verifies_all_pairs": verifies_every_pair(test["panels"]),
        "calibration": combiner.to_dict(),
        "embed_ms_per_panel": round(test["embed_ms_per_panel"], 1),
        "verify_ms_per_pair": round(test["verify_ms_per_pair"], 1),
    }
    result["target_combined_ap_0.99_above_parts"] = bool(
        result["ap_combined"] >= 0.99 and result["ap_combined"] > max(result["ap_siamese"], result["ap_verifier"]))
    return result


# ---------------------------------------------------------------------------------------------
# archive

#: The folders of ../shared/data whose micrographs make the archive.
ARCHIVE_FOLDERS = ("micrographs", "micrographs_dsb2018")
#: Regions cut from each test-split micrograph (make_real_cases._regions: non-overlapping, 35-50%
#: of the short side, showing content): planted originals first, the rest distractors.
REGIONS_PER_TEST_IMAGE = 4
#: Distractor crops of other images: sides from the screen's minimum panel size up to this.
MAX_DISTRACTOR_SIDE = 256
#: At most 1 / PLANTED_SHARE of an archive's panels are planted re-uses and their originals.
PLANTED_SHARE = 5
#: Passes over the other images for distractors (each pass cuts an even share of what is missing).
DISTRACTOR_PASSES = 4
#: The shortlist depths of the recall figures.
RECALL_AT = (1, 5, 10, 20)
#: Up to this many panels the all-pairs AP ranks every pair (upper triangle stored as float32:
#: 200 MB at 10,000 panels); above, it ranks the union of every panel's 20 nearest.
ALL_PAIRS_MAX = 15000


def _one_file_per_group(folder: Path) -> dict[str, Path]:
    """`<folder name>/<field group>` -> its first micrograph, as make_real_cases.split_files
    groups them (one file per field, so two channels of one field never pose as a re-use)."""
    from keras_forensics.config import SHARED_MICROGRAPH_GROUPS
    from keras_forensics.datasets import regex_group

    key = regex_group(SHARED_MICROGRAPH_GROUPS)
    chosen = {}
    for path in sorted(folder.glob("*.png")):
        chosen.setdefault(f"{folder.name}/{key(path.stem)}", path)
    return chosen


def archive_sources(data, split_json=None, seed: int = 0, workspace=None, test_share: float = 0.1,
                    split: str = "test"):
    """(planted files, other files, what the split is): one micrograph per field group of
    ARCHIVE_FOLDERS under `data`. The planted files are `split_json`'s `split` groups (a training
    run's split.json, read by make_real_cases.split_files; "test" for the reported figures,
    "validation" to choose settings on); without it, a share `test_share` of the groups drawn
    with `seed` (written to workspace/split.json, so the same function reads it). A validation
    archive takes no distractors from the test split, so choosing on it never sees a test image."""
    import json

    from make_real_cases import split_files

    data = Path(data)
    folders = [data / name for name in ARCHIVE_FOLDERS if (data / name).is_dir()]
    if not folders:
        raise SystemExit(f"{data}: none of {', '.join(ARCHIVE_FOLDERS)} (../shared/data is needed)")
    groups = {group: path for folder in folders for group, path in _one_file_per_group(folder).items()}
    if split not in ("test", "validation"):
        raise SystemExit(f"--split must be test or validation, got {split!r}")
    if split_json:
        split_path = Path(split_json)
        if not split_path.is_file():
            raise SystemExit(f"--split_json {split_path}: no such file (a training run's split.json)")
        note = {"source": str(split_path), "kind": f"the training run's {split} split"}
    elif split != "test":
        raise SystemExit("--split validation needs --split_json (a training run's split.json)")
    else:
        names = sorted(groups)
        order = np.random.default_rng(seed).permutation(len(names))
        test = sorted(names[i] for i in order[:max(1, round(test_share * len(names)))])
        split_path = Path(workspace) / "split.json"
        split_path.write_text(json.dumps({"test": test}))
        note = {"source": f"own deterministic split by field group (seed {seed}, {test_share:.0%} of the groups)",
                "kind": "no --split_json given: the model may have been trained on some of these test images"}
    test_files = [path for folder in folders for path in split_files(folder, split_path, split)]
    excluded = set(test_files)
    if split != "test":  # never a test image, not even as a distractor
        excluded |= {path for folder in folders for path in split_files(folder, split_path, "test")}
    others = [path for path in groups.values() if path not in excluded]
    note.update(test_images=len(test_files), other_images=len(others))
    return test_files, others, note


def _tiles(image: np.ndarray, rng, min_side: int, wanted: int = 1, max_side: int = MAX_DISTRACTOR_SIDE) -> list:
    """Non-overlapping regions (x, y, w, h) of one random size on a grid at a random offset, in
    random order, each showing content (make_real_cases._shows_content). The size is drawn
    between `min_side` and one small enough for about twice `wanted` tiles (about half of a
    fluorescence field is dark background)."""
    from make_real_cases import _shows_content

    height, width = image.shape
    fit = (height * width / (2 * max(1, wanted))) ** 0.5
    side = int(rng.uniform(min_side, max(min_side, min(max_side, 0.5 * min(height, width), fit))))
    w, h = max(min_side, int(side * rng.uniform(0.85, 1.15))), side
    if w > width or h > height:
        return []
    cols, rows = width // w, height // h
    x0, y0 = int(rng.integers(0, width - cols * w + 1)), int(rng.integers(0, height - rows * h + 1))
    tiles = [(x0 + c * w, y0 + r * h, w, h) for r in range(rows) for c in range(cols)]
    return [tiles[i] for i in rng.permutation(len(tiles)) if _shows_content(image, *tiles[i])]


def _uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image * 255), 0, 255).astype(np.uint8)


def _at_least(image: np.ndarray, side: int):
    """(image, edit): a uint8 panel scaled up so its short side is at least `side` (the screen
    skips smaller panels), and the edit's name ("" when it was large enough)."""
    import cv2

    if min(image.shape) >= side:
        return image, ""
    factor = side / min(image.shape)
    size = (max(side, round(image.shape[1] * factor)), max(side, round(image.shape[0] * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_CUBIC), f"upscale{factor:.2f}"


def _embedded_images() -> list:
    """(source name, uint8 image) of the package's embedded data (scikit-image's bundled images,
    as datasets.sample_micrographs uses them)."""
    from keras_forensics.data import folders

    return [(f"skimage/{name}", _uint8(folders.embedded_image(name)))
            for name in folders.EMBEDDED_IMAGES]


def build_archive(out, count: int, test_files, other_files, groups: int = 100, copies: int = 1, seed: int = 0,
                  min_side: int | None = None) -> list[dict]:
    """Write an archive of `count` panels to OUT/panels/ and its manifest OUT/manifest.csv (the
    columns of make_real_cases' manifest, plus role: original, reuse or distractor); returns the
    manifest rows.

    Planted: `groups` regions (at most a fifth of the archive with their copies) of test-split
    micrographs (one per image, then a second per image, ...), each written as it is and `copies` times re-used (make_real_cases._reuse: crop, quarter
    turns, mirror, rescale, contrast / brightness / gamma, labels, JPEG; a copy that came out
    below the screen's minimum panel size is scaled up to it). Distractors fill the rest: first
    the other regions of the test-split micrographs, then non-overlapping crops of other
    micrographs and of the embedded images, spread evenly over them. Ground truth is the
    manifest's (make_real_cases.pair_labels: same source, regions overlapping by >= 1/4).
    Files are named panel<random number>, so their order tells nothing.
    """
    import csv

    from PIL import Image

    from keras_forensics.data.io import read_image
    from keras_forensics.screening.panels import MIN_PANEL_SIZE
    from make_real_cases import MANIFEST_COLUMNS, _regions, _reuse

    min_side = min_side or MIN_PANEL_SIZE
    rng = np.random.default_rng(seed)
    out = Path(out)
    (out / "panels").mkdir(parents=True, exist_ok=True)
    test_files = [test_files[i] for i in rng.permutation(len(test_files))]
    groups = max(1, min(groups, count // (PLANTED_SHARE * (1 + copies))))  # hidden among distractors
    panels = []  # (source name, uint8 panel, region, edits, jpeg quality, role)
    cache = {}

    def opened(path):
        if path not in cache:
            source = _uint8(read_image(path))
            cache[path] = (f"{path.parent.name}/{path.name}", source,
                           _regions(source, REGIONS_PER_TEST_IMAGE, rng))
        return cache[path]

    # planted re-uses: region 0 of every test image, then region 1, ...
    planted, taken = 0, set()
    for number in range(REGIONS_PER_TEST_IMAGE):
        for path in test_files:
            if planted == groups:
                break
            name, source, regions = opened(path)
            if len(regions) <= number:
                continue
            x, y, w, h = region = regions[number]
            taken.add((path, number))
            panels.append((name, source[y:y + h, x:x + w], region, "", None, "original"))
            for _ in range(copies):
                image, used, edits, quality = _reuse(source, region, rng)
                image, upscaled = _at_least(image, min_side)
                edits = edits + [upscaled] if upscaled else edits
                panels.append((name, image, used, "+".join(edits), quality, "reuse"))
            planted += 1
    if planted < groups:
        raise SystemExit(f"only {planted} test-split regions for {groups} planted re-uses")

    # distractors: the test images' other regions, then crops of other images spread evenly
    needed = count - len(panels)
    for path in test_files:
        if needed <= 0:
            break
        name, source, regions = opened(path)
        for number, (x, y, w, h) in enumerate(regions):
            if needed > 0 and (path, number) not in taken and min(w, h) >= min_side:
                panels.append((name, source[y:y + h, x:x + w], (x, y, w, h), "", None, "distractor"))
                needed -= 1
    from keras_forensics.data import folders

    pool = list(other_files) + ["embedded"]
    pool = [pool[i] for i in rng.permutation(len(pool))]
    taken: dict[str, list] = {}  # source -> the regions cut from it so far
    decoded: dict = {}
    for attempt in range(DISTRACTOR_PASSES):  # later passes cut smaller tiles between the earlier ones
        sources_left = len(other_files) + len(folders.EMBEDDED_IMAGES)
        for item in pool:
            if needed <= 0:
                break
            if item not in decoded:
                decoded[item] = (_embedded_images() if item == "embedded"
                                 else [(f"{item.parent.name}/{item.name}", _uint8(read_image(item)))])
            for name, source in decoded[item]:
                quota = -(-needed // max(1, sources_left))  # an even share of what is still needed
                cut = taken.setdefault(name, [])
                for x, y, w, h in _tiles(source, rng, min_side, quota * 4 ** attempt):
                    if any(x < ox + ow and ox < x + w and y < oy + oh and oy < y + h for ox, oy, ow, oh in cut):
                        continue
                    panels.append((name, source[y:y + h, x:x + w], (x, y, w, h), "", None, "distractor"))
                    cut.append((x, y, w, h))
                    needed -= 1
                    quota -= 1
                    if not quota:
                        break
                sources_left -= 1
    if needed > 0:
        raise SystemExit(f"the data gives {count - needed} panels, fewer than --n {count}")

    rows = []
    for number, (name, image, (x, y, w, h), edits, quality, role) in zip(rng.permutation(len(panels)), panels):
        file = f"panel{number:06d}." + ("jpg" if quality else "png")
        Image.fromarray(np.ascontiguousarray(image)).save(out / "panels" / file,
                                                          **({"quality": quality} if quality else {}))
        rows.append({"file": file, "source": name, "x": x, "y": y, "width": w, "height": h, "edits": edits,
                     "role": role})
    with open(out / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS + ("role",))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def reuse_pairs(rows) -> tuple[np.ndarray, np.ndarray]:
    """(first, second), first < second: the re-used pairs of manifest rows by make_real_cases'
    definition (pair_labels), computed within each source, so no [N, N] matrix is built."""
    from make_real_cases import pair_labels

    by_source: dict[str, list[int]] = {}
    for number, row in enumerate(rows):
        by_source.setdefault(row["source"], []).append(number)
    first, second = [], []
    for members in by_source.values():
        if len(members) < 2:
            continue
        labels = pair_labels([rows[i] for i in members])
        i, j = np.triu_indices(len(members), 1)
        members = np.asarray(members)
        first.append(members[i[labels]])
        second.append(members[j[labels]])
    if not first:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    first, second = np.concatenate(first), np.concatenate(second)
    low, high = np.minimum(first, second), np.maximum(first, second)
    order = np.lexsort((high, low))
    return low[order].astype(np.int64), high[order].astype(np.int64)


def ap_from_distances(distance_chunks, positive_distances) -> float:
    """average_precision(-distance, labels) over all pairs, from the positive pairs' distances and
    the distances of every pair (positives included) given in chunks: exact, ties counted as one
    threshold as scoring.average_precision does, without sorting all pairs."""
    positive = np.sort(np.asarray(positive_distances, np.float64))
    if not len(positive):
        return float("nan")
    values = np.unique(positive)
    counts = np.zeros(len(values) + 1, np.int64)
    for chunk in distance_chunks:
        counts += np.bincount(np.searchsorted(values, np.asarray(chunk, np.float64), side="left"),
                              minlength=len(values) + 1)
    ranked = np.cumsum(counts)[:len(values)]  # pairs at a distance <= each value
    found = np.searchsorted(positive, values, side="right")  # positives at a distance <= each value
    return float(np.sum(np.diff(np.concatenate([[0], found])) / len(positive) * found / ranked))


def retrieval_stats(vectors, metric: str, first, second, ks=RECALL_AT, all_pairs_max: int = ALL_PAIRS_MAX,
                    block_rows: int = 512, panel_offsets=None) -> dict:
    """All-pairs AP and shortlist recall@k of the re-used pairs (first, second) under `metric`.

    `vectors` [N, D], or [N, T, D] in T orientations: a pair's distance is then the smallest
    between either panel in any orientation and the other as it is (pairs.distance_matrix), here
    computed a block of rows at a time. recall@k: the share of re-used pairs with one panel among
    the other's k nearest (a screen's shortlist of k neighbours makes them candidates).
    `panel_offsets` [N] (`Background.offsets`): rank by the normalised distance f + o_a + o_b instead.
    """
    from keras_forensics.screening.pairs import pairwise_distances

    vectors = np.asarray(vectors, np.float32)
    if vectors.ndim == 2:
        vectors = vectors[:, None]
    count, turns = len(vectors), vectors.shape[1]
    base = vectors[:, 0]
    depth = int(min(max(ks), count - 1))
    store = count <= all_pairs_max
    upper = np.empty(count * (count - 1) // 2, np.float32) if store else None
    offsets = np.arange(count, dtype=np.int64) * count - np.arange(count, dtype=np.int64) * (
        np.arange(count, dtype=np.int64) + 1) // 2  # start of row i's pairs (i, i+1...) in `upper`
    nearest = np.empty((count, depth), np.int64)
    nearest_d = np.empty((count, depth), np.float32)
    for r0 in range(0, count, block_rows):
        r1 = min(count, r0 + block_rows)
        block = pairwise_distances(vectors[r0:r1, 0], base, metric)
        for turn in range(1, turns):
            np.minimum(block, pairwise_distances(vectors[r0:r1, turn], base, metric), out=block)
            np.minimum(block, pairwise_distances(vectors[:, turn], base[r0:r1], metric).T, out=block)
        if panel_offsets is not None:
            block = np.maximum(block + panel_offsets[r0:r1, None] + panel_offsets[None, :], 0.0)
        if store:
            for row in range(r0, r1):
                upper[offsets[row]:offsets[row] + count - row - 1] = block[row - r0, row + 1:]
        block[np.arange(r1 - r0), np.arange(r0, r1)] = np.inf
        part = np.argpartition(block, depth - 1, axis=1)[:, :depth]
        part_d = np.take_along_axis(block, part, 1)
        order = np.argsort(part_d, axis=1, kind="stable")
        nearest[r0:r1] = np.take_along_axis(part, order, 1)
        nearest_d[r0:r1] = np.take_along_axis(part_d, order, 1)

    first, second = np.asarray(first, np.int64), np.asarray(second, np.int64)
    rank_ab = np.where((nearest[first] == second[:, None]).any(1), (nearest[first] == second[:, None]).argmax(1), depth)
    rank_ba = np.where((nearest[second] == first[:, None]).any(1), (nearest[second] == first[:, None]).argmax(1), depth)
    rank = np.minimum(rank_ab, rank_ba)
    result = {}
    if store:
        chunk = 1 << 24
        positive = upper[offsets[first] + second - first - 1]
        result["ap_all_pairs"] = round(ap_from_distances((upper[i:i + chunk] for i in range(0, len(upper), chunk)),
                                                         positive), 4)
        result["ap_over"] = f"all {len(upper)} pairs"
    else:
        # The union of the shortlists: a re-used pair outside it counts as never retrieved.
        owners = np.repeat(np.arange(count), depth)
        low, high = np.minimum(owners, nearest.ravel()), np.maximum(owners, nearest.ravel())
        keys, unique = np.unique(low * count + high, return_index=True)
        found = np.isin(keys, first * count + second)
        candidate_d = nearest_d.ravel()[unique]
        ap = ap_from_distances([candidate_d], candidate_d[found])
        result["ap_all_pairs"] = round(ap * found.sum() / max(len(first), 1), 4)
        result["ap_over"] = f"the union of every panel's {depth} nearest ({len(keys)} pairs; a lower bound)"
    for k in ks:
        result[f"recall_at_{k}"] = round(float(np.mean(rank < k)), 4) if len(rank) else None
    return result


def _process_peak_mb() -> float:
    """The process's peak resident memory so far (ru_maxrss, kB on Linux)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _rows_of(panels, rows) -> np.ndarray:
    """The manifest row of each screened panel (by file name)."""
    position = {row["file"]: number for number, row in enumerate(rows)}
    return np.array([position[Path(panel.file).name] for panel in panels], np.int64)


def archive_screen(screener, folder, rows, first, second, workspace) -> tuple[dict, np.ndarray]:
    """Screen the archive folder as `screen FOLDER --out REPORT` does; (figures, the screen's
    weighted embeddings in manifest order)."""
    import shutil

    from keras_forensics.screening.pairs import verifies_every_pair

    report = Path(workspace) / "report"
    with PeakMemory() as memory:
        start = time.perf_counter()
        result = screener.screen([Path(folder) / "panels"], out=report)
        wall = time.perf_counter() - start
    shutil.rmtree(report, ignore_errors=True)
    # A byte-identical copy is not embedded again: the screen reports it as an identical file.
    twins = [r for r in result if r.relation == "identical-file"]
    if len(result.panels) + len(twins) != len(rows) or result.problems:
        raise RuntimeError(f"the screen read {len(result.panels)} of {len(rows)} panels "
                           f"({len(twins)} identical files): {result.problems[:3]}")
    position = {row["file"]: number for number, row in enumerate(rows)}

    def row_of(panel) -> int:
        return position[Path(panel.file).name]

    def key_of(record) -> tuple[int, int]:  # a pair's manifest rows, as `truth` holds them
        a, b = row_of(record.a), row_of(record.b)
        return min(a, b), max(a, b)

    order = _rows_of(result.panels, rows)
    vectors = np.zeros((len(rows),) + result.vectors.shape[1:], result.vectors.dtype)
    vectors[order] = result.vectors
    for twin in twins:  # the copy's embedding is its original's
        vectors[row_of(twin.b)] = vectors[row_of(twin.a)]
    truth = set(zip(first.tolist(), second.tolist()))
    reported = [r for r in result if r.same]  # the screen's decision (report.SUSPECT_SCORE)
    hits = sum(key_of(r) in truth for r in reported)
    verified = sum(r.inliers is not None for r in result)
    count = len(rows)
    missed = _missed_reuses(result, rows, truth, key_of)
    return {
        "method": result.method, "neighbours": screener.neighbours, "threshold": screener.threshold,
        "verifies_every_pair": verifies_every_pair(count, screener.verify_all_max),
        "decision": "PairRecord.same: combined > 0.5 (report.html's suspected pairs)",
        "reported_pairs": len(reported), "reported_reuses": int(hits),
        "precision": round(hits / len(reported), 4) if reported else None,
        "recall": round(hits / len(truth), 4) if truth else None,
        "verified_pairs": int(verified), "verifications_per_panel": round(verified / count, 2),
        "stage_s": {stage: round(seconds, 2) for stage, seconds in result.timings.items()},
        "wall_s": round(wall, 2), "wall_ms_per_panel": round(1000 * wall / count, 1),
        "peak_mb_above_start": memory.megabytes,
        "missed": missed,
    }, vectors


def _missed_reuses(result, rows, truth, key_of) -> dict:
    """Why each re-use the screen did not report was missed (not shortlisted; the verifier
    rejected its transform; found too few inliers; scored below the decision), and by which of
    make_real_cases' edits, so that the next fix goes where the losses are."""
    records = {key_of(record): record for record in result}
    reasons: dict[str, int] = {}
    edits: dict[str, list[int]] = {}  # edit -> [re-uses, missed]
    folders: dict[str, list[int]] = {}  # source folder -> [re-uses, missed]
    examples = []
    for key in sorted(truth):
        record = records.get(key)
        applied = {edit.rstrip("0123456789.") for row in key for edit in rows[row]["edits"].split("+") if edit}
        for edit in applied or {"none"}:
            edits.setdefault(edit, [0, 0])[0] += 1
        folder = folders.setdefault(rows[key[0]]["source"].split("/")[0], [0, 0])
        folder[0] += 1
        if record is not None and record.same:
            continue
        folder[1] += 1
        if record is None:
            reason = "not shortlisted"
        elif record.inliers is None:
            reason = "shortlisted, not verified"
        elif record.note.startswith("verifier rejected"):
            reason = "verifier rejected its transform"
        else:
            reason = "below the decision"
        reasons[reason] = reasons.get(reason, 0) + 1
        for edit in applied or {"none"}:
            edits[edit][1] += 1
        if len(examples) < 12:
            examples.append({"files": [rows[row]["file"] for row in key],
                             "edits": [rows[row]["edits"] for row in key], "reason": reason,
                             "inliers": None if record is None else record.inliers,
                             "distance": None if record is None else round(float(record.distance), 4),
                             "combined": None if record is None else round(float(record.combined), 4),
                             "note": "" if record is None else record.note})
    return {"count": sum(reasons.values()), "reasons": reasons,
            "by_edit": {edit: {"reuses": n, "missed": m} for edit, (n, m) in sorted(edits.items())},
            "by_source_folder": {name: {"reuses": n, "missed": m} for name, (n, m) in sorted(folders.items())},
            "examples": examples}


def index_benchmark(screener, test_files, other_files, index_n: int, workspace, seed: int = 0,
                    manuscript: int = 50, planted: int = 10, batch: int = 512) -> dict:
    """The journal's everyday case: a `manuscript`-panel manuscript screened against an index of
    `index_n` panels. The index holds crops of the other (non-test) micrographs and the embedded
    images at random places and sizes (they may overlap: only time is measured on them), embedded
    in batches and added with ScreeningIndex.add_embedded; the manuscript holds `planted`
    re-uses (make_real_cases._reuse) of indexed crops and crops of test-split micrographs."""
    import hashlib

    from PIL import Image

    from keras_forensics.data.io import read_image
    from keras_forensics.screening.index import ScreeningIndex
    from keras_forensics.screening.panels import MIN_PANEL_SIZE, Panel
    from make_real_cases import _regions, _reuse, pair_labels

    rng = np.random.default_rng(seed + 1)
    sources = [(f"{p.parent.name}/{p.name}", _uint8(read_image(p))) for p in other_files] + _embedded_images()
    folder = Path(workspace) / "index"
    scorer = screener.scorer
    times = {"generate": 0.0, "embed": 0.0, "add": 0.0}
    reused = []  # (source name, source, region) of indexed crops to re-use in the manuscript
    start_all = time.perf_counter()
    index = ScreeningIndex.create(folder, scorer, normalise=screener.background is not None)
    for b0 in range(0, index_n, batch):
        start = time.perf_counter()
        panels = []
        for number in range(b0, min(index_n, b0 + batch)):
            name, source = sources[int(rng.integers(len(sources)))]
            height, width = source.shape
            side = int(rng.uniform(MIN_PANEL_SIZE, max(MIN_PANEL_SIZE + 1, min(MAX_DISTRACTOR_SIDE, height, width))))
            w = min(width, int(side * rng.uniform(0.85, 1.15)))
            x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - side + 1))
            crop = source[y:y + side, x:x + w]
            if len(reused) < planted and number % max(1, index_n // planted) == 0:
                reused.append((name, source, (x, y, w, side)))
            panels.append(Panel(crop.astype(np.float32) / 255, name, None, None, (x, y, w, side), "index",
                                f"{name}#{number}", key=f"gen_{number}", figure_size=(width, height),
                                sha256=hashlib.sha256(crop.tobytes()).hexdigest()))
        times["generate"] += time.perf_counter() - start
        start = time.perf_counter()
        vectors = scorer.embed_panels([p.image for p in panels], progress=False)
        times["embed"] += time.perf_counter() - start
        start = time.perf_counter()
        index.add_embedded(panels, vectors)
        times["add"] += time.perf_counter() - start
    start = time.perf_counter()
    index.save()
    times["save"] = time.perf_counter() - start
    build_s = time.perf_counter() - start_all

    paper = Path(workspace) / "manuscript"
    paper.mkdir()
    rows = []
    for number, (name, source, region) in enumerate(reused):
        image, used, edits, quality = _reuse(source, region, rng)
        image, _ = _at_least(image, MIN_PANEL_SIZE)
        file = f"reuse{number:02d}." + ("jpg" if quality else "png")
        Image.fromarray(image).save(paper / file, **({"quality": quality} if quality else {}))
        rows.append({"file": file, "source": name, "x": used[0], "y": used[1], "width": used[2], "height": used[3]})
    for path in test_files:
        if len(rows) >= manuscript:
            break
        source = _uint8(read_image(path))
        for x, y, w, h in _regions(source, 1, rng):
            file = f"new{len(rows):02d}.png"
            Image.fromarray(source[y:y + h, x:x + w]).save(paper / file)
            rows.append({"file": file, "source": f"{path.parent.name}/{path.name}", "x": x, "y": y, "width": w,
                         "height": h})
    start = time.perf_counter()
    result = screener.screen([paper], index=folder, out=Path(workspace) / "manuscript_report")
    screen_s = time.perf_counter() - start
    by_file = {row["file"]: row for row in rows}
    found = set()
    for record in (r for r in result if r.same):
        for mine, other in ((record.a, record.b), (record.b, record.a)):
            row = by_file.get(Path(mine.file).name)
            if row and row["file"].startswith("reuse") and other.paper == "index":
                box = dict(zip(("x", "y", "width", "height"), other.box))
                if pair_labels([row, {"source": other.file, **box}])[0]:
                    found.add(row["file"])
    return {
        "index_panels": len(index), "index_kind": index.meta["kind"],
        "index_build_s": round(build_s, 2), "index_build_stage_s": {k: round(v, 2) for k, v in times.items()},
        "index_embed_ms_per_panel": round(1000 * times["embed"] / max(index_n, 1), 2),
        "manuscript_panels": len(result.panels), "planted_reuses_of_indexed_panels": len(reused),
        "planted_reuses_reported": len(found),
        "reported_pairs": sum(r.same for r in result),
        "screen_s": round(screen_s, 2), "screen_stage_s": {k: round(v, 2) for k, v in result.timings.items()},
    }


def archive_benchmark(sizes=(1000, 10000), model=None, split_json=None, seed: int = 0, neighbours: int = 10,
                      index_n: int = 100000, data=None, groups: int = 100, copies: int = 1,
                      progress: bool = False, manuscript: int = 50, manuscript_reuses: int = 10,
                      split: str = "test", keep=None, normalise: bool = False) -> dict:
    """`tools/benchmark.py archive` (see there): per archive size, the descriptor's all-pairs AP
    and recall@k next to pHash over 8 orientations, the screen's precision and recall at its
    decision, its stages' wall time and memory; then a manuscript against an index."""
    import shutil
    import tempfile

    from PIL import Image

    from keras_forensics.screening.screener import Screener

    data = Path(data) if data else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    workspace = Path(tempfile.mkdtemp(prefix="kf_archive_benchmark_"))
    try:
        test_files, other_files, split_note = archive_sources(data, split_json, seed, workspace, split=split)
        screener = Screener.load(model, neighbours=neighbours, progress=progress, normalise=normalise)
        scorer = screener.scorer
        # warm-up (tracing, first runs of the kernels) at the batch size the screen embeds with
        warm = np.random.default_rng(seed).random((64, 128, 128), np.float32)
        scorer.embed_panels(list(warm), progress=False, oriented=screener.oriented)
        scorer.embed_panels(list(warm), progress=False)
        results = []
        for count in sizes:
            folder = workspace / f"archive_{count}"
            start = time.perf_counter()
            rows = build_archive(folder, count, test_files, other_files, groups, copies, seed)
            build_s = time.perf_counter() - start
            first, second = reuse_pairs(rows)
            screen, vectors = archive_screen(screener, folder, rows, first, second, workspace)

            start = time.perf_counter()
            background = screener.background
            as_they_are = vectors[:, 0] if vectors.ndim == 3 else vectors
            offsets = None if background is None else background.offsets(as_they_are)
            descriptor = retrieval_stats(vectors, scorer.metric, first, second, panel_offsets=offsets)
            descriptor["all_pairs_s"] = round(time.perf_counter() - start, 2)
            descriptor["distance"] = ("raw f (the screen's default)" if background is None
                                      else "normalised f_norm (screening.background)")
            # the other distance, for comparison: raw when the screen normalises, else normalised
            # when the model ships a background set
            other = None
            if background is not None:
                other = retrieval_stats(vectors, scorer.metric, first, second)
                other["distance"] = "raw f"
            elif scorer.background is not None:
                other = retrieval_stats(vectors, scorer.metric, first, second,
                                        panel_offsets=scorer.background.offsets(as_they_are))
                other["distance"] = "normalised f_norm (screen --normalise)"
            start = time.perf_counter()
            hashes = phash_bits([np.asarray(Image.open(folder / "panels" / row["file"]).convert("L")) for row in rows])
            hash_s = time.perf_counter() - start
            start = time.perf_counter()
            # squared L2 of 0/1 rows is their Hamming distance (and pairs' L1 kernel, traced for the
            # embedding's width already, would be retraced with an unknown width)
            phash = retrieval_stats(hashes, "squared_l2", first, second)
            phash.update(hash_s=round(hash_s, 2), all_pairs_s=round(time.perf_counter() - start, 2))
            roles = [row["role"] for row in rows]
            results.append({
                "n": count, "panels": len(rows), "planted_originals": roles.count("original"),
                "planted_reuses": roles.count("reuse"), "distractors": roles.count("distractor"),
                "distractor_sources": len({row["source"] for row in rows if row["role"] == "distractor"}),
                "reuse_pairs": int(len(first)), "build_archive_s": round(build_s, 2),
                "descriptor": descriptor, "descriptor_other_distance": other, "phash_8_orientations": phash,
                "ap_ratio_descriptor_to_phash": (round(descriptor["ap_all_pairs"] / phash["ap_all_pairs"], 2)
                                                 if phash["ap_all_pairs"] else None),
                "screen": screen, "process_peak_rss_mb": _process_peak_mb(),
            })
            if keep:  # the archive (panels/ and manifest.csv), e.g. to fit the combined score on
                shutil.copytree(folder, Path(keep) / folder.name, dirs_exist_ok=True)
            shutil.rmtree(folder, ignore_errors=True)
        index = (index_benchmark(screener, test_files, other_files, index_n, workspace, seed, manuscript,
                                 manuscript_reuses) if index_n else None)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    return {
        "benchmark": "archive", "model": scorer.source, "metric": scorer.metric,
        "oriented": screener.oriented, "data": str(data), "split": split_note, "seed": seed,
        "archive": (f"per N: up to {groups} {split}-split regions (at most 1/{PLANTED_SHARE} of the panels "
                    f"with their copies), each as it is and re-used {copies}x with "
                    f"make_real_cases' OpenCV/Pillow edits, among distractors (other regions of the {split} "
                    "images, then non-overlapping crops of other micrographs"
                    + (", never of a test image," if split != "test" else "") + " and of the embedded images)"),
        "ground_truth": "make_real_cases.pair_labels: same source, regions overlapping by >= 1/4 of the smaller",
        "recall_at_k": "share of re-used pairs with one panel among the other's k nearest",
        "cpu_count": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 1),
        "sizes": results, "manuscript_against_index": index, "process_peak_rss_mb": _process_peak_mb(),
    }
