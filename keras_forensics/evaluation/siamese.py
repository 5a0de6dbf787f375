"""Measuring the Siamese detector (`python -m keras_forensics.evaluate siamese`).

Two measures, as in Cicconet et al.:
* synthetic test accuracy: pairs from held-out source images, half "same" (a deformation of the
  anchor), half "different", deformed by the training pipeline, threshold f <= 1;
* real cases: a folder holding one sub-folder per original image with its manipulated versions
  (the layout of the original test.py). Every pair of images is scored; pairs in the same
  sub-folder are re-uses. Reported: ROC AUC, average precision, accuracy at f = 1 (p_same 0.5),
  and nearest-neighbour accuracy (V02/test_nn.py: is each image's nearest other image one of its
  own versions?).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from keras_forensics import metrics as metric_lib
from keras_forensics import preprocessing
from keras_forensics.data import io
from keras_forensics.errors import ForensicsError


def load_real_cases(folder, size: int = preprocessing.INPUT_SIZE) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images [N, size, size, 1] (the shared preprocessing), their group (sub-folder) ids, and paths."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ForensicsError(f"--real_cases {folder}: no such folder")
    groups = sorted(p for p in folder.iterdir() if p.is_dir())
    if len(groups) < 2:
        raise ForensicsError(f"--real_cases {folder}: needs at least 2 sub-folders (one per original image)")
    images, labels, paths = [], [], []
    report = io.ScanReport()
    for index, group in enumerate(tqdm(groups, desc="reading real cases", unit="folder")):
        for path, image in io.scan_images(group, report=report):
            images.append(image)
            labels.append(index)
            paths.append(str(path.relative_to(folder)))
    return preprocessing.batch(images, size), np.asarray(labels), paths


def real_case_metrics(distances: np.ndarray, labels: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray]:
    """Pair metrics over the upper triangle, plus nearest-neighbour accuracy."""
    upper = np.triu_indices(len(labels), k=1)
    same = labels[upper[0]] == labels[upper[1]]
    f = distances[upper]
    p_same = 1.0 / (1.0 + np.exp(-(1.0 - f)))
    masked = distances + np.diag(np.full(len(labels), np.inf))
    nearest = masked.argmin(axis=1)
    has_sibling = np.bincount(labels)[labels] > 1
    result = {
        "images": int(len(labels)),
        "originals": int(len(np.unique(labels))),
        "pairs": int(len(f)),
        "positive_pairs": int(same.sum()),
        "roc_auc": metric_lib.roc_auc(same, -f),
        "average_precision": metric_lib.average_precision(same, -f),
        "accuracy_at_threshold_1": float(np.mean((f <= 1.0) == same)),
        "true_positive_rate_at_threshold_1": float(np.mean(f[same] <= 1.0)),
        "true_negative_rate_at_threshold_1": float(np.mean(f[~same] > 1.0)),
        "nearest_neighbour_accuracy": float(np.mean(labels[nearest][has_sibling] == labels[has_sibling])),
    }
    return result, same, p_same


def plot_roc(curves: dict, path) -> None:
    """One ROC curve per entry of `curves` ({name: (labels, scores)}), in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 5), dpi=120)
    for name, (labels, scores) in curves.items():
        fpr, tpr, _ = metric_lib.roc_curve(labels, scores)
        axis.plot(fpr, tpr, label=f"{name} (AUC {metric_lib.roc_auc(labels, scores):.3f})")
    axis.plot([0, 1], [0, 1], color="0.7", linestyle=":", label="chance")
    axis.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01),
             title="Siamese duplicate detector: ROC")
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def synthetic_test(model_dir: Path, scorer, data=None, count: int = 2000, seed: int = 2, scales=None):
    """The paper's synthetic test on the held-out split of the run (or on every image of `data`),
    its patches cut at the run's `patch_scales` or at `scales` (e.g. (1.0,): native resolution only,
    as in the paper).

    Returns (metrics, labels, scores) with scores = -f (higher = more alike).
    """
    from keras_forensics import config as config_lib
    from keras_forensics.data import folders
    from keras_forensics.data.pipeline import fixed_triplets
    from keras_forensics.training import siamese as trainer

    config_path = model_dir / "config.json" if model_dir else None
    config = (config_lib.load(config_lib.SiameseTrainConfig, config_path) if config_path and config_path.exists()
              else config_lib.SiameseTrainConfig())
    if scales:
        config = config_lib.replace(config, patch_scales=scales)
    if data:
        patchset = folders.folder(data, patch_size=config.deformation.patch_size, scales=config.patch_scales)
        source = f"all of {data}"
    elif config_path and (model_dir / "split.json").exists():
        split = json.loads((model_dir / "split.json").read_text())
        if trainer.split_kind(split) == "patch" and scales and tuple(scales) != (1.0,):
            raise ForensicsError("this run was split by patch (the paper's protocol, native patches only): "
                                 "its test patches exist at scale 1 only; leave out --scales")
        patchset = trainer.apply_split(trainer.load_patches(config), split, str(model_dir / "split.json"))["test"]
        unit = "patches" if trainer.split_kind(split) == "patch" else "source groups"
        source = f"test split of {model_dir} ({len(split['test'])} {unit})"
    else:
        raise ForensicsError("the synthetic test needs --data DIR, or a model_dir with config.json and split.json")
    triplets = fixed_triplets(patchset, config.deformation, count, seed=config.seed + seed)
    vectors = {k: scorer.embed(v, batch_size=128) for k, v in triplets.items()}
    f_same = scorer.row_distances(vectors["anchor"], vectors["same"])
    f_diff = scorer.row_distances(vectors["anchor"], vectors["different"])
    labels = np.r_[np.ones(len(f_same), bool), np.zeros(len(f_diff), bool)]
    f = np.r_[f_same, f_diff]
    return {
        "source": source,
        "patch_scales": list(config.patch_scales),
        "pairs": int(len(f)),
        "accuracy": float(np.mean((f <= 1.0) == labels)),
        "roc_auc": metric_lib.roc_auc(labels, -f),
        "average_precision": metric_lib.average_precision(labels, -f),
    }, labels, -f


