"""How real are a generator's fakes? `python -m keras_forensics.evaluate wgan|cyclegan`.

Four figures, each beside its real-vs-real floor (the same figure with a second set of real
images in place of the generated ones: what a perfect generator would score with these counts):

* swd: the sliced Wasserstein distance of Laplacian-pyramid neighbourhoods (x 1e3; Karras et al.
  2018) against held-out real tiles; `swd_vs_floor` is its ratio to the floor;
* spectral_distance: RMS difference of the mean log10 power spectra (decades);
  `spectral_distance_vs_floor`;
* two_sample_auc: a fresh classifier with the detector's architecture, cross-validated by
  source blot (`evaluation.two_sample`), telling held-out real tiles from generated ones, that
  also learns "real" from the training tiles; 0.5 = it cannot. Its floor puts other real tiles
  (half the training groups and the validation groups) in place of the generated ones
  (`two_sample_floor`);
* memorisation_ratio: the generated tiles' median distance to their nearest training tile over
  the held-out real tiles' (`metrics.memorisation`); >= about 1 = no copying. Its floor puts
  the validation tiles (real, not trained on) in place of the generated ones.

Also the periodic peaks of the 8 and 16 px lattices in the spectrum (`gan_quality.periodic_peak`:
the blocks of nearest-neighbour up-sampling) of the generated and the held-out tiles, and the
issue's targets with whether each is met. Beside the JSON two pictures: held-out real above
generated (`*_real_vs_generated.png`), and the two mixed in a random order (`*_shuffled.png`)
with the key, row by row, in the JSON ("shuffled_key": R = real, G = generated).

For the CycleGAN the same figures compare translations G(a) of held-out domain-A tiles with
held-out domain-B tiles, plus the cycle-consistency error |F(G(a)) - a| and |G(F(b)) - b| and,
when domain B is a known function of domain A (`--domain_b_from_a`), the paired error |G(a) - b|
beside the error of not translating at all, |a - b|.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from keras_forensics import artifacts
from keras_forensics.data.grid import image_grid
from keras_forensics.data.io import write_png
from keras_forensics.errors import ForensicsError
from keras_forensics.evaluation.two_sample import TwoSampleOptions, two_sample_auc
from keras_forensics.metrics import gan_quality, memorisation

#: The realism targets of issue 16: (figure, comparison, bound).
TARGETS = (("swd_vs_floor", "<=", 1.15), ("spectral_distance_vs_floor", "<=", 1.5),
           ("two_sample_auc", "<=", 0.75), ("memorisation_ratio", ">=", 0.9))


def _sample(patchset, count: int, rng, to_images, index=None):
    """(images [n, S, S, C] float32, group ids [n]) of up to `count` patches drawn without replacement."""
    if index is None:
        index = np.sort(rng.choice(len(patchset), min(count, len(patchset)), replace=False))
    return to_images(patchset.patches[index]), patchset.groups[index], index


def _unit(patches: np.ndarray) -> np.ndarray:
    """Patches of any type -> float32 [N, S, S, C] in [0, 1]."""
    images = np.asarray(patches)
    if np.issubdtype(images.dtype, np.integer):
        images = images.astype(np.float32) / np.float32(np.iinfo(images.dtype).max)
    images = images.astype(np.float32, copy=False)
    return images[..., None] if images.ndim == 3 else images


def two_sample_floor(real, real_groups, train, train_groups, validation, validation_groups, count: int,
                     options: TwoSampleOptions | None, seed: int) -> dict | None:
    """The two-sample AUC of held-out real tiles against other real tiles, under the protocol
    the generated ones get: the training groups are split in two halves at random; one half
    joins "real" (as all the training tiles do for the generated set), and `count` tiles drawn
    from the other half and the validation tiles stand in for a perfect generator's samples --
    real blots, many of them, never shown as "real". None with fewer than two training groups.
    (The validation tiles alone are three blots: a classifier then learns those three, and the
    AUC swings far from 0.5 with which blot a fold holds; measured 0.09 for saved_models/wgan/1.)"""
    names = np.unique(train_groups)
    if len(names) < 2:
        return None
    rng = np.random.default_rng(seed + 5)
    in_first = np.isin(train_groups, rng.permutation(names)[:len(names) // 2])
    pool_images, pool_groups = [_unit(train[~in_first])], [np.asarray(train_groups)[~in_first]]
    if validation is not None and len(validation):
        pool_images.append(_unit(validation))
        pool_groups.append(np.asarray(validation_groups) + int(names.max()) + 1)
    pool, groups = np.concatenate(pool_images), np.concatenate(pool_groups)
    chosen = np.sort(rng.choice(len(pool), min(count, len(pool)), replace=False))
    return two_sample_auc(real, pool[chosen], real_groups, groups[chosen], options, seed,
                          first_extra=train[in_first])


def realism_figures(real, fake, real_groups=None, reference=None, train=None, train_groups=None, validation=None,
                    validation_groups=None, seed: int = 0, two_sample: bool = True,
                    options: TwoSampleOptions | None = None, memorisation_size: int = 32) -> dict:
    """The four figures of `fake` against held-out `real` images, the periodic peaks, and the
    targets; with the floors where the second real set `reference` (SWD, spectral distance),
    the training tiles `train` with their groups and the unseen `validation` tiles (two-sample
    AUC, `two_sample_floor`; memorisation) are given. The two-sample classifier also learns
    "real" from `train` (never scored; see `two_sample_auc`). Images [N, S, S, C] in [0, 1];
    `train` may be uint8 / uint16 patches."""
    result = dict(gan_quality.compare(real, fake, reference=reference, seed=seed))
    if reference is not None:
        result["swd_vs_floor"] = result["swd"] / result["swd_real_reference"]
        result["spectral_distance_vs_floor"] = result["spectral_distance"] / result["spectral_distance_real_reference"]
    for period in (8, 16):
        if real.shape[1] % period == 0 and real.shape[1] >= 2 * period:
            result[f"periodic_peak_{period}"] = gan_quality.periodic_peak(fake, period)
            result[f"periodic_peak_{period}_real"] = gan_quality.periodic_peak(real, period)
    if two_sample:
        started = time.perf_counter()
        result.update(two_sample_auc(real, fake, real_groups, None, options, seed, first_extra=train))
        floor = None
        if train is not None and train_groups is not None:
            floor = two_sample_floor(real, real_groups, train, train_groups, validation, validation_groups,
                                     len(fake), options, seed)
        if floor is not None:
            result["two_sample_auc_real_reference"] = floor["two_sample_auc"]
            result["two_sample_auc_folds_real_reference"] = floor["two_sample_auc_folds"]
        result["two_sample_seconds"] = round(time.perf_counter() - started, 1)
    if train is not None:
        size = min(memorisation_size, real.shape[1], real.shape[2])  # small test images: at full size
        result.update(memorisation.memorisation(fake, real, train, size))
        result["memorisation_size"] = size
        if validation is not None and len(validation):
            floor = memorisation.memorisation(validation, real, train, size)
            result["memorisation_ratio_real_reference"] = floor["memorisation_ratio"]
    result["targets"] = {name: {"target": f"{comparison} {bound}", "value": result[name],
                                "met": bool(result[name] <= bound if comparison == "<=" else result[name] >= bound)}
                         for name, comparison, bound in TARGETS if name in result}
    return result


def summary_table(result: dict) -> str:
    """The four figures beside their floors, as a Markdown table (what the command prints)."""
    rows = [("SWD x 1e3", "swd", "swd_real_reference", "swd_vs_floor"),
            ("spectral distance (decades)", "spectral_distance", "spectral_distance_real_reference",
             "spectral_distance_vs_floor"),
            ("two-sample AUC", "two_sample_auc", "two_sample_auc_real_reference", None),
            ("memorisation ratio", "memorisation_ratio", "memorisation_ratio_real_reference", None)]
    lines = ["| figure | generated | real vs real (floor) | ratio to floor | target |", "|---|---|---|---|---|"]
    for title, key, floor, ratio in rows:
        if key not in result:
            continue
        floor_text = f"{result[floor]:.3f}" if floor in result else "-"
        ratio_text = f"{result[ratio]:.2f}" if ratio in result else "-"
        target = result["targets"].get(ratio) or result["targets"].get(key)
        target_text = f"{target['target']} ({'met' if target['met'] else 'not met'})" if target else "-"
        lines.append(f"| {title} | {result[key]:.3f} | {floor_text} | {ratio_text} | {target_text} |")
    return "\n".join(lines)


def write_comparison(path, real, fake, columns: int = 8, rows: int = 3, seed: int = 0) -> Path:
    """PNG of `rows` rows of real images (drawn at random) above `rows` rows of generated ones,
    on a grey grid (the blots' white background must not hide the tile borders)."""
    count = min(columns * rows, len(real), len(fake))
    chosen = np.random.default_rng(seed).choice(len(real), count, replace=False)
    top = image_grid(real[chosen], columns, gap=4, background=0.5)
    bottom = image_grid(fake[:count], columns, gap=4, background=0.5)
    band = np.full((max(12, top.shape[0] // 30), top.shape[1], top.shape[2]), 0.5, np.float32)
    return write_png(path, np.concatenate([top, band, bottom]), 8)


def write_shuffled(path, real, fake, columns: int = 8, rows: int = 4, seed: int = 0) -> tuple[Path, list[str]]:
    """PNG of `columns` x `rows` tiles, half real (drawn at random) and half generated, in a
    random order fixed by `seed`, on a grey grid; and its key, one string per row, "R" for real
    and "G" for generated (to print below the picture, never in it)."""
    half = min(columns * rows // 2, len(real), len(fake))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(real), half, replace=False)
    tiles = np.concatenate([real[chosen], fake[:half]])
    labels = np.array(["R"] * half + ["G"] * half)
    order = rng.permutation(len(tiles))
    picture = write_png(path, image_grid(tiles[order], columns, gap=4, background=0.5), 8)
    key = "".join(labels[order])
    return picture, [" ".join(key[start:start + columns]) for start in range(0, len(key), columns)]


def _write(result: dict, out: Path, real, fake) -> dict:
    result["out"] = str(out)
    result["picture"] = str(write_comparison(out.with_name(f"{out.stem}_real_vs_generated.png"), real, fake))
    shuffled, key = write_shuffled(out.with_name(f"{out.stem}_shuffled.png"), real, fake)
    result.update(shuffled_picture=str(shuffled), shuffled_key=key)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(summary_table(result), file=sys.stderr, flush=True)
    return result


def _default_out(model, name: str) -> Path:
    source = Path(model)
    return source / "evaluation.json" if (source / "config.json").exists() else Path(f"{name}_evaluation.json")


def evaluate_wgan(model, data: tuple[str, ...] | None = None, n: int = 512, seed: int = 0, out=None,
                  batch_size: int = 64, two_sample: bool = True, options: TwoSampleOptions | None = None,
                  memorisation_size: int = 32) -> dict:
    """The realism figures of `n` generated blots against held-out real blots (module docstring;
    SWD and spectral distance use as many of each as the smaller set has).

    The real blots are the generator's own held-out test groups (rebuilt from generator.json and
    its training data folder), or every tile of --data folders (then without floors or the
    memorisation check, which need the split). Writes JSON to `out` (default: evaluation.json in
    a run folder, else wgan_evaluation.json) and the two pictures beside it; prints the table of
    figures to stderr; returns the JSON's dict.
    """
    from keras_forensics.training import wgan as trainer

    loaded = artifacts.load_generator(model, "wgan")
    sets = trainer.real_blot_sets(loaded.info, tuple(data) if data else None)
    rng = np.random.default_rng(seed)
    real, real_groups, _ = _sample(sets["held_out"], n, rng, trainer.as_model_images)
    reference = validation = validation_groups = None
    if sets["others"] is not None:
        reference, _, _ = _sample(sets["others"], len(real), rng, trainer.as_model_images)
    if sets["validation"] is not None:
        validation, validation_groups, _ = _sample(sets["validation"], n, rng, trainer.as_model_images)
    noise = trainer.sample_noise(n, int(loaded.info["latent_dim"]), seed + 1)
    fake = np.concatenate([loaded.sample(noise[start:start + batch_size])
                           for start in range(0, len(noise), batch_size)])
    started = time.perf_counter()
    train = train_groups = None
    if sets["train"] is not None:
        train, train_groups = sets["train"].patches, sets["train"].groups
    result = realism_figures(real, fake, real_groups, reference, train, train_groups, validation, validation_groups,
                             seed, two_sample, options, memorisation_size)
    result.update({"real_images": len(real), "generated_images": len(fake), "model": str(loaded.source),
                   "train_tiles": None if train is None else len(train),
                   "seconds": round(time.perf_counter() - started, 2)})
    return _write(result, Path(out) if out else _default_out(model, "wgan"), real, fake)


def evaluate_cyclegan(model, n: int = 256, seed: int = 0, out=None, batch_size: int = 16, two_sample: bool = True,
                      options: TwoSampleOptions | None = None, memorisation_size: int = 32) -> dict:
    """The realism figures of G(a) for `n` held-out domain-A tiles against held-out domain-B
    tiles, the cycle-consistency errors and (for --domain_b_from_a runs) the paired error; the
    SWD and spectral distance of F(b) against held-out A tiles too (module docstring). Writes
    JSON and pictures like `evaluate_wgan`."""
    from keras_forensics.training import cyclegan as trainer

    loaded = artifacts.load_generator(model, "cyclegan")
    config, parts = trainer.held_out_domains(loaded.info)
    size = config.model.image_size

    def to_images(patches):
        return trainer.as_model_images(trainer.center_crop(patches, size))

    rng = np.random.default_rng(seed)
    paired = bool(config.domain_b_from_a)
    test_a, _, index = _sample(parts["a"]["test"], n, rng, to_images)
    # With B made from A, the same tiles of both: test_b[i] is the known answer for test_a[i].
    test_b, groups_b, _ = _sample(parts["b"]["test"], n, rng, to_images, index if paired else None)
    others_b = parts["b"]["train"].concatenate(parts["b"]["validation"])
    reference_b, _, _ = _sample(others_b, len(test_b), rng, to_images)
    validation_b, validation_groups, _ = _sample(parts["b"]["validation"], n, rng, to_images)
    train_b = trainer.center_crop(parts["b"]["train"].patches, size)  # stays uint: memorisation converts in batches

    def translate(images, direction):
        return np.concatenate([loaded.translate(images[start:start + batch_size], direction)
                               for start in range(0, len(images), batch_size)])

    fake_b, fake_a = translate(test_a, "a_to_b"), translate(test_b, "b_to_a")
    back_a, back_b = translate(fake_b, "b_to_a"), translate(fake_a, "a_to_b")
    started = time.perf_counter()
    count = min(len(test_b), len(fake_b))
    result = realism_figures(test_b[:count], fake_b[:count], groups_b[:count], reference_b, train_b,
                             parts["b"]["train"].groups, validation_b, validation_groups, seed, two_sample, options,
                             memorisation_size)
    backwards = gan_quality.compare(test_a, fake_a, seed=seed)
    cycle_a, cycle_b = float(np.mean(np.abs(back_a - test_a))), float(np.mean(np.abs(back_b - test_b)))
    result.update({"direction": "a_to_b", "swd_b_to_a": backwards["swd"],
                   "spectral_distance_b_to_a": backwards["spectral_distance"],
                   "cycle_error_a": cycle_a, "cycle_error_b": cycle_b, "cycle_consistency_error": cycle_a + cycle_b,
                   "domain_b_from_a": config.domain_b_from_a, "test_images_a": len(test_a),
                   "test_images_b": len(test_b), "model": str(loaded.source),
                   "seconds": round(time.perf_counter() - started, 2)})
    if paired:
        result["paired_error_a_to_b"] = float(np.mean(np.abs(fake_b - test_b)))
        result["paired_error_identity"] = float(np.mean(np.abs(test_a - test_b)))
    return _write(result, Path(out) if out else _default_out(model, "cyclegan"), test_b, fake_b)


def check_two_sample_flags(folds: int, steps: int) -> TwoSampleOptions:
    """The CLI's --folds and --two_sample_steps as options (one clear error for bad values)."""
    if isinstance(folds, bool) or isinstance(steps, bool) or not isinstance(folds, int) or not isinstance(steps, int):
        raise ForensicsError(f"--folds and --two_sample_steps take whole numbers, got {folds!r} and {steps!r}")
    return TwoSampleOptions(folds=folds, steps=steps)
