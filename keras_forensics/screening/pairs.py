"""All pairs of panels within a distance threshold: exact (blockwise TensorFlow) or FAISS.

The inputs are *weighted* embeddings (`SiameseScorer.embed_panels`), so the Siamese distance f is
a plain distance between rows under the scorer's `metric`: L1 for the paper's network (rows are
alpha * C(I), f = sum_k alpha_k |C_k(I) - C_k(J)|), squared L2 for the copy-detection descriptor
(rows are unit vectors scaled by `CosineDistance.weight`).

* `exact_pairs`: every pair, computed block by block in TensorFlow (a [rows, cols] block of
  distances at a time, the L1 sum split over slices of the embedding so no [rows, cols, D] tensor
  is ever materialised), with no Python loop over pairs. Used below `EXACT_MAX` panels.
* `faiss_pairs`: FAISS with METRIC_L1 (alpha >= 0, so the weighted metric is plain L1): "flat"
  is exact (range search), "hnsw" is approximate and scales to large corpora (k-NN search of
  `max_neighbours` per panel, filtered by the threshold; FAISS's HNSW range search is not used
  because it aborts the process in faiss-cpu 1.15 on some inputs).
* `search_pairs`: picks one of them ("auto": exact up to `EXACT_MAX`, HNSW above).

Besides the pairs within `threshold`, each function can add every panel's `k` nearest others
whatever their distance: with the verifier behind the network, a generous candidate set costs a
few keypoint matches and catches re-uses the network ranks first but scores above the threshold.

faiss-cpu is an optional dependency (`pip install keras_forensics[search]`); without it, the exact
path still works and the FAISS functions raise a ForensicsError saying how to install it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging

import numpy as np

from keras_forensics.errors import ForensicsError

logger = logging.getLogger(__name__)

#: Up to this many panels, screening compares all pairs exactly (blockwise TensorFlow); up to
#: FLAT_MAX, FAISS's exact flat index; above, HNSW.
EXACT_MAX = 5000
FLAT_MAX = 100_000

#: Up to this many pairs, screening verifies every pair with keypoints (a manuscript: up to about
#: 200 panels, ~1 min at ~3 ms per pair on 2 cores); above, the Siamese search picks candidates.
VERIFY_ALL_MAX = 20_000


def verifies_every_pair(panels: int, limit: int = VERIFY_ALL_MAX) -> bool:
    """Whether screening `panels` panels verifies all their pairs (at most `limit` pairs)."""
    return panels * (panels - 1) // 2 <= limit

#: HNSW parameters (graph degree, build and search beam widths) and the neighbours looked at per
#: panel (a panel re-used more than MAX_NEIGHBOURS times keeps its nearest MAX_NEIGHBOURS),
#: measured with `tools/benchmark.py screen`.
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 40
HNSW_EF_SEARCH = 32
MAX_NEIGHBOURS = 16

FAISS_HELP = "FAISS is not installed: pip install 'keras_forensics[search]' (or pip install faiss-cpu)"


@dataclasses.dataclass
class Pairs:
    """Pairs (first[n], second[n]) with first < second, and their distances."""

    first: np.ndarray
    second: np.ndarray
    distance: np.ndarray

    def __len__(self) -> int:
        return len(self.first)

    def as_set(self) -> set[tuple[int, int]]:
        return set(zip(self.first.tolist(), self.second.tolist()))

    @classmethod
    def empty(cls) -> "Pairs":
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))

    @classmethod
    def from_directed(cls, rows, cols, distances) -> "Pairs":
        """Canonical, de-duplicated pairs from (row, col, distance) triplets in any direction."""
        rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
        distances = np.asarray(distances, np.float32)
        keep = (rows != cols) & (cols >= 0) & (rows >= 0)
        rows, cols, distances = rows[keep], cols[keep], distances[keep]
        first, second = np.minimum(rows, cols), np.maximum(rows, cols)
        order = np.lexsort((distances, second, first))
        first, second, distances = first[order], second[order], distances[order]
        unique = np.ones(len(first), bool)
        unique[1:] = (first[1:] != first[:-1]) | (second[1:] != second[:-1])
        return cls(first[unique], second[unique], distances[unique])


def faiss_module():
    """The faiss module, or a ForensicsError with the install command."""
    try:
        import faiss
    except ImportError:
        raise ForensicsError(FAISS_HELP) from None
    return faiss


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# exact, blockwise in TensorFlow


def _slice_width(rows: int, cols: int, dim: int, budget_bytes: int = 32 << 20) -> int:
    return int(max(1, min(dim, budget_bytes // (4 * rows * cols))))


#: The metrics a scorer's weighted embeddings are compared with: "l1" (the paper's alpha-weighted
#: L1, `WeightedL1Distance`) or "squared_l2" (the copy-detection descriptor, `CosineDistance`).
METRICS = ("l1", "squared_l2")


def _check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ForensicsError(f"unknown metric {metric!r} (use {' or '.join(METRICS)})")
    return metric


@functools.lru_cache(maxsize=None)
def _block_fn(width: int, metric: str = "l1", dim: int | None = None):
    """The [B, D] x [D, C] -> [B, C] distance kernel of `metric`, traced for embeddings of `dim`
    components (part of the cache key: a kernel traced with retracing relaxed for one D would
    lose the static D that the L1 kernel's unrolled slices need)."""
    import tensorflow as tf

    signature = [tf.TensorSpec([None, dim], tf.float32), tf.TensorSpec([dim, None], tf.float32)]

    if metric == "squared_l2":
        @tf.function(input_signature=signature)
        def squared_l2_block(rows, cols_t):
            """|a|^2 + |b|^2 - 2 a.b, one matmul."""
            dot = tf.matmul(rows, cols_t)
            norms = tf.reduce_sum(rows * rows, axis=1)[:, None] + tf.reduce_sum(cols_t * cols_t, axis=0)[None, :]
            return tf.maximum(norms - 2.0 * dot, 0.0)

        return squared_l2_block

    @tf.function(input_signature=signature)
    def l1_block(rows, cols_t):
        """Sum of |a - b| over `width`-wide slices of D (unrolled: D is static), so no [B, D, C]
        tensor is materialised."""
        total = None
        for start in range(0, dim, width):
            part = tf.reduce_sum(tf.abs(rows[:, start:start + width, None] - cols_t[None, start:start + width, :]),
                                 axis=1)
            total = part if total is None else total + part
        return total

    return l1_block


def _kernel(block_rows: int, block_cols: int, dim: int, metric: str):
    return _block_fn(_slice_width(block_rows, block_cols, dim), _check_metric(metric), int(dim))


def pairwise_distances(a: np.ndarray, b: np.ndarray, metric: str = "l1", block_rows: int = 256,
                       block_cols: int = 2048) -> np.ndarray:
    """The full [len(a), len(b)] distance matrix under `metric`, blockwise (for small sets, e.g. a heat map)."""
    import tensorflow as tf

    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    out = np.zeros((len(a), len(b)), np.float32)
    if not len(a) or not len(b):
        return out
    block = _kernel(block_rows, block_cols, a.shape[1], metric)
    for c0 in range(0, len(b), block_cols):
        cols_t = tf.constant(b[c0:c0 + block_cols].T.copy())
        for r0 in range(0, len(a), block_rows):
            out[r0:r0 + block_rows, c0:c0 + block_cols] = block(tf.constant(a[r0:r0 + block_rows]), cols_t).numpy()
    return out


def distance_matrix(vectors: np.ndarray, metric: str = "l1") -> np.ndarray:
    """[N, N] Siamese distances of [N, D] weighted embeddings, or of [N, T, D] oriented ones
    (`embed_panels(oriented=True)`): the smallest between either panel in any orientation and the
    other as it is, as `search_pairs(turned=...)` measures it."""
    vectors = np.asarray(vectors, np.float32)
    if vectors.ndim == 2:
        return pairwise_distances(vectors, vectors, metric)
    full = np.min([pairwise_distances(vectors[:, t], vectors[:, 0], metric) for t in range(vectors.shape[1])], axis=0)
    return np.minimum(full, full.T)


def all_pairs(vectors: np.ndarray, metric: str = "l1") -> Pairs:
    """Every pair i < j of [N, D] (or oriented [N, T, D]) embeddings with its `distance_matrix` distance."""
    first, second = np.triu_indices(len(vectors), 1)
    distances = distance_matrix(vectors, metric)[first, second] if len(vectors) > 1 else np.zeros(0, np.float32)
    return Pairs(first.astype(np.int64), second.astype(np.int64), np.asarray(distances, np.float32))


def exact_pairs(vectors: np.ndarray, threshold, k: int = 0, block_rows: int = 256,
                block_cols: int = 2048, progress: bool = False, queries: np.ndarray | None = None,
                owners: np.ndarray | None = None, metric: str = "l1") -> Pairs:
    """Every pair with distance (under `metric`) <= threshold, plus each row's `k` nearest others; exact.

    Blocks of `block_rows` x `block_cols` distances are computed in TensorFlow; only the blocks
    on or above the diagonal are needed when k = 0. The selection inside a block (threshold,
    top-k) is done in TensorFlow too, so only the selected pairs come back to Python.

    With `queries` (and `owners`, the row of `vectors` each query stands for, e.g. a turned copy
    of that panel), every query is compared with every row instead, its own row excluded, and
    the pairs are (owner, row). `threshold` may then be one number per query.
    """
    import tensorflow as tf
    from tqdm.auto import tqdm

    vectors = np.asarray(vectors, np.float32)
    symmetric = queries is None
    queries = vectors if symmetric else np.asarray(queries, np.float32)
    owners = np.arange(len(queries)) if owners is None else np.asarray(owners, np.int64)
    count = len(vectors)
    if count < 2 or not len(queries):
        return Pairs.empty()
    block = _kernel(block_rows, block_cols, vectors.shape[1], metric)
    select = _select_fn()
    thresholds = np.broadcast_to(np.asarray(threshold, np.float32), (len(queries),))
    symmetric_t = tf.constant(symmetric)
    k = int(min(k, count - 1))
    rows_out, cols_out, dist_out = [], [], []
    cols_t_blocks = [tf.constant(vectors[c0:c0 + block_cols].T.copy()) for c0 in range(0, count, block_cols)]
    for r0 in tqdm(range(0, len(queries), block_rows), desc="comparing all pairs", unit="block",
                   disable=not progress, leave=False):
        rows = tf.constant(queries[r0:r0 + block_rows])
        row_owners = tf.constant(owners[r0:r0 + block_rows], tf.int64)
        row_thresholds = tf.constant(thresholds[r0:r0 + block_rows, None])
        best_d = best_i = None
        for c_index, cols_t in enumerate(cols_t_blocks):
            c0 = c_index * block_cols
            c1 = c0 + int(cols_t.shape[1])
            if symmetric and not k and c1 <= r0:
                continue  # below the diagonal: its pairs come from the mirrored block
            distances = block(rows, cols_t)
            pair_r, pair_c, pair_d, top_d, top_i = select(distances, row_owners, tf.constant(c0, tf.int64),
                                                          row_thresholds, tf.constant(max(k, 1)), symmetric_t)
            rows_out.append(pair_r.numpy())
            cols_out.append(pair_c.numpy())
            dist_out.append(pair_d.numpy())
            if k:
                best_d = top_d if best_d is None else tf.concat([best_d, top_d], 1)
                best_i = top_i if best_i is None else tf.concat([best_i, top_i], 1)
                best_d, keep = tf.math.top_k(-best_d, k=min(k, int(best_d.shape[1])))
                best_d, best_i = -best_d, tf.gather(best_i, keep, batch_dims=1)
        if k:
            rows_out.append(np.repeat(owners[r0:r0 + int(rows.shape[0])], best_i.shape[1]))
            cols_out.append(best_i.numpy().ravel())
            dist_out.append(best_d.numpy().ravel())
    return Pairs.from_directed(np.concatenate(rows_out), np.concatenate(cols_out), np.concatenate(dist_out))


@functools.lru_cache(maxsize=None)
def _select_fn():
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def select(distances, owners, c0, threshold, k, symmetric):
        """Pairs of the block within the threshold ([B, 1]: each row's; above the diagonal when
        `symmetric`, else every column but the row's owner), and each row's top k other than its owner."""
        shape = tf.shape(distances, out_type=tf.int64)
        rows = owners[:, None]
        cols = c0 + tf.range(shape[1])[None, :]
        mask = (distances <= threshold) & tf.where(symmetric, cols > rows, cols != rows)
        where = tf.where(mask)
        pair_d = tf.gather_nd(distances, where)
        pair_r, pair_c = tf.gather(owners, where[:, 0]), c0 + where[:, 1]
        not_self = tf.where(cols == rows, tf.constant(np.inf, distances.dtype), distances)
        k = tf.minimum(tf.cast(k, tf.int32), tf.cast(shape[1], tf.int32))
        top_d, top_i = tf.math.top_k(-not_self, k=k)
        return pair_r, pair_c, pair_d, -top_d, tf.cast(top_i, tf.int64) + c0

    return select


# ---------------------------------------------------------------------------------------------
# FAISS


def build_faiss_index(vectors: np.ndarray | None, kind: str = "hnsw", dimension: int | None = None,
                      hnsw_m: int = HNSW_M, ef_construction: int = HNSW_EF_CONSTRUCTION, metric: str = "l1"):
    """An IndexFlat or IndexHNSWFlat holding `vectors` (may be None: empty index), with METRIC_L1
    or METRIC_L2 (which FAISS reports as squared distances, as "squared_l2" means)."""
    faiss = faiss_module()
    dimension = dimension or np.asarray(vectors).shape[1]
    faiss_metric = {"l1": faiss.METRIC_L1, "squared_l2": faiss.METRIC_L2}[_check_metric(metric)]
    if kind == "flat":
        index = faiss.IndexFlat(dimension, faiss_metric)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dimension, hnsw_m, faiss_metric)
        index.hnsw.efConstruction = ef_construction
    else:
        raise ForensicsError(f"unknown FAISS index kind {kind!r} (use 'flat' or 'hnsw')")
    if vectors is not None and len(vectors):
        index.add(np.ascontiguousarray(vectors, np.float32))
    return index


