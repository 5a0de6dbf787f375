"""Measuring a detector: ROC AUC with a bootstrap CI, AP, accuracies, per source and condition.

`python -m keras_forensics.evaluate detector` (see `evaluate`) scores the same patches under three
conditions -- as they are, JPEG(75)-recompressed and 0.5x-resized -- with the CNN and, in the same
run, the spectral baseline and the FFT-peaks baseline (`fft_peaks`, fitted here on the run's train
split), per synthetic source against the pooled real patches. Scores go
through `inference.Detector`, the code `detect` uses, so a resized (smaller) patch is up-sampled
to the model's input exactly as a small image would be.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_forensics.data.deformations import jpeg
from keras_forensics.metrics import ranking
from keras_forensics.errors import ForensicsError

logger = logging.getLogger(__name__)

CONDITIONS = ("clean", "jpeg75", "resize0.5")


def apply_condition(images, condition: str):
    """[N, S, S, 1] float images after one test condition (a resize changes their size)."""
    images = tf.convert_to_tensor(images, tf.float32)
    if condition == "clean":
        return images
    if condition == "jpeg75":
        return jpeg(images, tf.fill(tf.shape(images)[:1], 75))
    if condition == "resize0.5":
        size = images.shape[1] // 2
        return tf.image.resize(images, (size, size), method="bilinear", antialias=True)
    raise ForensicsError(f"unknown condition {condition!r} (known: {', '.join(CONDITIONS)})")


def to_model_size(images, size: int):
    """Square patches smaller than the model's input, up-sampled to it (bilinear), as
    `inference.fit_image` does for small images; others unchanged."""
    images = tf.convert_to_tensor(images, tf.float32)
    if images.shape[1] < size:
        images = tf.image.resize(images, (size, size), method="bilinear")
    return images


def predict(model, images, batch_size: int = 256) -> np.ndarray:
    """p_fake [N] of equally sized patches [N, s, s, 1] (s <= the input size) by a Keras model or
    an `inference.Detector`."""
    from keras_forensics.detection.inference import Detector

    if isinstance(model, Detector):
        return model.predict_patches(to_model_size(images, model.patch_size).numpy(), batch_size)
    size = model.input_shape[1]
    out = [model.predict_on_batch(to_model_size(images[i:i + batch_size], size))
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out)[:, 0] if out else np.zeros(0, np.float32)


def evaluate_patches(model, real: np.ndarray, fake: np.ndarray, seed: int = 0, num_resamples: int = 1000,
                     conditions=CONDITIONS) -> dict:
    """`ranking.summary` of real (label 0) vs fake (label 1) uint8 patches [N, S, S] per condition."""
    images = np.concatenate([real, fake]).astype(np.float32)[..., None] / 255.0
    labels = np.r_[np.zeros(len(real)), np.ones(len(fake))]
    return {c: ranking.summary(labels, predict(model, apply_condition(images, c)), num_resamples, seed)
            for c in conditions}


# ---------------------------------------------------------------------------------------------
# curves as images (TensorBoard, reports); Pillow only


def _plot(points_list, labels, title, x_label, y_label, size=320):
    from PIL import Image, ImageDraw

    margin = 40
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    inner = size - 2 * margin
    draw.rectangle([margin, margin, margin + inner, margin + inner], outline="black")
    colours = ["#1f77b4", "#d62728", "#2ca02c"]
    for index, (xs, ys) in enumerate(points_list):
        path = [(margin + float(x) * inner, margin + (1.0 - float(y)) * inner) for x, y in zip(xs, ys)]
        draw.line(path, fill=colours[index % 3], width=2)
        draw.text((margin + 6, margin + inner - 14 * (index + 1)), labels[index], fill=colours[index % 3])
    draw.text((margin, 8), title, fill="black")
    draw.text((margin + inner // 2 - 30, size - 18), x_label, fill="black")
    draw.text((4, margin - 14), y_label, fill="black")
    return np.asarray(image)


def curve_images(labels, scores) -> dict[str, np.ndarray]:
    """{"roc_curve": [H, W, 3] uint8, "pr_curve": ...} of one set of scores."""
    fpr, tpr, _ = ranking.roc_curve(labels, scores)
    precision, recall, _ = ranking.precision_recall_curve(labels, scores)
    auc, ap = ranking.roc_auc(labels, scores), ranking.average_precision(labels, scores)
    return {
        "roc_curve": _plot([(fpr, tpr), ([0, 1], [0, 1])], [f"AUC {auc:.4f}", "chance"], "ROC", "FPR", "TPR"),
        "pr_curve": _plot([(np.r_[0.0, recall], np.r_[1.0, precision])], [f"AP {ap:.4f}"],
                          "precision-recall", "recall", "precision"),
    }


# ---------------------------------------------------------------------------------------------
# the `evaluate detector` command


def _split_filter(source, split: dict | None, part: str):
    """The groups of `source` in split `part` of a training run's split.json; sources the run never
    saw are kept whole, and so are generators and derived fakes (`upsampling`, made from real
    patches already filtered: their groups are the real patches', not the names the run's own
    upsampling source had)."""
    if (split is None or part == "all" or source.name not in split or source.generator is not None
            or source.derived):
        return source
    return source.subset(split[source.name].get(part, []))


def _fake_rows(source, generated: int, seed: int) -> dict[str, np.ndarray]:
    """{row name: fake uint8 patches} of one source: the source, or one row per sub-folder."""
    if source.generator is not None:
        return {source.name: source.generator.patches(generated, seed).patches}
    if source.fake is None or not len(source.fake):
        return {}
    names = np.array([n.split("/") for n in source.fake.names], dtype=object)
    subfolders = {parts[1] for parts in names if len(parts) > 2}
    if len(subfolders) < 2:
        return {source.name: source.fake.patches}
    rows = {}
    for sub in sorted(subfolders):
        keep = [i for i, parts in enumerate(names) if len(parts) > 2 and parts[1] == sub]
        rows[f"{source.name}/{sub}"] = source.fake.patches[np.isin(source.fake.groups, keep)]
    return rows


def evaluate(model, real, fake, baseline=None, split: str = "test", out=None, num_resamples: int = 1000,
             generated: int = 1000, seed: int = 0, fft_peaks: bool = False, fft_peaks_augment: bool = True) -> dict:
    """Score real vs each synthetic source under every condition with the detector and (optionally)
    the spectral baseline and the FFT-peaks baseline, print a table and write the JSON. Returns
    {"json": path, "rows": count}.

    With `fft_peaks`, the Cardenuto-Mandelli baseline (`detection.fft_peaks`) is fitted on the
    run's train split of the same sources (with one copy through the run's augmentation when
    `fft_peaks_augment`) before the `split` patches are scored; it needs a training run.
    """
    from keras_forensics import config as config_lib
    from keras_forensics.detection.inference import Detector

    if not real or not fake:
        raise ForensicsError("give --real DIR and --fake DIR (several as DIR1,DIR2)")
    if split not in ("train", "validation", "test", "all"):
        raise ForensicsError(f"--split must be train, validation, test or all, got {split!r}")
    real, fake = _paths(real), _paths(fake)
    run_dir = Path(model) if model and (Path(model) / "config.json").is_file() else None
    if fft_peaks and (run_dir is None or not (run_dir / "split.json").is_file()):
        raise ForensicsError("--fft_peaks is fitted on a training run's train split: pass --model RUN_DIR "
                             "(a run dir with config.json and split.json)")
    if fft_peaks and split in ("train", "all"):
        raise ForensicsError(f"--fft_peaks is fitted on the train split; evaluate it on --split test or "
                             f"validation, not {split}")
    detectors = {"cnn": Detector.load(model)}
    if baseline:
        detectors["spectral"] = Detector.load(baseline)
    sizes = {d.patch_size for d in detectors.values()}
    if len(sizes) != 1:
        raise ForensicsError(f"the models take different patch sizes {sorted(sizes)}; compare models of one size")
    size = sizes.pop()

    settings = dict(real_per_masked_image=2, max_patches_per_image=32, group_by=None, seed=seed)
    split_groups, trained = None, None
    if run_dir is not None:
        trained = config_lib.load(config_lib.DetectorTrainConfig, run_dir / "config.json")
        settings = dict(real_per_masked_image=trained.real_per_masked_image,
                        max_patches_per_image=trained.max_patches_per_image, group_by=trained.group_by,
                        seed=trained.seed)
        if (run_dir / "split.json").is_file():
            split_groups = json.loads((run_dir / "split.json").read_text())
    elif split != "all":
        logger.warning("--model is not a training run (no split.json): evaluating every patch")

    loaded = _load_sources(real, fake, size, settings)
    real_patches, rows = _split_patches(loaded, split_groups, split, size, settings, generated, seed)
    if len(rows) > 1:
        rows["all synthetic"] = np.concatenate(list(rows.values()))
    fitted = None
    if fft_peaks:
        from keras_forensics.data.augment import RobustnessAugmenter
        from keras_forensics.detection.fft_peaks import fit_baseline

        # Different generated patches from the scored ones (seed + 1).
        train_real, train_rows = _split_patches(loaded, split_groups, "train", size, settings, generated, seed + 1)
        train_fake = np.concatenate(list(train_rows.values()))
        augmenter = RobustnessAugmenter(trained.augmentation, size) if fft_peaks_augment else None
        detectors["fft_peaks"] = fit_baseline(train_real, train_fake, size, augmenter, seed).detector()
        fitted = {"fitted_on": "train split" + (" + one augmented copy" if fft_peaks_augment else ""),
                  "n_train_real": int(len(train_real)), "n_train_fake": int(len(train_fake))}

    results = []
    for condition in CONDITIONS:
        conditioned = apply_condition(real_patches.astype(np.float32)[..., None] / 255.0, condition)
        real_scores = {k: predict(d, conditioned) for k, d in detectors.items()}
        for name, fakes in rows.items():
            fake_images = apply_condition(fakes.astype(np.float32)[..., None] / 255.0, condition)
            labels = np.r_[np.zeros(len(real_patches)), np.ones(len(fakes))]
            entry = {"fake_source": name, "condition": condition}
            for key, detector in detectors.items():
                scores = np.r_[real_scores[key], predict(detector, fake_images)]
                entry[key] = ranking.summary(labels, scores, num_resamples, seed)
            results.append(entry)
    report = {"model": str(model or "saved_models/detector"), "baseline": str(baseline) if baseline else None,
              "fft_peaks": fitted, "split": split, "patch_size": size, "real": real, "fake": fake,
              "n_real_patches": int(len(real_patches)), "rows": results}
    print(format_table(results))
    out = Path(out) if out else (run_dir / "evaluation.json" if run_dir else Path("evaluation_detector.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return {"json": str(out), "rows": len(results)}


def _load_sources(real: list[str], fake: list[str], size: int, settings: dict):
    """(real sources, [(path, fake source or None)]): every source read once. The `upsampling`
    fakes (None here) are made per split, from that split's real patches."""
    from keras_forensics.detection import sources

    real_sources = [sources.load_source(p, "real", size, **settings) for p in real]
    fake_sources = [(p, None if p == sources.UPSAMPLING_FAKES else sources.load_source(p, "fake", size, **settings))
                    for p in fake]
    return real_sources, fake_sources


