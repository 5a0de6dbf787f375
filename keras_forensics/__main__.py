"""`python -m keras_forensics <command> ...`: the toolkit's command line (python-fire).

Each command is a function that imports TensorFlow and its module only when it runs, so `--help` is
fast and every command's flags and documentation show in `python -m keras_forensics <command> --help`:
a thin function here, or, for the screening commands, the function of keras_forensics/screening/cli.py
itself (one signature and docstring, not a copy).
Commands return None, a path or a flat dict (fire prints it); user mistakes end with one line on
stderr and exit status 2.
"""

from __future__ import annotations

from keras_forensics.errors import run_cli

COMMANDS: dict = {}


def command(function):
    """Register a CLI command under its function name."""
    COMMANDS[function.__name__] = function
    return function


# Commands are registered below, one block per module (screening, detection, generation, serving).


# --- screening for re-used images: the commands of keras_forensics/screening/cli.py, whose
# signatures and docstrings are their --help (that module imports TensorFlow only when one runs) ---

from keras_forensics.screening import cli as _screening  # noqa: E402

for _command in (_screening.similarity, _screening.compare, _screening.screen, _screening.index):
    command(_command)


# --- serving ---


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
    --num_batch_threads N --max_request_bytes N --max_image_pixels N --max_request_pixels N
    --max_uploads_per_client N --ready_file PATH.
    """
    from keras_forensics.serving import server

    return server.run_command(flags, usage=serve.__doc__)


# --- detection of GAN-made images (keras_forensics/detection: inference, report, spectrum) ---


@command
def detect(*inputs, out: str | None = None, model: str | None = None, stride: int | None = None,
           batch_size: int = 256, max_pixels: int | None = None, in_full: int = 50, progress: bool = True,
           workers: int = 2):
    """Score images of any size for GAN-made content: INPUT... are image files and folders.

    Each image is cut into overlapping patches (stride: a quarter patch by default) scored by the
    detector, the patches of many images batched together (--batch_size patches per model call;
    --workers threads decode the files). Writes OUT/scores.csv (file, p_fake, p_fake_max_patch: the
    mean and the largest patch score; every image) and OUT/report.html (self-contained, under
    10 MB: a histogram of p_fake, then the --in_full most suspicious images with their p_fake heat
    map and spectrum). A progress bar on stderr (--noprogress: none).
    --model: a run dir (model.keras) or a SavedModel dir in TF-Serving layout (newest version);
    default saved_models/detector. --max_pixels N: images above N pixels are skipped with a message
    before they are decoded (default 100,000,000).
    """
    from keras_forensics.detection import report

    return report.detect(inputs, out, model=model, stride=stride, batch_size=batch_size, max_pixels=max_pixels,
                         in_full=in_full, progress=progress, workers=workers)


@command
def spectrum(*inputs, out: str | None = None, compare: str | None = None, size: int = 64,
             cutoff: float = 0.5, max_tiles_per_image: int = 64, seed: int = 0):
    """Frequency analysis: mean +/- std of the 2-D log spectra and 1-D power spectra of INPUT...

    INPUT: image files, folders (recursive), or masked sets (tampered/ + mask/: the synthetic squares).
    Images are cut into tiles of --size px. Writes OUT/spectra.json (profiles, high-frequency energy
    ratio above --cutoff x Nyquist) and a PNG per input. `--compare REAL_DIR FAKE_DIR...` draws the
    real folder against every input in OUT/compare.png (Wang et al. 2022, Fig. 1E).
    """
    from keras_forensics.detection import spectrum as spectrum_lib
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