def query_index(index, queries: np.ndarray, threshold: float, k: int = 0,
                max_neighbours: int = MAX_NEIGHBOURS, ef_search: int = HNSW_EF_SEARCH):
    """(query row, index id, distance) of index entries within `threshold` of each query, plus each
    query's `k` nearest. Exact for a flat index (range search); HNSW looks at the
    `max(max_neighbours, k)` nearest entries it finds."""
    faiss = faiss_module()
    queries = np.ascontiguousarray(queries, np.float32)
    if not len(queries) or not index.ntotal:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    rows, ids, distances = [], [], []
    if isinstance(index, faiss.IndexHNSW):
        neighbours = int(min(max(max_neighbours, k), index.ntotal))
        index.hnsw.efSearch = max(ef_search, neighbours)
        found_d, found_i = index.search(queries, neighbours)
        rank = np.broadcast_to(np.arange(neighbours), found_d.shape)
        keep = (found_i >= 0) & ((found_d <= threshold) | (rank < k))
        rows.append(np.nonzero(keep)[0])
        ids.append(found_i[keep])
        distances.append(found_d[keep])
    else:
        if threshold >= 0:  # -inf: the k nearest only (the shortlist)
            # Range search keeps distances strictly below the radius; nudge it to include equality.
            limits, found_d, found_i = index.range_search(queries, float(np.nextafter(np.float32(threshold),
                                                                                       np.float32(np.inf))))
            rows.append(np.repeat(np.arange(len(queries)), np.diff(limits).astype(np.int64)))
            ids.append(found_i)
            distances.append(found_d)
        if k:
            top_d, top_i = index.search(queries, int(min(k, index.ntotal)))
            keep = top_i >= 0
            rows.append(np.nonzero(keep)[0])
            ids.append(top_i[keep])
            distances.append(top_d[keep])
    if not rows:  # no threshold and k = 0: nothing asked for
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return (np.concatenate(rows).astype(np.int64), np.concatenate(ids).astype(np.int64),
            np.concatenate(distances).astype(np.float32))


