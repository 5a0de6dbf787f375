"""Benchmarks. Each prints one JSON object: the project's figure beside a reference measured in the
same process, and their ratio (absolute times on shared machines mean little; ratios do).

    python tools/benchmark.py pipeline [--batches 30] [--data DIR]
    python tools/benchmark.py screen [--n 1000,10000,100000] [--folder DIR --model M]
    python tools/benchmark.py screen-accuracy --folder REAL_TEST --calibration_folder REAL_VAL [--model M]
    python tools/benchmark.py archive [--n 1000,10000] [--model M] [--split_json RUN/split.json] [--index_n 100000]
    python tools/benchmark.py detect [--model RUN_DIR|saved_models/detector] [--batch_size 256]
    python tools/benchmark.py detect-files [--n 14000] [--reference_n 300] [--model saved_models/detector]
    python tools/benchmark.py serve [--model_dir runs/siamese/shipped] [--seconds 6] [--clients 1,8,32]
    python tools/benchmark.py wgan-step [--presets shipped,realistic] [--steps 2] [--threads 1] [--precision float32]
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the reference implementations beside this file
# The package of this checkout, not whichever one is installed (a script's sys.path[0] is tools/).
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))


def _emit(result: dict) -> None:
    """Print the result as JSON (the functions return nothing, so fire prints nothing more)."""
    print(json.dumps(result, indent=2))


def _patches(data):
    from keras_forensics import datasets

    return datasets.folder(data) if data else datasets.sample_micrographs()


def _rate(count_fn, seconds_min: float = 3.0, min_rounds: int = 5):
    """Calls count_fn() (returns items processed) until both limits are met; items per second."""
    items, rounds, start = 0, 0, time.perf_counter()
    while rounds < min_rounds or time.perf_counter() - start < seconds_min:
        items += count_fn()
        rounds += 1
    return items / (time.perf_counter() - start)


def pipeline(batches: int = 30, batch_size: int = 64, reference_images: int = 192, data: str | None = None,
             seed: int = 0):
    """Deformed images per second: the batched tf.data pipeline vs the per-image NumPy reference.

    Both apply the full deformation recipe (DeformationConfig defaults) to 256x256 patches and
    return 128x128 crops. Also reports the triplet pipeline (3 images per triplet).
    """
    import numpy as np
    import tensorflow as tf

    from keras_forensics.config import DeformationConfig
    from keras_forensics.data.deformations import Deformer, split_seed
    from keras_forensics.data.pipeline import GroupSampler, triplet_dataset
    from reference_deformations import STRUCTURES, ReferenceDeformer

    patchset = _patches(data)
    config = DeformationConfig()
    deformer = Deformer(config)
    sampler = GroupSampler(patchset)

    def deform_batch(step):
        seeds = split_seed(tf.stack([tf.constant(seed, tf.int64), step]), 2)
        index, _ = sampler.anchors_and_others(batch_size, seeds[0])
        return deformer(sampler.gather(index), seeds[1])

    dataset = (tf.data.Dataset.counter().map(deform_batch, num_parallel_calls=tf.data.AUTOTUNE)
               .prefetch(tf.data.AUTOTUNE))
    iterator = iter(dataset)
    for _ in range(3):  # warm-up: tracing and thread pools
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    pipeline_rate = batches * batch_size / (time.perf_counter() - start)

    triplets = iter(triplet_dataset(patchset, config, batch_size, seed=seed))
    for _ in range(3):
        next(triplets)
    start = time.perf_counter()
    for _ in range(batches):
        next(triplets)
    triplet_rate = batches * batch_size / (time.perf_counter() - start)

    rng = np.random.default_rng(seed)
    images = patchset.patches[rng.integers(0, len(patchset), reference_images)].astype(np.float32) / 255.0
    reference_rates = {}
    for structure in STRUCTURES:
        reference = ReferenceDeformer(config, seed=seed, structure=structure)
        start = time.perf_counter()
        for image in images:
            reference.deform(image)
        reference_rates[structure] = reference_images / (time.perf_counter() - start)
    reference_rate = reference_rates["verbatim"]

    # The training pipeline deforms 2 images per triplet (same, different) in one call per batch;
    # anchors are only cropped and cluttered.
    deformed_rate = 2 * triplet_rate
    # What training consumes: triplets per second of the training step at the same batch size.
    train_step, _ = _train_step_time(batch_size, steps=5, warmup=2)
    return _emit({
        "benchmark": "pipeline",
        "batch_size": batch_size,
        "patch_size": config.patch_size,
        "crop_size": config.crop_size,
        "cpu_count": os.cpu_count(),
        "pipeline_images_per_s": round(deformed_rate, 1),
        "single_call_batch_64_images_per_s": round(pipeline_rate, 1),
        "reference": "per-image NumPy/scikit-image/Pillow as the original code is written (per-pixel loops "
                     "for the local edits)",
        "reference_images_per_s": round(reference_rate, 1),
        "ratio": round(deformed_rate / reference_rate, 2),
        "vectorised_reference_images_per_s": round(reference_rates["original"], 1),
        "ratio_vs_vectorised_reference": round(deformed_rate / reference_rates["original"], 2),
        "tuned_reference_images_per_s": round(reference_rates["tuned"], 1),
        "ratio_vs_tuned_reference": round(deformed_rate / reference_rates["tuned"], 2),
        "triplets_per_s": round(triplet_rate, 1),
        "training_triplets_per_s": round(batch_size / train_step, 1),
        "pipeline_to_training_ratio": round(triplet_rate * train_step / batch_size, 1),
        "data": data or "embedded sample_micrographs",
    })


def detect(model: str | None = None, batch_size: int = 256, image_size: int = 512, stride: int | None = None,
           reference_patches: int = 64, seed: int = 0):
    """GAN-image detector patches per second: batched inference vs per-patch (unbatched) calls.

    Also the end-to-end rate of `Detector.score` on one image_size x image_size image (patch grid,
    batched scoring, heat map). --model: a run dir or SavedModel; default: an untrained detector of
    the default configuration (speed does not depend on the weights).
    """
    import numpy as np

    from keras_forensics.detection.inference import Detector
    from keras_forensics.models import detector as detector_model

    if model:
        detector = Detector.load(model)
    else:
        detector = Detector.from_keras(detector_model.build_detector())
    size = detector.patch_size
    rng = np.random.default_rng(seed)
    patches = rng.random((batch_size, size, size, 1)).astype(np.float32)
    detector.predict_patches(patches, batch_size)  # warm-up: tracing
    batched = _rate(lambda: len(detector.predict_patches(patches, batch_size)))
    single = patches[:1]
    detector.predict_patches(single, 1)

    def one_by_one():
        for index in range(reference_patches):
            detector.predict_patches(patches[index:index + 1], 1)
        return reference_patches

    unbatched = _rate(one_by_one)
    image = rng.random((image_size, image_size)).astype(np.float32)
    verdict = detector.score(image, stride=stride, batch_size=batch_size)
    end_to_end = _rate(lambda: len(detector.score(image, stride=stride, batch_size=batch_size).patch_scores))
    return _emit({
        "benchmark": "detect",
        "model": str(model or "untrained default DetectorConfig"),
        "patch_size": size,
        "batch_size": batch_size,
        "cpu_count": os.cpu_count(),
        "batched_patches_per_s": round(batched, 1),
        "reference_unbatched_patches_per_s": round(unbatched, 1),
        "ratio": round(batched / unbatched, 2),
        "image_size": image_size,
        "patches_per_image": len(verdict.patch_scores),
        "score_image_patches_per_s": round(end_to_end, 1),
        "score_images_per_s": round(end_to_end / len(verdict.patch_scores), 3),
    })


def detect_files(n: int = 14000, reference_n: int = 300, model: str | None = None, min_side: int = 64,
                 max_side: int = 128, batch_size: int = 256, workers: int = 2, folder: str | None = None,
                 seed: int = 0):
    """`detect` end to end on N small files (issue 15: 14,000 in at most 2 min on 2 cores).

    Writes N PNGs of min_side..max_side px a side (crops of ../shared/data/western_blots, or random
    textures without it) to --folder (default: a temporary folder, removed afterwards), then times
    the `detect` command's function on all of them (the model loaded once beforehand, for every
    timing): files/s, total seconds, the report's size. The
    references, in the same process: the per-file path `detect` had before (tools/
    detect_benchmarks.py) on the first --reference_n files (0: skip), and the model alone on
    patches (its batched patches/s, so total patches / that rate is the floor any batching can
    reach with this model). --model default: saved_models/detector (the newest version).
    """
    import shutil
    import tempfile

    import numpy as np

    from detect_benchmarks import reference_detect, small_files
    from keras_forensics.detection import report
    from keras_forensics.detection.inference import Detector

    work = Path(tempfile.mkdtemp(prefix="detect_files_"))
    images = Path(folder) if folder else work / "images"
    try:
        made = small_files(images, n, min_side, max_side, seed)
        detector = Detector.load(model)
        files = sorted(images.rglob("*.png"))
        detector.score(np.zeros((max_side, max_side), np.float32))  # load and trace once, outside the timings

        started = time.perf_counter()
        result = report.detect([str(images)], str(work / "out"), model=detector, batch_size=batch_size,
                               workers=workers, progress=False)
        seconds = time.perf_counter() - started
        per_shape = {}
        for shape in _shapes(files):
            if shape not in per_shape:
                per_shape[shape] = len(detector.prepare(np.zeros(shape, np.float32)).patches)
        patches = sum(per_shape[shape] for shape in _shapes(files))
        probe = np.random.default_rng(seed).random((batch_size, detector.patch_size, detector.patch_size, 1))
        model_rate = _rate(lambda: len(detector.predict_patches(probe.astype(np.float32), batch_size)))
        out = {
            "benchmark": "detect-files",
            "model": detector.name,
            "cpu_count": os.cpu_count(),
            **made,
            "patches": patches,
            "patches_per_file": round(patches / n, 2),
            "batch_size": batch_size,
            "workers": workers,
            "seconds": round(seconds, 1),
            "files_per_s": round(n / seconds, 1),
            "report_bytes": Path(result["report"]).stat().st_size,
            "model_only_patches_per_s": round(model_rate, 1),
            "model_bound_seconds": round(patches / model_rate, 1),
            "target": "14,000 files in <= 120 s",
        }
        if reference_n:
            subset = work / "subset"
            for path in files[:reference_n]:
                target = subset / path.relative_to(images)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
            started = time.perf_counter()
            reference_detect([str(subset)], work / "reference_out", detector, batch_size=batch_size)
            reference = time.perf_counter() - started
            started = time.perf_counter()
            report.detect([str(subset)], str(work / "subset_out"), model=detector, batch_size=batch_size,
                          workers=workers, progress=False)
            batched = time.perf_counter() - started
            out.update({
                "reference_files": reference_n,
                "reference_per_file_files_per_s": round(reference_n / reference, 2),
                "batched_same_files_files_per_s": round(reference_n / batched, 2),
                "ratio_same_files": round(reference / batched, 2),
                "reference_report_bytes": (work / "reference_out" / "report.html").stat().st_size,
            })
        return _emit(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _shapes(files):
    """[H, W] of each PNG, read from its header only."""
    from PIL import Image

    for path in files:
        with Image.open(path) as image:
            yield image.height, image.width


def _sizes(n) -> list[int]:
    """--n 1000,10000 (fire passes a tuple, a string or one int) as a list of ints."""
    return [int(v) for v in (n.split(",") if isinstance(n, str) else (n if isinstance(n, (list, tuple)) else [n]))]


def screen(n="1000,10000,100000", dimension: int = 128, threshold: float = 1.0, duplicates: float = 0.05,
           exact_max: int = 20000, folder: str | None = None, model: str | None = None, seed: int = 0):
    """All pairs within the threshold among N embeddings: exact blockwise TF vs FAISS flat vs HNSW.

    Wall time, peak memory and HNSW recall against the exact pairs (tools/screening_benchmarks.py
    describes the synthetic embeddings); with --folder, also end-to-end panels per second of
    `screen` on real images. Target: 100,000 panels in under 60 s with recall >= 0.99.
    """
    from screening_benchmarks import search_benchmark

    return _emit(search_benchmark(_sizes(n), dimension, threshold, duplicates, exact_max, seed, folder, model))


def screen_accuracy(folder: str, calibration_folder: str | None = None, model: str | None = None,
                    threshold: float = 1.0, neighbours: int = 2, write_calibration: str | None = None,
                    turns: bool = True, normalise: bool = False):
    """AP on real-case re-uses (tools/make_real_cases.py): Siamese, verifier, combined, pHash.

    --calibration_folder: fit the combined score there first (a validation folder);
    --write_calibration FILE saves the fit (keras_forensics/screening/calibration.json ships it).
    --noturns: Siamese distances of the panels as they are (screen --noturns).
    --normalise: Siamese distances normalised against the model's background set, as
    `screen --normalise` (off by default, as in the screen).
    """
    from screening_benchmarks import accuracy_benchmark

    return _emit(accuracy_benchmark(folder, calibration_folder, model, threshold, neighbours, write_calibration,
                                    turns=turns, normalise=normalise))


def archive(n="1000,10000", model: str | None = None, split_json: str | None = None, seed: int = 0,
            neighbours: int = 10, index_n: int = 100000, groups: int = 100, copies: int = 1,
            data: str | None = None, split: str = "test", keep: str | None = None, normalise: bool = False):
    """Retrieval and screening on an archive of N real panels with planted re-uses, next to pHash.

    For each N, an archive of N panels is written to a temporary folder: --groups regions of
    test-split micrographs of ../shared/data (micrographs/, micrographs_dsb2018/), each as it is
    and --copies times re-used with tools/make_real_cases.py's OpenCV/Pillow edits, among
    distractors (the test images' other regions, then non-overlapping crops of other micrographs
    and of the embedded images). --split_json: a training run's split.json (its "test" field
    groups); without it, a seeded split of field groups of its own (said so in the JSON).
    Reported per N: the descriptor's all-pairs AP and recall@1/5/10/20 beside the pHash-over-8-
    orientations baseline, and `Screener.screen` (default options, shortlist of --neighbours)
    precision and recall at its decision, verifications per panel, wall time per stage and peak
    memory. Then a 50-panel manuscript screened against an index of --index_n generated panels
    (0: skip): the index build time and the screen's end-to-end time. --split validation plants
    the validation split's images instead (with no test image anywhere): the archive to choose
    settings on. --keep DIR keeps each archive as DIR/archive_<N>/ (panels/, manifest.csv).
    --normalise: the screen as `screen --normalise` runs it.
    """
    from screening_benchmarks import archive_benchmark

    return _emit(archive_benchmark(_sizes(n), model, split_json, seed, neighbours, index_n, data, groups, copies,
                                   progress=False, split=split, keep=keep, normalise=normalise))


def _forward_flops(model, batch: int = 1) -> float:
    """Floating-point operations of one forward pass, counted by TensorFlow's graph profiler
    (a multiply-add counts 2)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    spec = [tf.TensorSpec((batch,) + tuple(model.input_shape[1:]), tf.float32)]
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(*spec)
    graph = convert_variables_to_constants_v2(concrete).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return float(tf.compat.v1.profiler.profile(graph, options=options).total_float_ops) / batch


