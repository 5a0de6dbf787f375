"""Keypoint verification of candidate pairs (OpenCV SIFT), with the transform, aligned overlay and
shared-area mask shown in the report.

The Siamese network retrieves candidates at scale; this confirms them with geometry, the way a
person does: local features that match under one rotation, scale, shift (and possibly a mirror).

* Features: SIFT (Lowe 2004) with a low contrast threshold (micrographs are low-contrast), on
  the panel stretched to its 0.5-99.5 percentile range (robust to contrast and gamma changes)
  and shrunk to at most `max_side` pixels. Computed once per panel and cached.
* Mirrored matching: SIFT is not mirror-invariant, so panel B is also described mirrored
  (left-right); a vertical flip is a left-right flip plus a 180 degree rotation, so this
  covers every mirror.
* Matching: 2 nearest neighbours, Lowe's ratio test, then one match per keypoint: SIFT puts
  several orientations at one location, and a location matched twice must count once.
* RANSAC estimates a similarity transform (rotation, uniform scale, shift:
  `cv2.estimateAffinePartial2D`) in the mirrored and unmirrored hypotheses; the one with
  more inliers wins. The verifier's score is its inlier count.
* Plausibility: a transform no figure re-use has is rejected (its inliers count 0, the reason is
  kept in `Verification.rejected` and shown in the report): a scale outside
  [MIN_SCALE, MAX_SCALE] (a handful of inliers at scale 0.09 fit some pair of unrelated dotted
  micrographs), or inliers confined to a small patch of both panels (coverage below
  MIN_COVERAGE on each side: a shared panel letter, scale bar, arrow or text label; a cropped
  re-use covers the crop).

The transform maps panel A's pixel coordinates to panel B's: [x_b, y_b] = M @ [x_a, y_a, 1].
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

#: SIFT and matching parameters (measured on the real-case folder of tools/make_real_cases.py).
CONTRAST_THRESHOLD = 0.01
MAX_FEATURES = 2000
MAX_SIDE = 512
RATIO = 0.8
RANSAC_THRESHOLD = 4.0  # pixels at the working resolution
MIN_INLIERS_FOR_TRANSFORM = 4
#: Plausible re-use transforms: re-used panels are rescaled by at most 4x either way (1/4 is
#: the strongest rescale tools/make_real_cases.py and the archive benchmark plant), with margin,
#: and the shared area spans at least this much of one of the two panels (sqrt of its bounding
#: box's share of the panel's area; a panel letter or scale bar gives 0.06-0.12).
MIN_SCALE = 0.2
MAX_SCALE = 5.0
MIN_COVERAGE = 0.15


@dataclasses.dataclass
class Features:
    """SIFT keypoints (in panel pixel coordinates) and descriptors of one panel (or its mirror)."""

    points: np.ndarray  # [K, 2] float32, x, y
    descriptors: np.ndarray  # [K, 128] float32
    scale: float  # working resolution / panel resolution
    shape: tuple[int, int]  # panel (height, width)


@dataclasses.dataclass
class Verification:
    """The verifier's verdict on a pair.

    Attributes:
        inliers: matches consistent with the estimated transform (0 when none was found).
        matches: matches that passed the ratio test and the one-match-per-keypoint rule.
        mirrored: the best transform includes a mirror.
        matrix: [2, 3] similarity (plus mirror) mapping A's pixels to B's, or None.
        coverage: how much of the panels the inliers span: the square root of their bounding
            box's share of the panel's area (0 to 1), in A or in B, whichever is larger (a crop of
            A re-used as B spans all of B). A re-used panel shares a large area; two panels that
            only share a panel letter or a scale bar match in a corner (0.06-0.12 in our real cases).
        rejected: why a transform was found but judged implausible (the module docstring), "" if not.
    """

    inliers: int
    matches: int
    mirrored: bool = False
    matrix: np.ndarray | None = None
    points_a: np.ndarray | None = None  # inlier keypoints in A, [n, 2]
    coverage: float = 0.0
    rejected: str = ""

    @property
    def rotation(self) -> float:
        """Rotation in degrees (after the mirror, when mirrored), in (-180, 180]."""
        if self.matrix is None:
            return 0.0
        linear = self._unmirrored()
        return float(math.degrees(math.atan2(linear[1, 0], linear[0, 0])))

    @property
    def scale(self) -> float:
        """How much larger B is than A."""
        if self.matrix is None:
            return 1.0
        return float(math.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))

    def _unmirrored(self):
        linear = self.matrix[:, :2].copy()
        if self.mirrored:
            linear[:, 0] *= -1  # undo the left-right flip applied first
        return linear

    def transform_text(self) -> str:
        """A short description: `rotate 90.0 deg, scale 1.00, shift (12, -3) px, mirrored left-right`
        (the mirror comes first, then the rotation)."""
        if self.matrix is None:
            return ""
        rotation = self.rotation
        mirror = ""
        if self.mirrored:
            # A left-right mirror then 180 degrees is a top-bottom mirror: name the simpler one.
            if abs(abs(rotation) - 180.0) < 1.0:
                rotation, mirror = 0.0, ", mirrored top-bottom"
            else:
                mirror = ", mirrored left-right"
        if round(rotation, 1) == 0:
            rotation = 0.0  # never "rotate -0.0 deg"
        return (f"rotate {rotation:.1f} deg, scale {self.scale:.2f}, "
                f"shift ({round(self.matrix[0, 2])}, {round(self.matrix[1, 2])}) px{mirror}")  # never "-0"

    def as_dict(self) -> dict:
        return {"inliers": self.inliers, "matches": self.matches, "mirrored": self.mirrored,
                "rotation": round(self.rotation, 2), "scale": round(self.scale, 4),
                "coverage": round(self.coverage, 4), "rejected": self.rejected,
                "matrix": None if self.matrix is None else np.round(self.matrix, 5).tolist()}


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Contrast-stretched 8-bit version of a float panel (0.5 and 99.5 percentiles -> 0, 255)."""
    image = np.asarray(image, np.float32)
    low, high = np.percentile(image, (0.5, 99.5))
    if high - low < 1e-6:
        low, high = float(image.min()), float(image.min()) + 1.0
    return np.clip((image - low) / (high - low) * 255.0 + 0.5, 0, 255).astype(np.uint8)


