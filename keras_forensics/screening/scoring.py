"""The combined score of a pair: Siamese p_same and the verifier's evidence, calibrated.

    combined = sigmoid(bias + siamese_weight * (1 - distance) + inlier_weight * log(1 + inliers)
                       + coverage_weight * coverage)

(1 - distance) is the Siamese network's logit (p_same = sigmoid(1 - distance), Cicconet et al.),
log(1 + inliers) the verifier's evidence, which grows slowly once a handful of inliers have made
geometry certain, and coverage how much of the panel the inliers span (`verify.Verification`): a
shared panel letter or scale bar gives a few inliers in a corner, a re-use gives them all over
(counted from COVERAGE_MIN_INLIERS inliers: the spread of 4 chance matches means nothing).
The four numbers are a logistic regression fitted on a validation folder of known re-uses
(`CombinedScore.fit`; `tools/benchmark.py screen-accuracy --calibration_folder` fits, reports and
can write them). Every weight is kept >= 0, so more inliers, a wider spread or a smaller distance
never lower the score. `calibration.json` beside this file holds the shipped model's
calibration; `screen --calibration FILE` uses another.

Identical files and pixel-identical panels bypass the formula: their combined score is 1.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from keras_forensics.errors import ForensicsError
from keras_forensics.metrics import ranking

CALIBRATION_FILE = Path(__file__).with_name("calibration.json")

#: A pair is a confirmed re-use when its combined score is above this. The one definition:
#: `PairRecord.same`, the re-use groups, the report and the CLI's summary line all use it.
REUSE_SCORE = 0.5


#: Coverage counts from this many inliers. A similarity is fixed by 2 matches, so 4 inliers (the
#: verifier's minimum) are 2 beyond its sample: 4 blobs of two unrelated nuclei fields line up by
#: chance, and their spread says nothing. No confirmed re-use of the validation archive or folder
#: had fewer than 5 inliers.
COVERAGE_MIN_INLIERS = 5


def features(distance, inliers, coverage=None) -> np.ndarray:
    """[N, 3]: the Siamese logit (1 - distance, floored at -20), log(1 + inliers) and coverage
    (0 where not given, and where fewer than COVERAGE_MIN_INLIERS inliers span it)."""
    distance = np.asarray(distance, np.float64)
    inliers = np.asarray(inliers, np.float64)
    coverage = np.zeros_like(distance) if coverage is None else np.asarray(coverage, np.float64)
    coverage = np.where(inliers >= COVERAGE_MIN_INLIERS, coverage, 0.0)
    return np.stack([np.maximum(1.0 - distance, -20.0), np.log1p(np.maximum(inliers, 0.0)),
                     np.clip(coverage, 0.0, 1.0)], axis=-1)


@dataclasses.dataclass(frozen=True)
class CombinedScore:
    """sigmoid(bias + siamese_weight * (1 - distance) + inlier_weight * log(1 + inliers)
    + coverage_weight * coverage).

    Attributes:
        fitted_on: what the calibration was fitted on (folder, pairs, model), for reports.
    """

    bias: float = -6.0
    siamese_weight: float = 1.0
    inlier_weight: float = 2.5
    coverage_weight: float = 0.0
    fitted_on: str = "not fitted: prior values"

    def __call__(self, distance, inliers, coverage=None) -> np.ndarray:
        x = features(distance, inliers, coverage)
        logit = (self.bias + self.siamese_weight * x[..., 0] + self.inlier_weight * x[..., 1]
                 + self.coverage_weight * x[..., 2])
        return 1.0 / (1.0 + np.exp(-logit))

    @classmethod
    def fit(cls, distance, inliers, labels, coverage=None, l2: float = 1e-3, fitted_on: str = "",
            iterations: int = 100) -> "CombinedScore":
        """Logistic regression by Newton's method (IRLS) with a small L2 penalty on the weights;
        a weight that comes out negative is fixed at 0 and the others refitted. Without
        `coverage`, its weight is 0."""
        x = features(distance, inliers, coverage)
        y = np.asarray(labels, np.float64)
        if y.min() == y.max():
            raise ForensicsError("calibration needs both re-used and different pairs")
        active = [0, 1, 2] if coverage is not None else [0, 1]
        while True:
            design = np.concatenate([np.ones((len(x), 1)), x[:, active]], axis=1)
            weights = np.zeros(design.shape[1])
            penalty = np.full(design.shape[1], l2)
            penalty[0] = 0.0
            for _ in range(iterations):
                p = 1.0 / (1.0 + np.exp(-design @ weights))
                gradient = design.T @ (p - y) + penalty * weights
                hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty + 1e-9)
                step = np.linalg.solve(hessian, gradient)
                weights -= step
                if np.max(np.abs(step)) < 1e-8:
                    break
            negative = [a for a, w in zip(active, weights[1:]) if w < 0]
            if not negative:
                break
            active = [a for a in active if a not in negative]
        full = np.zeros(3)
        full[active] = weights[1:]
        return cls(float(weights[0]), float(full[0]), float(full[1]), float(full[2]), fitted_on)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path=None) -> "CombinedScore":
        """A saved calibration; without a path the shipped one (or the prior if none ships)."""
        path = Path(path) if path is not None else CALIBRATION_FILE
        if not path.is_file():
            if path == CALIBRATION_FILE:
                return cls()
            raise ForensicsError(f"--calibration {path}: no such file")
        try:
            values = json.loads(path.read_text())
            return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values})
        except (json.JSONDecodeError, TypeError) as error:
            raise ForensicsError(f"{path}: not a calibration file ({error})") from None


def average_precision(scores, labels) -> float:
    """`metrics.ranking.average_precision` with the screening's argument order, and NaN (not an
    error) for a set without a single true pair."""
    labels = np.asarray(labels, bool)
    if not labels.any():
        return float("nan")
    return ranking.average_precision(labels, scores)