def _peak_flops(size: int = 2048, repeats: int = 10) -> float:
    """The machine's float32 matmul rate, measured now (the roofline the model is compared to)."""
    import tensorflow as tf

    a = tf.random.normal((size, size))
    matmul = tf.function(lambda x: tf.linalg.matmul(x, x))
    matmul(a).numpy()
    return 2.0 * size ** 3 / _median_time(lambda: matmul(a).numpy(), repeats)


def _median_time(step, repeats: int) -> float:
    import numpy as np

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _train_step_time(batch_size: int, steps: int, warmup: int):
    """Median seconds of one Siamese training step (paper architecture, float32) and its embedding."""
    import keras
    import numpy as np

    from keras_forensics.config import SiameseConfig
    from keras_forensics.models import siamese

    embedding = siamese.build_embedding(SiameseConfig())
    model = siamese.build_triplet_model(embedding)
    model.compile(keras.optimizers.Adam(1e-4), siamese.TripletLoss(), metrics=siamese.triplet_metrics())
    rng = np.random.default_rng(0)
    x = {k: rng.random((batch_size, 128, 128, 1), np.float32) for k in ("anchor", "same", "different")}
    y = np.zeros((batch_size, 2), np.float32)
    for _ in range(warmup):
        model.train_on_batch(x, y)
    return _median_time(lambda: model.train_on_batch(x, y), steps), embedding


