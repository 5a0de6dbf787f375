"""`python -m keras_forensics.evaluate <kind> ...`: measure a trained model; prints and writes JSON."""

from __future__ import annotations

from keras_forensics.errors import run_cli

COMMANDS: dict = {}


def command(function):
    COMMANDS[function.__name__] = function
    return function


# One block per model kind below (siamese, detector, wgan, cyclegan).


@command
def siamese(model: str, real_cases: str | None = None, data: str | None = None, out: str | None = None,
            count: int = 2000, synthetic: bool = True, scales=None):
    """Synthetic test accuracy and real-case metrics (ROC AUC, AP, accuracy at f = 1, nearest-neighbour
    accuracy) of a Siamese model; writes evaluation.json and roc.png.

    Args:
        model: a training run's model_dir (runs/siamese/...), a .keras file or a SavedModel
            (saved_models/siamese; its synthetic test needs --data).
        real_cases: a folder with one sub-folder per original image holding its manipulated versions.
        data: a folder of images for the synthetic test (default: the run's held-out test split).
        out: output folder (default: <model_dir>/evaluation).
        count: synthetic test triplets (each gives one same and one different pair).
        synthetic: run the synthetic test (--nosynthetic to skip it).
        scales: resolutions to cut the synthetic test patches at (default: the run's --patch_scales;
            --scales 1 = native resolution only, the paper's test).
    """
    from keras_forensics.evaluation.siamese import evaluate

    return evaluate(model, real_cases, data, out, count, synthetic, scales)


@command
def detector(model: str | None = None, real=None, fake=None, baseline: str | None = None, split: str = "test",
             out: str | None = None, bootstrap: int = 1000, generated: int = 1000, seed: int = 0,
             fft_peaks: bool = False, fft_peaks_augment: bool = True):
    """Measure the GAN-image detector: ROC AUC with a 95% bootstrap CI, average precision, accuracy
    at 0.5 and at the equal-error threshold, per synthetic source (and per sub-folder of a fake
    folder), on the patches as they are, JPEG(75)-recompressed and 0.5x-resized.

    --model: a training run (then only its --split, default test, of each source it trained on is
    used) or a SavedModel; default saved_models/detector. --real DIR[,DIR] and --fake DIR[,DIR] as
    in `train detector` (folders, masked sets, saved generators, or `upsampling` for procedural
    transposed-convolution fakes of the real test patches). --baseline RUN_DIR scores the same
    patches with a second model (the spectral baseline) in the same run. --fft_peaks adds the
    Cardenuto-Mandelli baseline (gradient-boosted trees on the patch FFT peaks of a denoising
    residual; needs scikit-learn), fitted first on the run's train split of the same sources, as
    they are and (unless --nofft_peaks_augment) once more through the run's augmentation; it needs
    --model RUN_DIR. Prints a Markdown table, writes JSON to --out (default RUN_DIR/evaluation.json).
    """
    from keras_forensics.detection import evaluation

    return evaluation.evaluate(model, real, fake, baseline=baseline, split=split, out=out,
                               num_resamples=bootstrap, generated=generated, seed=seed,
                               fft_peaks=fft_peaks, fft_peaks_augment=fft_peaks_augment)


@command
def wgan(model: str = "saved_models/wgan", data: str | None = None, n: int = 512, seed: int = 0,
         out: str | None = None, two_sample: bool = True, two_sample_steps: int = 300, folds: int = 3):
    """How real N generated blots are, against held-out real blots, each figure beside its
    real-vs-real floor: the sliced Wasserstein distance (Karras et al. 2018, x 1e3, per Laplacian
    level and mean), the spectral distance (RMS of the mean log10 power spectra), the two-sample
    AUC (a fresh classifier with the detector's architecture trained --two_sample_steps steps to
    tell held-out real tiles from generated ones, --folds-fold cross-validated by source blot and
    learning "real" from the training tiles too; 0.5 = indistinguishable; --notwo_sample skips it)
    and the memorisation ratio (median distance
    of each generated tile to its nearest training tile, 32x32 area means, over the same for
    held-out real tiles; >= 1 = no copying); plus the 8 and 16 px periodic spectral peaks and the
    realism targets. Prints the table to stderr and the JSON to stdout, and writes the JSON to
    --out (default: evaluation.json in a run folder, else wgan_evaluation.json) beside two
    pictures: real above generated, and real and generated in random order (its key in the JSON).

    --model: a SavedModel folder (saved_models/wgan) or a training run's model_dir. Real blots: the
    generator's held-out test groups, rebuilt from its training data folder, or every tile of
    --data DIR[,DIR...] (no floors then). *_real_reference are the floors.
    """
    import json

    from keras_forensics.evaluation import gan

    folders = tuple(data.split(",")) if isinstance(data, str) else data
    options = gan.check_two_sample_flags(folds, two_sample_steps)
    result = gan.evaluate_wgan(model, data=folders, n=n, seed=seed, out=out, two_sample=two_sample, options=options)
    print(json.dumps(result, indent=2, sort_keys=True))


@command
def cyclegan(model: str, n: int = 256, seed: int = 0, out: str | None = None, two_sample: bool = True,
             two_sample_steps: int = 300, folds: int = 3):
    """How real a CycleGAN's translations are: G(a) of N held-out domain-A tiles against held-out
    domain-B tiles, with the four figures of `evaluate wgan` beside their floors (B tiles against
    other B tiles), the SWD and spectral distance of F(b) against A, the cycle-consistency errors
    |F(G(a)) - a| and |G(F(b)) - b| (mean absolute, [0, 1] units), and for a run with
    --domain_b_from_a (B = a known function of A) the paired error |G(a) - b| beside |a - b|, the
    error of not translating at all. Prints the table to stderr and the JSON to stdout, and writes
    it to --out (default: evaluation.json in a run folder, else cyclegan_evaluation.json).

    --model: a training run's model_dir or its SavedModel (saved_models/cyclegan), whose
    generator.json records the data and split (runs trained before this command cannot be
    measured by it).
    """
    import json

    from keras_forensics.evaluation import gan

    options = gan.check_two_sample_flags(folds, two_sample_steps)
    result = gan.evaluate_cyclegan(model, n=n, seed=seed, out=out, two_sample=two_sample, options=options)
    print(json.dumps(result, indent=2, sort_keys=True))


def main(argv=None):
    run_cli(COMMANDS, name="python -m keras_forensics.evaluate", argv=argv)


if __name__ == "__main__":
    main()