class Verifier:
    """SIFT + RANSAC pair verification with a per-panel feature cache.

    Args:
        contrast_threshold, max_features, max_side, ratio, ransac_threshold: see the module
            constants.

    Example:
        >>> verifier = Verifier()
        >>> result = verifier.verify(panel_a, panel_b)  # or verify(a, b, key_a, key_b) to cache
        >>> result.inliers, result.transform_text()
    """

    def __init__(self, contrast_threshold: float = CONTRAST_THRESHOLD, max_features: int = MAX_FEATURES,
                 max_side: int = MAX_SIDE, ratio: float = RATIO, ransac_threshold: float = RANSAC_THRESHOLD):
        import cv2

        self.contrast_threshold = contrast_threshold
        self.max_features = max_features
        self.max_side = max_side
        self.ratio = ratio
        self.ransac_threshold = ransac_threshold
        self._sift = cv2.SIFT_create(nfeatures=max_features, contrastThreshold=contrast_threshold)
        self._matcher = cv2.BFMatcher(cv2.NORM_L2)
        self._cache: dict = {}

    def clear(self) -> None:
        self._cache.clear()

    def features(self, image: np.ndarray, key=None, mirrored: bool = False) -> Features:
        """SIFT features of a panel (mirrored left-right if asked), cached under `key`."""
        if key is not None and (key, mirrored) in self._cache:
            return self._cache[(key, mirrored)]
        import cv2

        height, width = image.shape
        scale = min(1.0, self.max_side / max(height, width))
        pixels = to_uint8(image)
        if scale < 1.0:
            pixels = cv2.resize(pixels, (max(1, round(width * scale)), max(1, round(height * scale))),
                                interpolation=cv2.INTER_AREA)
        if mirrored:
            pixels = np.ascontiguousarray(pixels[:, ::-1])
        keypoints, descriptors = self._sift.detectAndCompute(pixels, None)
        if descriptors is None or not keypoints:
            points, descriptors = np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32)
        else:
            points = np.array([k.pt for k in keypoints], np.float32)
            if mirrored:  # back to the unmirrored panel's coordinates
                points[:, 0] = pixels.shape[1] - 1 - points[:, 0]
            points = points / scale
        result = Features(points, descriptors.astype(np.float32), scale, (height, width))
        if key is not None:
            self._cache[(key, mirrored)] = result
        return result

    def verify(self, image_a: np.ndarray, image_b: np.ndarray, key_a=None, key_b=None) -> Verification:
        """Match A against B and against B mirrored; keep the hypothesis with more inliers."""
        features_a = self.features(image_a, key_a)
        best = Verification(0, 0)
        for mirrored in (False, True):
            features_b = self.features(image_b, key_b, mirrored)
            result = self._match(features_a, features_b, mirrored)
            if result.inliers > best.inliers or (result.inliers == best.inliers and result.matches > best.matches):
                best = result
        return best

    def _match(self, a: Features, b: Features, mirrored: bool) -> Verification:
        import cv2

        if len(a.descriptors) < 2 or len(b.descriptors) < 2:
            return Verification(0, 0, mirrored)
        candidates = self._matcher.knnMatch(a.descriptors, b.descriptors, k=2)
        query, train, distance = [], [], []
        for pair in candidates:
            if len(pair) == 2 and pair[0].distance < self.ratio * pair[1].distance:
                query.append(pair[0].queryIdx)
                train.append(pair[0].trainIdx)
                distance.append(pair[0].distance)
        if not query:
            return Verification(0, 0, mirrored)
        points_a = a.points[np.array(query)]
        points_b = b.points[np.array(train)]
        keep = _one_match_per_keypoint(points_a, points_b, np.array(distance))
        points_a, points_b = points_a[keep], points_b[keep]
        matches = len(points_a)
        if matches < MIN_INLIERS_FOR_TRANSFORM:
            return Verification(0, matches, mirrored)
        # RANSAC in working-resolution pixels of A (the tolerance is in those pixels); in the
        # mirrored hypothesis, B's coordinates are mirrored first so the model stays a similarity.
        width_b = b.shape[1]
        target = points_b.copy()
        if mirrored:
            target[:, 0] = width_b - 1 - target[:, 0]
        matrix, mask = cv2.estimateAffinePartial2D(
            points_a * a.scale, target * a.scale, method=cv2.RANSAC,
            ransacReprojThreshold=self.ransac_threshold, maxIters=2000, confidence=0.995)
        if matrix is None or mask is None:
            return Verification(0, matches, mirrored)
        inlier = mask.ravel().astype(bool)
        if inlier.sum() < MIN_INLIERS_FOR_TRANSFORM:
            # Two or three points fit some similarity by chance: no transform worth showing.
            return Verification(int(inlier.sum()), matches, mirrored)
        # Back to panel pixels: the scales cancel in the linear part, the shift is divided.
        matrix = matrix.astype(np.float64)
        matrix[:, 2] /= a.scale
        if mirrored:
            flip = np.array([[-1.0, 0.0, width_b - 1], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
            matrix = (flip @ np.vstack([matrix, [0, 0, 1]]))[:2]
        kept = points_a[inlier]
        coverage = max(_coverage(kept, a.shape), _coverage(points_b[inlier], b.shape))
        verification = Verification(int(inlier.sum()), matches, mirrored, matrix, kept, coverage)
        reason = implausible(verification)
        if reason:
            return Verification(0, matches, mirrored, coverage=coverage,
                                rejected=f"{reason} ({verification.inliers} inliers)")
        return verification


def implausible(verification: Verification) -> str:
    """Why a found transform is not a plausible re-use (module docstring), or ""."""
    if not MIN_SCALE <= verification.scale <= MAX_SCALE:
        return f"scale {verification.scale:.2f} outside {MIN_SCALE}-{MAX_SCALE:g}"
    if verification.coverage < MIN_COVERAGE:
        return (f"matches confined to {verification.coverage:.2f} of either panel (a shared letter, "
                f"label or scale bar?)")
    return ""


def _coverage(points: np.ndarray, shape) -> float:
    """sqrt of the share of a panel of `shape` (height, width) that the points' bounding box covers."""
    extent = np.ptp(points, axis=0) + 1.0
    return float(min(1.0, np.sqrt(extent[0] * extent[1] / (shape[0] * shape[1]))))


def _one_match_per_keypoint(points_a: np.ndarray, points_b: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Indices of matches keeping, for every keypoint location in A and in B, only its best match."""
    order = np.argsort(distance, kind="stable")
    seen_a, seen_b, keep = set(), set(), []
    rounded_a = np.round(points_a).astype(np.int64)
    rounded_b = np.round(points_b).astype(np.int64)
    for index in order:
        location_a = (rounded_a[index, 0], rounded_a[index, 1])
        location_b = (rounded_b[index, 0], rounded_b[index, 1])
        if location_a in seen_a or location_b in seen_b:
            continue
        seen_a.add(location_a)
        seen_b.add(location_b)
        keep.append(index)
    return np.array(keep, np.int64)


# ---------------------------------------------------------------------------------------------
# alignment, for the report


def align(image_a: np.ndarray, image_b: np.ndarray, result: Verification, reverse: bool = False):
    """B warped into A's frame, and the shared-area mask in A's frame (where warped B lies);
    `reverse`: A warped into B's frame, and the mask in B's frame.

    Returns (warped [H, W] float32, shared [H, W] bool) in the target's shape, or (None, None)
    without a transform.
    """
    import cv2

    if result.matrix is None:
        return None, None
    source, target = (image_a, image_b) if reverse else (image_b, image_a)
    height, width = target.shape
    # matrix maps A -> B: it pushes A into B's frame, and as the inverse map it pulls B into A's.
    flags = 0 if reverse else cv2.WARP_INVERSE_MAP
    matrix = result.matrix.astype(np.float32)
    warped = cv2.warpAffine(np.asarray(source, np.float32), matrix, (width, height),
                            flags=cv2.INTER_LINEAR | flags, borderValue=0)
    coverage = cv2.warpAffine(np.ones(source.shape, np.uint8), matrix, (width, height),
                              flags=cv2.INTER_NEAREST | flags, borderValue=0)
    return warped, coverage.astype(bool)


def overlay(image_a: np.ndarray, warped_b: np.ndarray, shared: np.ndarray) -> np.ndarray:
    """An RGB uint8 overlay: inside the shared area A in magenta and aligned B in green (gray
    where they agree, colour where they differ); outside it A alone, dimmed; the shared area
    outlined in yellow."""
    import cv2

    a = to_uint8(image_a)
    inside = shared.astype(bool)
    b = to_uint8(np.where(inside, warped_b, np.median(warped_b[inside]) if inside.any() else 0.0))
    rgb = np.stack([a, b, a], axis=-1)
    rgb[~inside] = (a[~inside] // 2)[:, None]
    contours, _ = cv2.findContours(inside.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    thickness = max(1, round(max(a.shape) / 250))
    cv2.drawContours(rgb, contours, -1, (255, 220, 0), thickness)
    return rgb