def train(batch_size: int = 64, steps: int = 10, warmup: int = 3):
    """Triplets per second of the Siamese training step (paper architecture, median of `steps`
    after `warmup`), its FLOPs per triplet and the achieved fraction of the machine's float32
    matmul peak measured in the same run."""
    step_time, embedding = _train_step_time(batch_size, steps, warmup)
    forward = _forward_flops(embedding)
    # Training costs about 3 forward passes (forward, gradients w.r.t. activations and weights), for 3 images.
    flops_per_triplet = 3 * 3 * forward
    triplet_rate = batch_size / step_time
    peak = _peak_flops()
    _emit({
        "benchmark": "train",
        "batch_size": batch_size,
        "median_step_s": round(step_time, 4),
        "triplets_per_s": round(triplet_rate, 2),
        "images_per_s": round(3 * triplet_rate, 2),
        "forward_gflops_per_image": round(forward / 1e9, 4),
        "train_gflops_per_triplet": round(flops_per_triplet / 1e9, 3),
        "achieved_gflops_per_s": round(triplet_rate * flops_per_triplet / 1e9, 1),
        "peak_matmul_gflops_per_s": round(peak / 1e9, 1),
        "fraction_of_peak": round(triplet_rate * flops_per_triplet / peak, 3),
        "cpu_count": os.cpu_count(),
    })