def faiss_pairs(vectors: np.ndarray, threshold: float, kind: str = "hnsw", k: int = 0,
                max_neighbours: int = MAX_NEIGHBOURS, hnsw_m: int = HNSW_M,
                ef_construction: int = HNSW_EF_CONSTRUCTION, ef_search: int = HNSW_EF_SEARCH,
                metric: str = "l1") -> Pairs:
    """All pairs within `threshold` (plus each row's `k` nearest) with a FAISS index of the rows.

    A pair is kept when either side finds the other, which raises HNSW's recall.
    """
    vectors = np.ascontiguousarray(vectors, np.float32)
    if len(vectors) < 2:
        return Pairs.empty()
    index = build_faiss_index(vectors, kind, hnsw_m=hnsw_m, ef_construction=ef_construction, metric=metric)
    # The query itself is among its own neighbours: ask for one more.
    rows, ids, distances = query_index(index, vectors, threshold, k + 1 if k else 0, max_neighbours + 1,
                                       ef_search)
    keep = rows != ids
    return Pairs.from_directed(rows[keep], ids[keep], distances[keep])


def _resolve_method(method: str, count: int, exact_max: int) -> str:
    """"auto" -> exact up to `exact_max` panels, FAISS flat up to FLAT_MAX, HNSW above (exact,
    with a warning, without FAISS); other names are checked."""
    if method == "auto":
        if count <= exact_max:
            return "exact"
        if faiss_available():
            return "flat" if count <= FLAT_MAX else "hnsw"
        logger.warning("%d panels and no FAISS: comparing all pairs exactly, which is slow (%s)", count, FAISS_HELP)
        return "exact"
    if method not in ("exact", "flat", "hnsw"):
        raise ForensicsError(f"unknown search method {method!r} (use auto, exact, flat or hnsw)")
    return method


