"""The `spectrum` command: folder statistics of spectra, the Fig. 1E drawing, and the comparison.

`python -m keras_forensics spectrum INPUT... --out DIR [--compare REAL_DIR]`: statistics of
every input (`spectrum_statistics`, mean +/- std over tiles), the drawing of Wang et al. 2022,
Fig. 1E (`plot_comparison`), and how well the high-frequency ratio separates each input from the
real set. The spectra themselves are computed by keras_forensics.ops.spectrum.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_forensics.errors import ForensicsError
from keras_forensics.ops.spectrum import azimuthal_average, high_frequency_ratio, power_spectrum_2d


@dataclasses.dataclass
class SpectrumStatistics:
    """Mean +/- std of the spectra of a set of equally sized tiles (one folder, one file).

    `profile_*` are the 1-D log10 power spectra (DC first, Nyquist last), `log_spectrum_mean` the
    mean centred 2-D log10 power spectrum, `high_frequency_ratio_*` the statistics of
    `high_frequency_ratio` with `cutoff`.
    """

    name: str
    images: int
    tiles: int
    size: int
    cutoff: float
    profile_mean: np.ndarray
    profile_std: np.ndarray
    log_spectrum_mean: np.ndarray
    high_frequency_ratio_mean: float
    high_frequency_ratio_std: float
    high_frequency_ratios: np.ndarray

    @property
    def frequencies(self) -> np.ndarray:
        """The centre of each 1-D bin, as a fraction of the Nyquist frequency."""
        bins = len(self.profile_mean)
        return (np.arange(bins) + 0.5) / bins

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "images": self.images,
            "tiles": self.tiles,
            "tile_size": self.size,
            "frequency": [round(float(f), 5) for f in self.frequencies],
            "profile_log10_mean": [round(float(v), 5) for v in self.profile_mean],
            "profile_log10_std": [round(float(v), 5) for v in self.profile_std],
            "high_frequency_cutoff": self.cutoff,
            "high_frequency_ratio_mean": self.high_frequency_ratio_mean,
            "high_frequency_ratio_std": self.high_frequency_ratio_std,
        }


def spectrum_statistics(tiles, name: str = "", images: int | None = None, cutoff: float = 0.5,
                        batch_size: int = 256) -> SpectrumStatistics:
    """Statistics of [N, S, S] tiles (float in [0, 1] or uint8), computed in batches of `batch_size`."""
    tiles = np.asarray(tiles)
    if tiles.ndim != 3 or not len(tiles):
        raise ForensicsError(f"{name or 'spectrum'}: no image tiles to analyse")
    scale = 255.0 if tiles.dtype == np.uint8 else 1.0
    profiles, ratios = [], []
    log_sum = np.zeros(tiles.shape[1:], np.float64)
    for start in range(0, len(tiles), batch_size):
        chunk = tf.constant(tiles[start:start + batch_size].astype(np.float32) / scale)
        power = power_spectrum_2d(chunk)
        profiles.append(tf.math.log(azimuthal_average(power) + 1e-12).numpy() / np.log(10.0))
        ratios.append(high_frequency_ratio(chunk, cutoff).numpy())
        log_sum += tf.reduce_sum(tf.math.log(power + 1e-10), axis=0).numpy() / np.log(10.0)
    profiles, ratios = np.concatenate(profiles), np.concatenate(ratios)
    return SpectrumStatistics(
        name=name, images=int(images if images is not None else len(tiles)), tiles=len(tiles),
        size=int(tiles.shape[1]), cutoff=cutoff,
        profile_mean=profiles.mean(0), profile_std=profiles.std(0),
        log_spectrum_mean=(log_sum / len(tiles)).astype(np.float32),
        high_frequency_ratio_mean=float(ratios.mean()), high_frequency_ratio_std=float(ratios.std()),
        high_frequency_ratios=ratios,
    )


def plot_comparison(statistics: list[SpectrumStatistics], path, title: str | None = None) -> Path:
    """Wang et al. 2022, Fig. 1E: the mean 2-D log spectrum of each set side by side, and their
    1-D profiles (mean +/- std) on one axis. The first set is drawn as the reference (real)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ForensicsError("drawing spectra needs matplotlib: pip install matplotlib") from None

    count = len(statistics)
    figure = plt.figure(figsize=(3.2 * max(count, 2), 6.4), dpi=110)
    grid = figure.add_gridspec(2, count, height_ratios=[1, 1.05], hspace=0.35)
    low = min(np.percentile(s.log_spectrum_mean, 1) for s in statistics)
    high = max(np.percentile(s.log_spectrum_mean, 99.5) for s in statistics)
    for index, stats in enumerate(statistics):
        axis = figure.add_subplot(grid[0, index])
        shown = axis.imshow(stats.log_spectrum_mean, cmap="inferno", vmin=low, vmax=high,
                            extent=(-1, 1, 1, -1))
        axis.set_title(f"{stats.name}\n{stats.tiles} tiles of {stats.size} px", fontsize=9)
        axis.set_xticks([-1, 0, 1])
        axis.set_yticks([-1, 0, 1])
        axis.tick_params(labelsize=7)
    figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.04, label="log10 power").ax.tick_params(labelsize=7)
    axis = figure.add_subplot(grid[1, :])
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    for index, stats in enumerate(statistics):
        colour = colours[index % len(colours)]
        axis.plot(stats.frequencies, stats.profile_mean, color=colour,
                  label=f"{stats.name} (HF ratio {stats.high_frequency_ratio_mean:.3g})")
        axis.fill_between(stats.frequencies, stats.profile_mean - stats.profile_std,
                          stats.profile_mean + stats.profile_std, color=colour, alpha=0.2)
    axis.axvline(statistics[0].cutoff, color="gray", linestyle=":", linewidth=1)
    axis.set_xlabel("spatial frequency (fraction of Nyquist)")
    axis.set_ylabel("log10 power (azimuthal mean)")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    figure.suptitle(title or "Mean spectra (mean +/- std of the 1-D profiles)", fontsize=11)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, bbox_inches="tight")
    plt.close(figure)
    return path