def embed(batch_size: int = 256, batches: int = 5):
    """Embeddings per second at batch 256 (inference, paper architecture) and fraction of peak."""
    import numpy as np
    import tensorflow as tf

    from keras_forensics.config import SiameseConfig
    from keras_forensics.models import siamese

    embedding = siamese.build_embedding(SiameseConfig())
    images = tf.constant(np.random.default_rng(0).random((batch_size, 128, 128, 1), np.float32))
    run = tf.function(lambda x: embedding(x, training=False))
    run(images).numpy()
    step_time = _median_time(lambda: run(images).numpy(), batches)
    forward = _forward_flops(embedding)
    peak = _peak_flops()
    _emit({
        "benchmark": "embed",
        "batch_size": batch_size,
        "embeddings_per_s": round(batch_size / step_time, 1),
        "forward_gflops_per_image": round(forward / 1e9, 4),
        "fraction_of_peak": round(batch_size / step_time * forward / peak, 3),
        "peak_matmul_gflops_per_s": round(peak / 1e9, 1),
        "cpu_count": os.cpu_count(),
    })


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _latency_summary(latencies: list, wall: float, pairs_per_request: int = 1) -> dict:
    import numpy as np

    milliseconds = np.array(latencies) * 1000.0
    return {"requests": len(latencies),
            "pairs_per_s": round(len(latencies) * pairs_per_request / wall, 1) if wall else 0.0,
            "p50_ms": round(float(np.percentile(milliseconds, 50)), 1) if len(latencies) else None,
            "p99_ms": round(float(np.percentile(milliseconds, 99)), 1) if len(latencies) else None}


