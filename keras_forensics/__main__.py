"""`python -m keras_forensics <command> ...`: the toolkit's command line (python-fire).

Each command is a thin function here that imports its module only when it runs, so `--help` is
fast and every command's flags and documentation show in `python -m keras_forensics <command> --help`.
Commands return None, a path or a flat dict (fire prints it); user mistakes end with one line on
stderr and exit status 2.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_forensics.errors import run_cli  # noqa: E402

COMMANDS: dict = {}


def command(function):
    """Register a CLI command under its function name."""
    COMMANDS[function.__name__] = function
    return function


# Commands are registered below, one block per module (screening, detection, generation, serving).


# --- screening for re-used images (keras_forensics/screening) ---


@command
def similarity(pairs: str, out: str, model: str | None = None, batch_size: int = 64, turns: bool = True):
    """Score image pairs: PAIRS.csv has columns a, b (paths relative to the CSV's folder).

    Writes OUT.csv: PAIRS.csv's columns plus distance, p_same = sigmoid(1 - distance) and same
    (p_same > 0.5). --model: saved_models/siamese (default), a SavedModel, a run dir or a .keras file.
    The distance is the smallest over a's 8 orientations (quarter turns, mirrored) against b;
    --noturns: the network's distance of the two as they are (what TF-Serving's `similarity` gives).
    """
    from keras_forensics.screening import cli

    return cli.similarity(pairs, out, model=model, batch_size=batch_size, turns=turns)


@command
def compare(image_a: str, image_b: str, model: str | None = None, turns: bool = True):
    """Compare two images with the Siamese network; prints JSON {distance, p_same, same}: the
    smallest distance over A's 8 orientations (quarter turns, mirrored) against B (--noturns: as
    they are)."""
    from keras_forensics.screening import cli

    return cli.compare(image_a, image_b, model=model, turns=turns)


@command
def screen(*inputs, out: str, threshold: float = 1.0, index: str | None = None, model: str | None = None,
           calibration: str | None = None, neighbours: int = 2, split: str = "pdf", min_panel_size: int = 64,
           method: str = "auto", exact_max: int = 5000, verify_all_max: int = 20000, verify: bool = True,
           turns: bool = True):
    """Screen INPUT... (image files, folders, PDFs) for re-used panels; writes REPORT_DIR (--out).

    REPORT_DIR/pairs.csv (rank, a, b, distance, p_same, inliers, transform, combined, relation,
    a_file, a_page, a_box, b_file, b_page, b_box, note), REPORT_DIR/panels/ and a self-contained
    REPORT_DIR/report.html. Up to --verify_all_max pairs (default 20,000, about 200 panels) every
    pair is verified with SIFT + RANSAC; above, only candidates (Siamese distance <= --threshold
    or among each panel's --neighbours nearest). Ranked by the calibrated combined score.
    --index INDEX_DIR: also compare with every panel indexed before. --split pdf|all|none,
    --method auto|exact|flat|hnsw (auto: exact up to --exact_max panels, then FAISS HNSW).
    Panels are compared in all 8 orientations (quarter turns, mirrored; --noturns: as they are).
    Exit status 0 when the screen completed (skipped inputs are listed), 1 if no input was readable.
    """
    from keras_forensics.screening import cli

    return cli.screen(*inputs, out=out, threshold=threshold, index=index, model=model, calibration=calibration,
                      neighbours=neighbours, split=split, min_panel_size=min_panel_size, method=method,
                      exact_max=exact_max, verify_all_max=verify_all_max, verify=verify, turns=turns)


@command
class index:  # noqa: N801 - the command's name
    """A corpus embedded once: `index build INPUT... --out INDEX_DIR`, `index add INPUT... --index INDEX_DIR`."""

    def build(self, *inputs, out: str, model: str | None = None, kind: str = "hnsw", split: str = "pdf",
              min_panel_size: int = 64):
        """Embed every panel of INPUT... into a new index at --out (--kind hnsw, or flat = exact)."""
        from keras_forensics.screening import cli

        return cli.index().build(*inputs, out=out, model=model, kind=kind, split=split,
                                 min_panel_size=min_panel_size)

    def add(self, *inputs, index: str, model: str | None = None, split: str = "pdf", min_panel_size: int = 64):
        """Add the panels of INPUT... to the index --index (files already indexed are skipped)."""
        from keras_forensics.screening import cli

        return cli.index().add(*inputs, index=index, model=model, split=split, min_panel_size=min_panel_size)


@command
def serve(**flags):
    """Serve saved_models over TF-Serving's gRPC and REST protocols (local development server).

    Production serving is the official TensorFlow Serving image (docker/); this server speaks the
    same protocol for local use and tests. Flags carry tensorflow_model_server's names:
      --port 8500 --rest_api_port 8501
      --model_config_file saved_models/models.config   (or --model_base_path DIR --model_name NAME)
      --enable_batching --batching_parameters_file saved_models/batching.config
      --file_system_poll_wait_seconds 1 --model_config_file_poll_wait_seconds 0
      --rest_api_num_threads N --rest_api_timeout_in_ms 30000 --grpc_max_threads N
      --enable_model_warmup true
    and this server's own: --host 127.0.0.1 --max_batch_size N --batch_timeout_micros N
    --num_batch_threads N --max_request_bytes N --max_image_pixels N --ready_file PATH.
    """
    from keras_forensics.serving import server

    return server.run_command(flags, usage=serve.__doc__)


# --- detection of GAN-made images (keras_forensics/detection, keras_forensics/spectrum.py) ---


@command
def detect(*inputs, out: str | None = None, model: str | None = None, stride: int | None = None,
           batch_size: int = 256):
    """Score images of any size for GAN-made content: INPUT... are image files and folders.

    Each image is cut into overlapping patches (stride: a quarter patch by default) scored by the
    detector; writes OUT/scores.csv (file, p_fake, p_fake_max_patch: the mean and the largest patch
    score) and OUT/report.html (each image, its p_fake heat map and its spectrum, self-contained).
    --model: a run dir (model.keras) or a SavedModel dir in TF-Serving layout (newest version);
    default saved_models/detector.
    """
    from keras_forensics.detection import report

    return report.detect(inputs, out, model=model, stride=stride, batch_size=batch_size)


@command
def spectrum(*inputs, out: str | None = None, compare: str | None = None, size: int = 64,
             cutoff: float = 0.5, max_tiles_per_image: int = 64, seed: int = 0):
    """Frequency analysis: mean +/- std of the 2-D log spectra and 1-D power spectra of INPUT...

    INPUT: image files, folders (recursive), or masked sets (tampered/ + mask/: the synthetic squares).
    Images are cut into tiles of --size px. Writes OUT/spectra.json (profiles, high-frequency energy
    ratio above --cutoff x Nyquist) and a PNG per input. `--compare REAL_DIR FAKE_DIR...` draws the
    real folder against every input in OUT/compare.png (Wang et al. 2022, Fig. 1E).
    """
    from keras_forensics import spectrum as spectrum_lib
    from keras_forensics.errors import ForensicsError

    if not out:
        raise ForensicsError("--out DIR is required")
    return spectrum_lib.run(inputs, out, compare=compare, size=size, cutoff=cutoff,
                            max_tiles_per_image=max_tiles_per_image, seed=seed)


# --- generating fakes (keras_forensics/generate.py) ---


@command
class generate:  # noqa: N801 - the command's name
    """Make fakes with a trained generator: `generate wgan ...`, `generate cyclegan ...`.

    --model is a SavedModel folder (saved_models/wgan: its newest version) or a training run's
    model_dir. PNGs have 16 bits per sample when the training data (WGAN) or the input image
    (CycleGAN) had 16.
    """

    def wgan(self, model: str = "saved_models/wgan", n: int = 100, out: str = "fakes", seed: int = 0,
             batch_size: int = 64, grid: bool = True):
        """Write N generated western blots to --out as fake_00000.png ... (and grid.png, the first 64).

        The same --seed gives the same images.
        """
        from keras_forensics import generate as generation

        return generation.generate_wgan(model, n=n, out=out, seed=seed, batch_size=batch_size, grid=grid)

    def cyclegan(self, input: str, model: str = "saved_models/cyclegan", direction: str = "a_to_b",  # noqa: A002
                 out: str = "translated"):
        """Translate every image below --input (a file or folder) with the a_to_b or b_to_a generator;
        writes PNGs with the same relative names under --out."""
        from keras_forensics import generate as generation

        return generation.translate_cyclegan(model, input=input, out=out, direction=direction)

def main(argv=None):
    run_cli(COMMANDS, name="python -m keras_forensics", argv=argv)


if __name__ == "__main__":
    main()