def _split_patches(loaded, split_groups, part: str, size: int, settings: dict, generated: int, seed: int):
    """(real uint8 patches, {row name: fake uint8 patches}) of split `part` of the loaded sources:
    the real folders' patches and the host patches of masked sets; one row per fake source (or
    sub-folder), generators sampled with `seed`."""
    from keras_forensics.detection import sources

    real_sources, fake_sources = loaded
    real_sources = [_split_filter(s, split_groups, part) for s in real_sources]
    real_patches = np.concatenate([s.real.patches for s in real_sources if s.real is not None])
    pooled_real = datasets_patchset(real_patches)
    rows = {}
    for path, source in fake_sources:
        if source is None:
            source = sources.load_source(path, "fake", size, demo_real=pooled_real, **settings)
        source = _split_filter(source, split_groups, part)
        if source.real is not None and len(source.real):  # the host patches of a masked set
            real_patches = np.concatenate([real_patches, source.real.patches])
        rows.update(_fake_rows(source, generated, seed))
    return real_patches, rows


def _paths(value) -> list[str]:
    """DIR, "DIR1,DIR2" (fire passes non-literal lists as one string) or a list of them."""
    items = [value] if isinstance(value, (str, Path)) else list(value)
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]


def datasets_patchset(patches: np.ndarray):
    """One-group PatchSet of pooled real patches (the raw material of procedural fakes)."""
    from keras_forensics.data.patches import PatchSet

    return PatchSet(patches, np.zeros(len(patches), np.int64), ["real"])


def format_table(results) -> str:
    """A Markdown table of `evaluate` rows."""
    models = [k for k in ("cnn", "spectral", "fft_peaks") if results and k in results[0]]
    head = ["fake source", "condition", "n real/fake"]
    for key in models:
        head += [f"{key} AUC [95% CI]", f"{key} AP", f"{key} acc@0.5", f"{key} acc@EER"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in results:
        first = row[models[0]]
        cells = [row["fake_source"], row["condition"], f"{first['n_real']}/{first['n_fake']}"]
        for key in models:
            r = row[key]
            cells += [f"{r['auc']:.4f} [{r['auc_ci95'][0]:.4f}, {r['auc_ci95'][1]:.4f}]",
                      f"{r['average_precision']:.4f}", f"{r['accuracy_at_0.5']:.4f}",
                      f"{r['accuracy_at_eer_threshold']:.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