def _serve_load(client_factory, request, clients: int, seconds: float, max_requests: int) -> dict:
    """`clients` threads, each with its own client, send one request after another until the
    time or the request budget is spent; returns throughput and latency percentiles."""
    import threading

    workers = [client_factory() for _ in range(clients)]
    for client in workers:
        request(client, 0)  # connect, fetch metadata, warm the path
    latencies, errors, lock = [], [], threading.Lock()
    start_line = threading.Barrier(clients + 1)
    deadline = [0.0]

    def work(client, index):
        start_line.wait()
        count = 0
        while time.perf_counter() < deadline[0]:
            with lock:
                if len(latencies) + len(errors) >= max_requests:
                    return
            began = time.perf_counter()
            try:
                request(client, index + count)
                with lock:
                    latencies.append(time.perf_counter() - began)
            except Exception as error:  # noqa: BLE001 -- counted and reported, the run goes on
                with lock:
                    errors.append(f"{type(error).__name__}: {error}")
            count += clients

    threads = [threading.Thread(target=work, args=(c, i)) for i, c in enumerate(workers)]
    for thread in threads:
        thread.start()
    deadline[0] = time.perf_counter() + seconds
    began = time.perf_counter()
    start_line.wait()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    for client in workers:
        client.close()
    return {"clients": clients, **_latency_summary(latencies, wall), "errors": len(errors),
            **({"first_error": errors[0]} if errors else {})}


