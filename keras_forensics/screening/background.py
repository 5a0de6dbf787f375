"""Score normalisation against a background set of unrelated panels (SSCD, Pizzi et al. 2022).

A raw descriptor distance means different things in different places of the embedding space: two
blank grey panels are close because everything blank is close, two busy micrographs are far
apart even when one is a crop of the other. SSCD subtracts from each query's similarity its
similarity to its k-th nearest neighbour in a fixed *background* set of panels known to be
unrelated, so that a score measures "closer than this panel is to anything unrelated". Screening
uses the symmetric form, in the units of the Siamese distance f:

    f_norm(a, b) = max(f(a, b) + o(a) + o(b), 0),    o(x) = beta / 2 * (r - min(b_k(x), cap))

where b_k(x) is x's distance to its k-th nearest background panel, r the median of that
distance over the background panels themselves (each left out of its own search) and cap its
maximum. A panel in a crowded region (small b_k: blank, dotted or look-alike panels) is pushed
away from everything; a distinctive one is pulled closer; a typical one keeps its distances, so
the calibrated threshold f <= 1 keeps its meaning. The background is fixed with the model, so the
same pair gets the same normalised distance in a 10-panel manuscript and in a 10^5-panel archive.

A search under f_norm is a plain nearest-neighbour search with one more coordinate
(`augment`): the indexed panels get t(b) (sqrt(o(b) - o_min) for squared L2, o(b) - o_min for
L1; o_min = beta / 2 * (r - cap) is the floor of o), the queries get 0, so the search distance
is f(a, b) + o(b) - o_min and, for a fixed query a, ranks its neighbours exactly as f_norm does.
`from_search` turns such a distance back into f_norm.

The background is the weighted embeddings of training-split patches (never validation or test),
written by `python -m keras_forensics.train descriptor` as `background.npz` (the embeddings, k
and beta) in the run dir and exported into the SavedModel's assets.extra/.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from keras_forensics.errors import ForensicsError

#: The file (beside model.keras in a run dir, in assets.extra/ of a SavedModel).
BACKGROUND_FILE = "background.npz"

#: SSCD's defaults: the k-th nearest background panel, the full similarity subtracted.
K = 10
BETA = 1.0


def _kth_smallest(queries: np.ndarray, database: np.ndarray, k: int, metric: str,
                  chunk: int = 4096, skip_self: bool = False) -> np.ndarray:
    """[N]: each query's distance to its k-th nearest (1-based) row of `database`; with
    `skip_self` (queries = database), each row's own zero distance is not counted."""
    from keras_forensics.screening.pairs import pairwise_distances

    out = np.zeros(len(queries), np.float32)
    position = k if skip_self else k - 1
    for start in range(0, len(queries), chunk):
        distances = pairwise_distances(queries[start:start + chunk], database, metric)
        if skip_self:
            rows = np.arange(len(distances))
            distances[rows, start + rows] = -np.inf  # always first: then skipped by position k
        out[start:start + chunk] = np.partition(distances, position, axis=1)[:, position]
    return out


@dataclasses.dataclass
class Background:
    """A fixed set of unrelated panels' weighted embeddings [B, D] and the normalisation it defines.

    Attributes:
        vectors: the background's weighted embeddings (under `metric`).
        metric: "l1" or "squared_l2" (the scorer's).
        k, beta: SSCD's k-th neighbour and the weight of the subtracted term.
        reference, cap: r and cap of the module docstring (computed from `vectors`).
    """

    vectors: np.ndarray
    metric: str
    k: int = K
    beta: float = BETA
    reference: float = dataclasses.field(init=False)
    cap: float = dataclasses.field(init=False)

    def __post_init__(self):
        self.vectors = np.ascontiguousarray(self.vectors, np.float32)
        if self.vectors.ndim != 2 or len(self.vectors) <= self.k:
            raise ForensicsError(f"a background needs more than k = {self.k} embeddings [B, D], "
                                 f"got shape {self.vectors.shape}")
        own = _kth_smallest(self.vectors, self.vectors, self.k, self.metric, skip_self=True)
        self.reference, self.cap = float(np.median(own)), float(np.max(own))

    @classmethod
    def load(cls, path, metric: str) -> "Background | None":
        """The background saved at `path` (`save`), or None if there is none."""
        path = Path(path)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as saved:
                return cls(saved["vectors"], metric, int(saved["k"]), float(saved["beta"]))
        except (ValueError, OSError, KeyError, EOFError) as error:
            raise ForensicsError(f"{path}: not a background file ({error})") from None

    def save(self, path) -> Path:
        """An .npz file with the embeddings, k and beta."""
        path = Path(path)
        with open(path, "wb") as handle:  # a file object: np.savez would add .npz to another suffix
            np.savez(handle, vectors=self.vectors.astype(np.float32), k=self.k, beta=self.beta)
        return path

    def describe(self) -> dict:
        return {"background_panels": len(self.vectors), "k": self.k, "beta": self.beta,
                "reference": round(self.reference, 4), "cap": round(self.cap, 4)}

    # -----------------------------------------------------------------------------------------

    @property
    def floor(self) -> float:
        """o_min: the smallest offset any panel can get."""
        return self.beta / 2 * (self.reference - self.cap)

    def offsets(self, vectors: np.ndarray) -> np.ndarray:
        """o(x) [N] of weighted embeddings [N, D] (as they are)."""
        vectors = np.asarray(vectors, np.float32)
        if not len(vectors):
            return np.zeros(0, np.float32)
        kth = np.minimum(_kth_smallest(vectors, self.vectors, self.k, self.metric), self.cap)
        return (self.beta / 2 * (self.reference - kth)).astype(np.float32)

    def normalise(self, distance, offset_a, offset_b) -> np.ndarray:
        """f_norm from raw distances f and both panels' offsets."""
        return np.maximum(np.asarray(distance, np.float32) + offset_a + offset_b, 0.0)

    def augment(self, vectors: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(indexed rows [N, D + 1], query rows [N, D + 1]) for a search under f_norm (module docstring)."""
        vectors = np.asarray(vectors, np.float32)
        excess = np.maximum(np.asarray(offsets, np.float32) - self.floor, 0.0)
        extra = np.sqrt(excess) if self.metric == "squared_l2" else excess
        return (np.concatenate([vectors, extra[:, None]], 1),
                np.concatenate([vectors, np.zeros((len(vectors), 1), np.float32)], 1))

    def query_rows(self, vectors: np.ndarray) -> np.ndarray:
        """Query rows [..., D + 1] (the extra coordinate 0) of weighted embeddings [..., D]."""
        vectors = np.asarray(vectors, np.float32)
        return np.concatenate([vectors, np.zeros(vectors.shape[:-1] + (1,), np.float32)], -1)

    def from_search(self, search_distance, query_offsets) -> np.ndarray:
        """f_norm(a, b) from the search distance f(a, b) + o(b) - o_min of query a and o(a)."""
        return np.maximum(np.asarray(search_distance, np.float32) + self.floor + query_offsets, 0.0)

    def search_threshold(self, threshold: float, query_offsets) -> np.ndarray:
        """Per query: the search distance at which f_norm reaches `threshold`."""
        return threshold - self.floor - np.asarray(query_offsets, np.float32)