def search_pairs(vectors: np.ndarray, threshold: float, method: str = "auto", k: int = 0,
                 exact_max: int = EXACT_MAX, progress: bool = False,
                 turned: np.ndarray | None = None, metric: str = "l1", background=None) -> tuple[Pairs, str]:
    """Pairs within the threshold (plus k nearest) and the method used.

    method: "exact" (blockwise TF), "flat" / "hnsw" (FAISS) or "auto" (exact up to `exact_max`
    panels, FAISS flat up to FLAT_MAX, HNSW above; exact with a warning when FAISS is missing).
    threshold: -inf admits no pair by distance alone (only the k nearest).

    `turned` [N, T, D]: other orientations of each row (`SiameseScorer.embed_panels(oriented=True)`).
    A pair's distance is then the smallest between either panel as it is and the other in any
    orientation, and the k nearest are looked up for every orientation.

    `background` (a `background.Background`): the distances, the threshold and the k nearest are
    those of the normalised distance f_norm (`normalised_pairs`).
    """
    count = len(vectors)
    method = _resolve_method(method, count, exact_max)
    if background is not None:
        return normalised_pairs(vectors, threshold, method, k, background, progress, turned, metric), method
    if method == "exact":
        pairs = exact_pairs(vectors, threshold, k=k, progress=progress, metric=metric)
    else:
        pairs = faiss_pairs(vectors, threshold, kind=method, k=k, metric=metric)
    if turned is None or count < 2 or not np.asarray(turned).shape[1]:
        return pairs, method
    turned = np.asarray(turned, np.float32)
    queries = turned.transpose(1, 0, 2).reshape(-1, turned.shape[2])  # orientation-major
    owners = np.tile(np.arange(count), turned.shape[1])
    if method == "exact":
        cross = exact_pairs(vectors, threshold, k=k, progress=progress, queries=queries, owners=owners,
                            metric=metric)
        rows, cols, distances = cross.first, cross.second, cross.distance
    else:
        index = build_faiss_index(vectors, method, metric=metric)
        rows, cols, distances = query_index(index, queries, threshold, k + 1 if k else 0, MAX_NEIGHBOURS + 1)
        rows = owners[rows]
    return Pairs.from_directed(np.r_[pairs.first, rows], np.r_[pairs.second, cols],
                               np.r_[pairs.distance, distances]), method


