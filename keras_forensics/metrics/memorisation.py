"""Does a generator copy its training images? Nearest-neighbour distances to the training set.

A generator that memorised its training tiles produces images much closer to some training tile
than a new real image would be. So: for each generated image, the distance to its nearest
training image; for each held-out real image (never trained on), the same; and the ratio of the
medians. A ratio near 1 (or above) means the generated images are no closer to the training set
than unseen real ones are; a ratio well below 1 means copies (or near-copies) of training tiles.

The distance is the root-mean-square pixel difference (in the [0, 1] intensity unit) between the
images reduced to `size` x `size` by area averaging (32 x 32 by default, i.e. 4 x 4 means of a
128 px tile): small shifts and pixel noise then barely count, while the layout of bands and
lanes does. The training set is searched together with its left-right mirror images, since the
trainer shows the generator flipped tiles too.

Reference for the test: the nearest-neighbour memorisation checks of Brock, Donahue, Simonyan
(BigGAN, ICLR 2019) and Karras et al. (ProGAN, ICLR 2018), here made a number by comparing with
held-out real images (as in Meehan, Chaudhuri, Dasgupta, AISTATS 2020, "A non-parametric test
to detect data-copying in generative models").
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_forensics.errors import ForensicsError


def _as_images(images) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[0] == 0:
        raise ForensicsError(f"expected a non-empty set of images [N, H, W(, C)], got shape {images.shape}")
    return images


def reduce_images(images, size: int = 32, mirror: bool = False, batch_size: int = 512) -> tf.Tensor:
    """[N, H, W(, C)] in [0, 1] (floats, or uint8 / uint16 scaled by their maximum) -> [N, size *
    size * C] area means (H and W at least `size`), of the left-right mirror images with `mirror`.
    Converted to float in batches, so a large uint8 training set never exists as float32 whole."""
    images = _as_images(images)
    if min(images.shape[1], images.shape[2]) < size:
        raise ForensicsError(f"images of {images.shape[1]}x{images.shape[2]} px are smaller than the "
                             f"{size} px comparison size")
    scale = 1.0 / np.iinfo(images.dtype).max if np.issubdtype(images.dtype, np.integer) else 1.0
    vectors = []
    for start in range(0, len(images), batch_size):
        batch = tf.cast(images[start:start + batch_size], tf.float32) * scale
        if mirror:
            batch = batch[:, :, ::-1, :]
        small = tf.image.resize(batch, [size, size], method="area")
        vectors.append(tf.reshape(small, [small.shape[0], -1]))
    return tf.concat(vectors, axis=0)


def nearest_distances(queries, references, size: int = 32, mirrored: bool = True,
                      batch_size: int = 256) -> np.ndarray:
    """For each query image, the RMS difference to its nearest reference image (and, with
    `mirrored`, to the references' left-right mirror images), both reduced by `reduce_images`: [N]."""
    reference_vectors = reduce_images(references, size)
    if mirrored:
        reference_vectors = tf.concat([reference_vectors, reduce_images(references, size, mirror=True)], axis=0)
    queries = reduce_images(queries, size)
    if queries.shape[1] != reference_vectors.shape[1]:
        raise ForensicsError(f"query and reference images differ in shape: {queries.shape} vs {reference_vectors.shape}")
    reference_norms = tf.reduce_sum(tf.square(reference_vectors), axis=1)
    nearest = []
    for start in range(0, queries.shape[0], batch_size):
        batch = queries[start:start + batch_size]
        squared = (tf.reduce_sum(tf.square(batch), axis=1, keepdims=True) + reference_norms[None, :]
                   - 2.0 * tf.matmul(batch, reference_vectors, transpose_b=True))
        nearest.append(tf.reduce_min(squared, axis=1))
    squared = tf.maximum(tf.concat(nearest, axis=0), 0.0)  # rounding can make an exact copy slightly < 0
    return np.sqrt(squared.numpy() / queries.shape[1])


def memorisation(generated, held_out, train, size: int = 32, mirrored: bool = True) -> dict[str, float]:
    """The memorisation ratio of `generated` images against the `train` images they were
    trained on, measured against `held_out` real images:

    * memorisation_ratio: median nearest-training-image distance of the generated images over
      that of the held-out real ones (>= about 1: no closer than unseen real images; << 1: copies);
    * nearest_train_distance_generated / _held_out: the two medians (RMS, [0, 1] units);
    * closer_than_held_out_fraction: the share of generated images nearer to a training image
      than the 5th percentile of the held-out images' distances (about 0.05 for a generator that
      does not copy).
    """
    generated_distances = nearest_distances(generated, train, size, mirrored)
    held_out_distances = nearest_distances(held_out, train, size, mirrored)
    held_out_median = float(np.median(held_out_distances))
    if held_out_median <= 0:
        raise ForensicsError("the held-out images are copies of training images (distance 0): no reference")
    close = float(np.percentile(held_out_distances, 5))
    return {"memorisation_ratio": float(np.median(generated_distances)) / held_out_median,
            "nearest_train_distance_generated": float(np.median(generated_distances)),
            "nearest_train_distance_held_out": held_out_median,
            "closer_than_held_out_fraction": float(np.mean(generated_distances < close))}
