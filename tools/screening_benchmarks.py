"""The screening benchmarks behind `tools/benchmark.py screen` and `screen-accuracy`.

screen: wall time and peak memory of finding all pairs within the threshold among N embeddings,
exact blockwise TF vs FAISS flat (exact) vs FAISS HNSW, with HNSW's recall against the exact
result, plus end-to-end panels per second of `Screener.screen` on a folder of real images.

screen-accuracy: average precision on a held-out folder of real-case re-uses
(tools/make_real_cases.py) of the Siamese network alone, the keypoint verifier alone, the
combined score (calibrated on a validation folder; every pair verified, as `screen` does up to
pairs.VERIFY_ALL_MAX pairs), the two-stage screen as it runs on larger corpora (only the Siamese
candidates verified), and pHash (imagehash) as the classical baseline -- all in one run, on the
same pairs.
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
    block = pairs_lib._block_fn(pairs_lib._slice_width(len(rows), block_cols, rows.shape[1]))
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


def _pair_scores(folder, scorer, verifier, progress=True, turns=True):
    """Everything measured on one real-case folder, for all pairs i < j (upper triangle order).

    With `turns`, the Siamese distance is the screener's: the smallest over either panel's 8
    orientations against the other as it is."""
    import imagehash
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
    distance = distance_matrix(oriented)[first, second]

    start = time.perf_counter()
    inliers = np.zeros(len(first), np.int64)
    coverage = np.zeros(len(first), np.float64)
    for n, (i, j) in enumerate(tqdm(list(zip(first, second)), desc=f"verifying all pairs of {folder.name}",
                                    disable=not progress, leave=False)):
        verification = verifier.verify(images[i], images[j], i, j)
        inliers[n], coverage[n] = verification.inliers, verification.coverage
    verify_s = time.perf_counter() - start

    hashes = [imagehash.phash(Image.open(folder / r["file"]).convert("L")) for r in rows]
    phash = np.array([hashes[i] - hashes[j] for i, j in zip(first, second)], np.float64)
    return {"oriented": oriented if turns else oriented[:, None], "labels": labels, "distance": distance,
            "inliers": inliers, "coverage": coverage, "phash": phash, "first": first, "second": second,
            "panels": len(rows),
            "embed_ms_per_panel": 1000 * embed_s / len(rows), "verify_ms_per_pair": 1000 * verify_s / len(first)}


def accuracy_benchmark(folder, calibration_folder=None, model=None, threshold: float = 1.0, neighbours: int = 2,
                       write_calibration=None, progress: bool = True, turns: bool = True) -> dict:
    """See the module docstring."""
    from keras_forensics.screening.model import load_scorer
    from keras_forensics.screening.pairs import search_pairs, verifies_every_pair
    from keras_forensics.screening.scoring import CombinedScore, average_precision
    from keras_forensics.screening.verify import Verifier

    scorer = load_scorer(model)
    verifier = Verifier()
    test = _pair_scores(folder, scorer, verifier, progress, turns)
    if calibration_folder:
        verifier.clear()
        validation = _pair_scores(calibration_folder, scorer, verifier, progress, turns)
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
    candidates, _ = search_pairs(oriented[:, 0], threshold, "exact", k=neighbours, turned=oriented[:, 1:])
    position = {(int(i), int(j)): n for n, (i, j) in enumerate(zip(test["first"], test["second"]))}
    verified = np.zeros(len(labels), bool)
    verified[[position[p] for p in candidates.as_set()]] = True
    combined_screen = combiner(test["distance"], np.where(verified, test["inliers"], 0),
                               np.where(verified, test["coverage"], 0.0))

    result = {
        "benchmark": "screen-accuracy",
        "folder": str(folder), "panels": test["panels"], "pairs": int(len(labels)), "reused_pairs": int(labels.sum()),
        "model": scorer.source, "turns": bool(turns),
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
