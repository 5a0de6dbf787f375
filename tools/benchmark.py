"""Benchmarks. Each prints one JSON object: the project's figure beside a reference measured in the
same process, and their ratio (absolute times on shared machines mean little; ratios do).

    python tools/benchmark.py pipeline [--batches 30] [--data DIR]
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the reference implementations beside this file


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
    from reference_deformations import ReferenceDeformer

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
    for _ in range(max(5, batches // 3)):
        next(triplets)
    triplet_rate = max(5, batches // 3) * batch_size / (time.perf_counter() - start)

    reference = ReferenceDeformer(config, seed=seed)
    rng = np.random.default_rng(seed)
    images = patchset.patches[rng.integers(0, len(patchset), reference_images)].astype(np.float32) / 255.0
    start = time.perf_counter()
    for image in images:
        reference.deform(image)
    reference_rate = reference_images / (time.perf_counter() - start)

    return _emit({
        "benchmark": "pipeline",
        "batch_size": batch_size,
        "patch_size": config.patch_size,
        "crop_size": config.crop_size,
        "cpu_count": os.cpu_count(),
        "pipeline_images_per_s": round(pipeline_rate, 1),
        "reference_images_per_s": round(reference_rate, 1),
        "ratio": round(pipeline_rate / reference_rate, 2),
        "triplet_pipeline_triplets_per_s": round(triplet_rate, 1),
        "triplet_pipeline_images_per_s": round(3 * triplet_rate, 1),
        "data": data or "embedded sample_micrographs",
    })


if __name__ == "__main__":
    import fire

    fire.Fire({"pipeline": pipeline})