def serve(model_dir: str | None = None, seconds: float = 6.0, max_requests: int = 600, clients: str = "1,8,32",
          batching_parameters_file: str = "saved_models/batching.config", pool: int = 16, seed: int = 0):
    """Served Siamese pairs per second and p50/p99 latency for 1, 8 and 32 concurrent clients over
    gRPC and REST, next to in-process Keras predict measured in the same run.

    The Siamese run in --model_dir (default runs/siamese/shipped) is exported to a temporary
    folder and served by `python -m keras_forensics serve` in a subprocess, with batching from
    --batching_parameters_file, on loopback ports. Every request carries one pair: gRPC calls
    serving_default with float tensors (the in-process reference's input), REST calls
    similarity_bytes with two base64 PNGs (how ServingClient sends image files). Each
    (protocol, clients) run stops after --seconds or --max_requests requests. In-process
    throughput is Keras `predict` on the pair model (batch 32; the better of one caller and as
    many concurrent callers as the server has batch threads), measured before and after the served
    runs; the ratio uses their mean.
    """
    import shutil
    import signal
    import subprocess
    import tempfile

    import numpy as np

    from keras_forensics.errors import ForensicsError
    from keras_forensics.serving import export, modules
    from keras_forensics.serving.batching import read_batching_parameters
    from keras_forensics.serving.client import ServingClient
    from keras_forensics.serving.protocol import encode_png

    model_dir = Path(model_dir or "runs/siamese/shipped")
    if not any((model_dir / name).is_file() for name in ("model.keras", "checkpoints/best.keras")):
        raise ForensicsError(f"{model_dir} holds no model.keras or checkpoints/best.keras; pass --model_dir of a Siamese run "
                             "(e.g. python -m keras_forensics.train siamese --preset quick --steps 20 "
                             "--model_dir /tmp/siamese_quick)")
    counts = [int(c) for c in str(clients).replace("(", "").replace(")", "").split(",") if str(c).strip()]
    workspace = Path(tempfile.mkdtemp(prefix="kf_serve_benchmark_"))
    server = None
    try:
        exported = export.export("siamese", model_dir, export_base=workspace, version=1, verbose=False)
        module = modules.load_siamese(model_dir)
        rng = np.random.default_rng(seed)
        images_a = rng.random((256, 128, 128, 1)).astype(np.float32)
        images_b = rng.random((256, 128, 128, 1)).astype(np.float32)

        def predict_pairs(part=slice(None)):
            return len(module.pair_model.predict({"image_a": images_a[part], "image_b": images_b[part]},
                                                 batch_size=32, verbose=0)["distance"])

        def in_process_rate():
            """The better of one caller and `num_batch_threads` concurrent callers (the server's
            parallelism): on a busy machine the scheduler shares the cores per thread, so the
            comparison must give the in-process side as many threads as the server."""
            from concurrent.futures import ThreadPoolExecutor

            single = _rate(predict_pairs, seconds_min=4.0, min_rounds=2)
            threads = read_batching_parameters(batching_parameters_file).num_batch_threads
            if threads < 2:
                return single
            halves = [slice(i, None, threads) for i in range(threads)]
            with ThreadPoolExecutor(threads) as pool:
                parallel = _rate(lambda: sum(pool.map(predict_pairs, halves)), seconds_min=4.0, min_rounds=2)
            return max(single, parallel)

        in_process_before = in_process_rate()
        single = []
        for index in range(60):
            began = time.perf_counter()
            module.similarity(images_a[index:index + 1], images_b[index:index + 1])["distance"].numpy()
            single.append(time.perf_counter() - began)
        in_process_single = _latency_summary(single[10:], sum(single[10:]))

        ready = workspace / "ready.json"
        rest_port = _free_port()
        command = [sys.executable, "-m", "keras_forensics", "serve", "--model_base_path",
                   str(exported.path.parent), "--model_name", "siamese", "--port", "0",
                   "--rest_api_port", str(rest_port), "--enable_batching", "--batching_parameters_file",
                   str(batching_parameters_file), "--grpc_max_threads", "64", "--rest_api_num_threads", "64",
                   "--ready_file", str(ready)]
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        deadline = time.monotonic() + 300
        while not ready.exists():
            if server.poll() is not None or time.monotonic() > deadline:
                raise ForensicsError(f"the server did not start: {' '.join(command)}")
            time.sleep(0.2)
        ports = json.loads(ready.read_text())

        tensors = [(images_a[i:i + 1], images_b[i:i + 1]) for i in range(pool)]
        encoded = [(encode_png(images_a[i]), encode_png(images_b[i])) for i in range(pool)]

        def grpc_request(client, index):
            a, b = tensors[index % pool]
            client.similarity(a, b)

        def rest_request(client, index):
            a, b = encoded[index % pool]
            client.similarity(a, b)

        def factory(protocol):
            return lambda: ServingClient("127.0.0.1", rest_port=ports["rest_api_port"], grpc_port=ports["port"],
                                         protocol=protocol, timeout=120)

        served = []
        for protocol, request, signature in (("grpc", grpc_request, "serving_default"),
                                             ("rest", rest_request, "similarity_bytes")):
            for count in counts:
                result = _serve_load(factory(protocol), request, count, seconds, max_requests)
                served.append({"protocol": protocol, "signature": signature, **result})
        in_process_after = in_process_rate()
    finally:
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
        shutil.rmtree(workspace, ignore_errors=True)

    in_process = (in_process_before + in_process_after) / 2
    by_key = {(r["protocol"], r["clients"]): r for r in served}
    grpc_most = by_key.get(("grpc", max(counts)))
    grpc_single = by_key.get(("grpc", 1))
    ratio = round(grpc_most["pairs_per_s"] / in_process, 2) if grpc_most else None
    return _emit({
        "benchmark": "serve",
        "model_dir": str(model_dir),
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 1),
        "batching": str(batching_parameters_file),
        "in_process_keras_predict_pairs_per_s": {"before": round(in_process_before, 1),
                                                 "after": round(in_process_after, 1), "mean": round(in_process, 1)},
        "in_process_single_pair_ms": {"p50": in_process_single["p50_ms"], "p99": in_process_single["p99_ms"]},
        "served": served,
        f"ratio_grpc_{max(counts)}_clients_to_in_process": ratio,
        "targets": {
            "grpc_32_clients_at_least_70_percent_of_in_process": None if ratio is None or 32 not in counts
            else ratio >= 0.7,
            "single_pair_p99_under_50_ms": None if grpc_single is None else grpc_single["p99_ms"] < 50,
        },
    })


