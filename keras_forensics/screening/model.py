"""The Siamese scorer used by every screening command: load it, embed panels with it.

A scorer maps preprocessed panels [N, 128, 128, 1] to *weighted* embeddings alpha * C(I) (see
`WeightedL1Distance.weight`): the L1 distance between two weighted embeddings is the network's
distance f, so every panel is embedded once and pairs are compared with plain L1 (blockwise in
TensorFlow or with FAISS METRIC_L1), never by running the pair model on each pair.

`load_scorer(model)` accepts:

* a TF-Serving model base path (`saved_models/siamese`, the default): the newest numeric version
  folder is loaded with `tf.saved_model.load` and its `embed` signature is used;
* one SavedModel folder (holding saved_model.pb);
* a training run dir (model_dir, holding model.keras = the triplet model), or a run dir whose
  training has not finished yet (its checkpoints/best.keras, copied before loading because the
  trainer rewrites it);
* a .keras file saved by the trainer (triplet or pair model).

Keras files are loaded without deserialising code: the network is rebuilt from the file's own
config (its "embedding" and "distance" layers, both registered Keras objects) and the weights are
loaded into it, which also reads triplet models saved by early runs with a Lambda layer.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from keras_forensics import artifacts
from keras_forensics.errors import ForensicsError
from keras_forensics.screening.background import BACKGROUND_FILE

logger = logging.getLogger(__name__)

#: Where the shipped Siamese model lives (TF-Serving layout: saved_models/siamese/<version>/).
DEFAULT_MODEL = artifacts.MODELS_DIR / "siamese"

NO_MODEL_HELP = (
    "no Siamese model found at {where}: pass --model RUN_DIR|MODEL.keras|SAVED_MODEL_DIR, or train one "
    "(python -m keras_forensics.train siamese --preset quick) and export it "
    "(python tools/export.py siamese --model_dir RUN_DIR)"
)


#: Beside an exported Siamese SavedModel: what its distances mean (`SiameseScorer.describe`).
#: Absent (saved_models/siamese/1): the paper's alpha-weighted L1, p_same = sigmoid(1 - f).
DESCRIPTION_FILE = "assets.extra/siamese.json"


#: The 8 orientations of a square panel (quarter turns of it and of its mirror image), as
#: (quarter turns, mirrored); the first is the panel as it is.
DIHEDRAL = tuple((turns, mirrored) for mirrored in (False, True) for turns in range(4))


def dihedral(images: np.ndarray) -> np.ndarray:
    """[N, S, S, C] -> [8 * N, S, S, C]: every image in each orientation of `DIHEDRAL`,
    orientation-major (rows k * N ... (k + 1) * N - 1 are orientation k)."""
    images = np.asarray(images)
    return np.concatenate([np.rot90(images[:, :, ::-1] if mirrored else images, turns, axes=(1, 2))
                           for turns, mirrored in DIHEDRAL])


class SiameseScorer:
    """Weighted embeddings of preprocessed panels, from a Keras model or a SavedModel.

    Attributes:
        source: what was loaded (path and kind), for reports.
        input_size: the side of the network's square input (128).
        embedding, distance: the Keras embedding model and `WeightedL1Distance` layer when the
            scorer was loaded from a Keras file (Grad-CAM needs them), else None.
        background: the `background.Background` that normalises this model's distances in a
            screen (shipped beside the copy-detection descriptor), else None.
    """

    def __init__(self, weighted_fn, input_size: int, source: str, embedding=None, distance=None,
                 metric: str = "l1", sharpness: float = 1.0, invariant: bool = False, background=None):
        self._weighted_fn = weighted_fn
        self.input_size = int(input_size)
        self.source = source
        self.embedding = embedding
        self.distance = distance
        self.metric = metric
        self.sharpness = float(sharpness)
        self.invariant = bool(invariant)
        self.background = background

    @classmethod
    def from_keras(cls, embedding, distance, source: str = "keras model") -> "SiameseScorer":
        """A scorer from an embedding model and its distance layer (`WeightedL1Distance` or
        `CosineDistance`)."""
        import tensorflow as tf

        from keras_forensics.models.siamese import describe

        @tf.function(reduce_retracing=True)
        def weighted(images):
            return distance.weight(embedding(images, training=False))

        return cls(weighted, int(embedding.input_shape[1]), source, embedding, distance,
                   **_description_arguments(describe(embedding, distance)))

    def describe(self) -> dict:
        """What the distances of this scorer mean (written beside an exported model and an index)."""
        described = {"metric": self.metric, "p_same_sharpness": self.sharpness,
                     "orientation_invariant": self.invariant}
        if self.background is not None:
            described["background"] = self.background.describe()
        return described

    def row_distances(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The distance f between weighted embeddings row by row ([..., D] and [..., D] -> [...])."""
        difference = np.asarray(a, np.float64) - np.asarray(b, np.float64)
        return np.abs(difference).sum(-1) if self.metric == "l1" else (difference * difference).sum(-1)

    def pair_distance(self, a: np.ndarray, b: np.ndarray) -> float:
        """The distance f of two panels' weighted embeddings: [D] and [D] (as they are), or [T, D]
        and [T, D] from `embed_panels(oriented=True)`: the smallest over A's orientations against
        B as it is."""
        b = np.asarray(b)
        return float(np.min(self.row_distances(a, b if np.ndim(a) == 1 else b[0])))

    def p_same(self, distance):
        """sigmoid(s (1 - f)): the probability that two panels are the same (s = 1 for the paper's
        network, calibrated for the copy-detection descriptor)."""
        return 1.0 / (1.0 + np.exp(-self.sharpness * (1.0 - np.asarray(distance, np.float64))))

    @property
    def has_keras(self) -> bool:
        return self.embedding is not None

    def weighted_embed(self, images):
        """[N, S, S, 1] float32 (preprocessed) -> [N, D] tensor alpha * embedding (differentiable)."""
        return self._weighted_fn(images)

    def embed(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Preprocessed [N, S, S, 1] -> [N, D] float32 NumPy weighted embeddings, in batches."""
        import tensorflow as tf

        images = np.asarray(images, np.float32)
        if not len(images):
            return np.zeros((0, self.dimension), np.float32)
        parts = [np.asarray(self._weighted_fn(tf.constant(images[i:i + batch_size])))
                 for i in range(0, len(images), batch_size)]
        return np.concatenate(parts).astype(np.float32)

    def embed_oriented(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Preprocessed [N, S, S, 1] -> [N, 8, D]: each image in the 8 orientations of `dihedral`,
        as it is first (`batch_size` images, so 8 x that many network inputs, per call)."""
        turned = self.embed(dihedral(images), batch_size * len(DIHEDRAL))
        return turned.reshape(len(DIHEDRAL), len(images), -1).transpose(1, 0, 2)

    def embed_panels(self, panels, batch_size: int = 64, progress: bool = True,
                     description: str = "embedding panels", oriented: bool = False) -> np.ndarray:
        """Panels of any sizes ([H, W] float in [0, 1]) -> [N, D] weighted embeddings.

        Each panel goes through `keras_forensics.preprocessing` (the one preprocessing shared with
        the CLI and the serving signatures) and through the network once, in batches. With
        `oriented`, [N, 8, D]: the panel in each of its 8 orientations (`dihedral`), as it is first.
        """
        from tqdm.auto import tqdm

        from keras_forensics import preprocessing

        panels = list(panels)
        shape = (0, len(DIHEDRAL), self.dimension) if oriented else (0, self.dimension)
        if not panels:
            return np.zeros(shape, np.float32)
        if oriented:
            batch_size = max(1, batch_size // len(DIHEDRAL))
        out = []
        with tqdm(total=len(panels), desc=description, unit="panel", disable=not progress,
                  leave=False) as bar:
            for start in range(0, len(panels), batch_size):
                chunk = panels[start:start + batch_size]
                images = preprocessing.batch(chunk, self.input_size)
                out.append(self.embed_oriented(images, batch_size) if oriented else self.embed(images, batch_size))
                bar.update(len(chunk))
        return np.concatenate(out)

    @property
    def dimension(self) -> int:
        if not hasattr(self, "_dimension"):
            self._dimension = int(self.embed(np.zeros((1, self.input_size, self.input_size, 1))).shape[1])
        return self._dimension

    def fingerprint(self) -> np.ndarray:
        """Weighted embeddings [2, D] of two fixed probe images: equal for equal weights.

        An index stores it, so a corpus embedded by one model is never searched with another's
        embeddings (their distances would mean nothing).
        """
        size = self.input_size
        y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
        probes = np.stack([0.5 + 0.5 * np.sin(12 * x) * np.cos(7 * y), np.clip(x * y * 1.5, 0, 1)])
        return self.embed(probes[..., None])


def same_model(fingerprint_a, fingerprint_b) -> bool:
    """Whether two fingerprints come from the same weights (float noise of SavedModel vs Keras allowed)."""
    a, b = np.asarray(fingerprint_a, np.float32), np.asarray(fingerprint_b, np.float32)
    if a.shape != b.shape:
        return False
    scale = max(float(np.abs(a).max()), 1e-6)
    return bool(np.max(np.abs(a - b)) <= 1e-3 * scale)


# ---------------------------------------------------------------------------------------------
# loading


def default_model_path() -> Path:
    """saved_models/siamese under the working directory, else under $KERAS_FORENSICS_MODELS
    (`artifacts.default_model`)."""
    path = artifacts.default_model("siamese")
    if path.exists():
        return path
    raise ForensicsError(NO_MODEL_HELP.format(where=f"{DEFAULT_MODEL} (nor under ${artifacts.MODELS_ENV})"))


def load_scorer(model: str | os.PathLike | None = None) -> SiameseScorer:
    """Load a Siamese scorer (see the module docstring for what `model` may be; None = shipped)."""
    path = Path(model) if model is not None else default_model_path()
    if not path.exists():
        raise ForensicsError(NO_MODEL_HELP.format(where=path))
    if path.is_file():
        if path.suffix != ".keras":
            raise ForensicsError(f"--model {path}: expected a .keras file, a run dir or a SavedModel folder")
        return _load_keras_file(path)
    saved = artifacts.newest_version(path)
    if saved is not None:
        return _load_saved_model(saved)
    if (path / "model.keras").is_file():
        return _load_keras_file(path / "model.keras")
    best = path / "checkpoints" / "best.keras"
    if best.is_file():
        logger.warning("%s has no model.keras yet (training not finished): using its best checkpoint so far",
                       path)
        return _load_keras_file(best)
    raise ForensicsError(NO_MODEL_HELP.format(where=path))


def _load_saved_model(path: Path) -> SiameseScorer:
    import tensorflow as tf

    try:
        loaded, function = artifacts.load_saved_model(path, "embed")
    except ForensicsError as error:
        raise ForensicsError(f"{error}; export it with tools/export.py siamese") from None
    _, kwargs = function.structured_input_signature
    if len(kwargs) != 1:
        raise ForensicsError(f"{path}: the 'embed' signature must take one input, it takes {sorted(kwargs)}")
    (input_name, spec), = kwargs.items()
    if "weighted_embedding" not in function.structured_outputs:
        raise ForensicsError(f"{path}: the 'embed' signature has no 'weighted_embedding' output")

    def weighted(images):
        return function(**{input_name: tf.convert_to_tensor(images, tf.float32)})["weighted_embedding"]

    described = {}
    if (path / DESCRIPTION_FILE).is_file():
        import json

        described = json.loads((path / DESCRIPTION_FILE).read_text())
    arguments = _description_arguments(described)
    scorer = SiameseScorer(weighted, int(spec.shape[1]), f"SavedModel {path}", **arguments,
                           background=_background(path / "assets.extra" / BACKGROUND_FILE, arguments["metric"]))
    scorer._saved_model = loaded  # keep the restored object (and its variables) alive
    return scorer


def _description_arguments(described: dict) -> dict:
    """`SiameseScorer` keyword arguments from a `siamese.describe` dict (defaults: the paper's)."""
    return {"metric": described.get("metric", "l1"), "sharpness": described.get("p_same_sharpness", 1.0),
            "invariant": described.get("orientation_invariant", False)}


def _load_keras_file(path: Path) -> SiameseScorer:
    """The trainer's .keras file (rebuilt from its own config, in float32; see siamese.load_parts)."""
    from keras_forensics.models import siamese

    embedding, distance = siamese.load_parts(path)
    scorer = SiameseScorer.from_keras(embedding, distance, source=f"keras {path}")
    folder = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    scorer.background = _background(folder / BACKGROUND_FILE, scorer.metric)
    return scorer


def _background(path: Path, metric: str):
    """The `Background` saved at `path`, or None."""
    from keras_forensics.screening.background import Background

    return Background.load(path, metric)