def evaluate(model: str, real_cases: str | None = None, data: str | None = None, out: str | None = None,
             count: int = 2000, synthetic: bool = True, scales=None) -> dict:
    """Measure a trained Siamese model; writes metrics JSON and a ROC PNG to `out`.

    Args:
        model: a training run's model_dir, a .keras file, or a SavedModel (saved_models/siamese:
            its newest version; the synthetic test then needs `data`).
        real_cases: a folder with one sub-folder per original image holding its manipulated versions;
            measured on the panels as they are ("real_cases") and with the distance `screen` uses,
            the smallest over 8 orientations ("real_cases_turns").
        data: images for the synthetic test (default: the run's held-out test split).
        out: where to write evaluation.json and roc.png (default: <model_dir>/evaluation).
        count: synthetic test triplets (2 pairs each).
        synthetic: run the synthetic test.
    """
    import sys

    from keras_forensics.screening.model import load_scorer

    scorer = load_scorer(model)
    run = Path(model)
    model_dir = run if (run / "config.json").is_file() else None
    out = Path(out) if out else (model_dir / "evaluation" if model_dir else Path("siamese_evaluation"))
    out.mkdir(parents=True, exist_ok=True)
    result, curves = {"model": scorer.source}, {}
    if synthetic and (model_dir is not None or data):
        result["synthetic_test"], labels, scores = synthetic_test(model_dir, scorer, data, count, scales=scales)
        curves["synthetic test"] = (labels, scores)
    elif synthetic:
        print(f"synthetic test skipped: {model} is not a training run (no config.json and split.json); "
              "give --data DIR to run it on a folder of images", file=sys.stderr)
    if real_cases:
        from keras_forensics.screening.pairs import distance_matrix

        images, groups, paths = load_real_cases(real_cases, scorer.input_size)
        oriented = scorer.embed_oriented(images, batch_size=16)
        # The network on the panels as they are, and as `screen` compares them (8 orientations).
        for key, label, vectors in (("real_cases", "real cases", oriented[:, 0]),
                                    ("real_cases_turns", "real cases, 8 orientations", oriented)):
            result[key], same, p_same = real_case_metrics(distance_matrix(vectors, scorer.metric), groups)
            result[key]["folder"] = str(real_cases)
            curves[label] = (same, p_same)
    if not curves:
        raise ForensicsError("nothing to evaluate: give --real_cases DIR (and --data DIR or a training run for the "
                             "synthetic test)")
    plot_roc(curves, out / "roc.png")
    (out / "evaluation.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return None