def oriented_distances(vectors: np.ndarray, first, second, turned: np.ndarray | None = None,
                       metric: str = "l1") -> np.ndarray:
    """The distance of each pair (first[n], second[n]) of [N, D] embeddings; with `turned`
    [N, T, D], the smallest between either panel in any orientation and the other as it is (as
    `distance_matrix` and `search_pairs(turned=...)` measure it)."""
    vectors = np.asarray(vectors, np.float32)
    first, second = np.asarray(first, np.int64), np.asarray(second, np.int64)

    def rows(a, b):
        difference = a.astype(np.float64) - b.astype(np.float64)
        return (np.abs(difference) if metric == "l1" else difference * difference).sum(-1)

    distance = rows(vectors[first], vectors[second])
    if turned is not None and np.asarray(turned).shape[1]:
        turned = np.asarray(turned, np.float32)
        distance = np.minimum(distance, np.minimum(rows(turned[first], vectors[second][:, None]).min(1),
                                                   rows(turned[second], vectors[first][:, None]).min(1)))
    return distance.astype(np.float32)


def normalised_pairs(vectors: np.ndarray, threshold: float, method: str, k: int, background,
                     progress: bool = False, turned: np.ndarray | None = None, metric: str = "l1") -> Pairs:
    """`search_pairs` under the background-normalised distance f_norm (`screening.background`):
    the pairs with f_norm <= threshold plus each panel's k nearest under f_norm, with their f_norm.

    The search runs on `Background.augment`ed rows (one more coordinate), whose distances rank
    each query's neighbours as f_norm does; the pairs' f_norm is then computed from the raw
    embeddings, in both directions at once.
    """
    count = len(vectors)
    if count < 2:
        return Pairs.empty()
    vectors = np.asarray(vectors, np.float32)
    offsets = background.offsets(vectors)
    database, queries = background.augment(vectors, offsets)
    owners = np.arange(count)
    if turned is not None and np.asarray(turned).shape[1]:
        turned = np.asarray(turned, np.float32)
        queries = np.concatenate([queries, background.query_rows(turned.transpose(1, 0, 2).reshape(-1, turned.shape[2]))])
        owners = np.tile(owners, 1 + turned.shape[1])
    else:
        turned = None
    admit = threshold is not None and np.isfinite(threshold) and threshold >= 0
    thresholds = background.search_threshold(threshold, offsets[owners]) if admit else np.float32(-np.inf)
    if method == "exact":
        found = exact_pairs(database, thresholds, k=k, progress=progress, queries=queries, owners=owners,
                            metric=metric)
    else:
        index = build_faiss_index(database, method, metric=metric)
        rows, cols, _ = query_index(index, queries, -np.inf, k + 1 if k else 0, MAX_NEIGHBOURS + 1)
        if admit:
            ranged_rows, ranged_cols, ranged_d = query_index(index, queries, float(np.max(thresholds)), 0,
                                                             MAX_NEIGHBOURS + 1)
            keep = ranged_d <= thresholds[ranged_rows]
            rows, cols = np.r_[rows, ranged_rows[keep]], np.r_[cols, ranged_cols[keep]]
        found = Pairs.from_directed(owners[rows], cols, np.zeros(len(rows), np.float32))
    distance = background.normalise(oriented_distances(vectors, found.first, found.second, turned, metric),
                                    offsets[found.first], offsets[found.second])
    return Pairs(found.first, found.second, distance)