def input_statistics(source, size: int = 64, cutoff: float = 0.5, max_tiles_per_image: int = 64,
                     seed: int = 0) -> SpectrumStatistics:
    """`spectrum_statistics` of one command-line input: an image file, a folder (recursive), or a
    masked set (a folder with tampered/ and mask/, whose masked squares are analysed)."""
    from keras_forensics.detection import sources

    path = Path(source)
    patches, count = sources.source_patches(path, size, max_patches_per_image=max_tiles_per_image, seed=seed)
    return spectrum_statistics(patches.patches, path.name or str(path), images=count, cutoff=cutoff)


def run(inputs, out, compare: str | None = None, size: int = 64, cutoff: float = 0.5,
        max_tiles_per_image: int = 64, seed: int = 0) -> dict:
    """The `spectrum` command: statistics of every input into OUT/spectra.json and a PNG each;
    with `compare` (a real folder), one PNG of the real set against every input
    (OUT/compare.png, Wang et al. Fig. 1E) and the separation of each by the high-frequency ratio."""
    from keras_forensics.metrics import ranking

    if not inputs and not compare:
        raise ForensicsError("give at least one image or folder (and optionally --compare REAL_DIR)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sets = [input_statistics(i, size, cutoff, max_tiles_per_image, seed) for i in inputs]
    result = {"tile_size": size, "high_frequency_cutoff": cutoff, "sets": [s.to_json() for s in sets]}
    written = []
    for stats in sets:
        written.append(plot_comparison([stats], out / f"{_safe_name(stats.name)}_spectrum.png",
                                       title=f"Spectrum of {stats.name}"))
    if compare:
        real = input_statistics(compare, size, cutoff, max_tiles_per_image, seed)
        written.append(plot_comparison([real] + sets, out / "compare.png",
                                       title="Mean spectra: real vs synthetic (cf. Wang et al. 2022, Fig. 1E)"))
        result["reference"] = real.to_json()
        result["comparison"] = [
            {
                "name": stats.name,
                "high_frequency_ratio_difference": stats.high_frequency_ratio_mean - real.high_frequency_ratio_mean,
                # How well the single number separates the two sets (0.5 = not at all).
                "high_frequency_ratio_auc": ranking.roc_auc(
                    np.r_[np.zeros(real.tiles), np.ones(stats.tiles)],
                    np.r_[real.high_frequency_ratios, stats.high_frequency_ratios]),
                "profile_log10_difference": [round(float(v), 5) for v in stats.profile_mean - real.profile_mean],
            }
            for stats in sets
        ]
    (out / "spectra.json").write_text(json.dumps(result, indent=2) + "\n")
    return {"json": str(out / "spectra.json"), "figures": ",".join(str(p) for p in written)}


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "input"