def wgan_step(presets="shipped,realistic", steps: int = 2, threads: int = 1, precision: str | None = None,
              batch_size: int | None = None):
    """CPU- and wall-seconds per WGAN generator step (its critic steps included) of each preset,
    median of `steps` after one warm-up step, the presets interleaved in one process so that the
    machine's load hits them alike; the ratio of each to the first. `threads` TF threads (1: the
    CPU-seconds of the work itself); `precision` / `batch_size` override every preset's. Random
    data, so no data folder is read."""
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    from keras_forensics import config as config_lib
    from keras_forensics.training import wgan as trainer

    names = presets.split(",") if isinstance(presets, str) else list(presets)
    runs, first_steps = {}, {}
    for name in names:
        overrides = {k: v for k, v in (("precision", precision), ("batch_size", batch_size)) if v is not None}
        config = config_lib.replace(config_lib.WGANTrainConfig(), **{**config_lib.WGAN_PRESETS[name], **overrides})
        model = trainer.build_model(config, total_steps=1000)
        size = config.model.resolution
        data = tf.constant(np.random.default_rng(0).random(
            (config.model.critic_steps, config.batch_size, size, size, config.model.channels), np.float32))
        step = tf.function(model.train_step)
        started, cpu = time.perf_counter(), time.process_time()
        step(data)
        first_steps[name] = {"cpu_s": round(time.process_time() - cpu, 1), "wall_s": round(time.perf_counter() - started, 1)}
        runs[name] = (step, data, config, [])
    for _ in range(steps):
        for name in names:
            step, data, _, times = runs[name]
            started, cpu = time.perf_counter(), time.process_time()
            step(data)
            times.append((time.process_time() - cpu, time.perf_counter() - started))
    medians = {name: (float(np.median([t[0] for t in runs[name][3]])), float(np.median([t[1] for t in runs[name][3]])))
               for name in names}
    _emit({
        "benchmark": "wgan-step", "threads": threads, "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 1),
        "presets": {name: {"batch_size": runs[name][2].batch_size, "precision": runs[name][2].precision,
                           "cpu_s_per_step": round(medians[name][0], 2), "wall_s_per_step": round(medians[name][1], 2),
                           "first_step": first_steps[name],
                           f"cpu_ratio_to_{names[0]}": round(medians[name][0] / medians[names[0]][0], 3)}
                    for name in names},
    })


if __name__ == "__main__":
    import fire

    fire.Fire({"pipeline": pipeline, "train": train, "embed": embed, "screen": screen,
               "screen-accuracy": screen_accuracy, "archive": archive, "detect": detect, "detect-files": detect_files, "serve": serve,
               "wgan-step": wgan_step})
