"""Why the Siamese network thinks two panels are the same: similarity maps (Grad-CAM).

Cicconet et al. name this as future work. `similarity_map(model, a, b)` is gradient-weighted
class activation mapping (Grad-CAM, Selvaraju et al., ICCV 2017) with the pair's similarity
s = -f(a, b) as the "class score": for each panel, the activation maps A_k of the embedding's last
convolutional stage are weighted by the spatial mean of ds/dA_k and summed, negative evidence is
cut (ReLU), and the map is upsampled to the network input and mapped back through the shared
preprocessing (centred square padding, resize) to the panel's own pixels. Bright = the parts of
this panel whose features pull the pair together.

Without a Keras model (a scorer loaded from a SavedModel exposes only its signatures), the
activations are out of reach; `saliency_map` is the fallback: |d s / d input| * input, smoothed,
through the SavedModel's differentiable `embed` function.
"""

from __future__ import annotations

import numpy as np


def _parts(model):
    """(embedding, distance or None) of a scorer, a triplet / pair model or an embedding model."""
    if hasattr(model, "weighted_embed"):  # a SiameseScorer
        if model.embedding is None:
            raise ValueError(f"{model.source} has no Keras model (a SavedModel): Grad-CAM needs the "
                             "activations; use saliency_map, or load a run dir / .keras file")
        return model.embedding, model.distance
    try:
        return model.get_layer("embedding"), model.get_layer("distance")
    except ValueError:
        return model, None


def last_conv_layer(embedding) -> str:
    """Name of the last Conv2D with a kernel larger than 1x1: the last convolutional stage."""
    import keras

    names = [layer.name for layer in embedding.layers
             if isinstance(layer, keras.layers.Conv2D) and max(layer.kernel_size) > 1]
    if not names:
        raise ValueError(f"{embedding.name} has no convolution with a kernel larger than 1x1")
    return names[-1]


def similarity_map(model, a: np.ndarray, b: np.ndarray, layer: str | None = None):
    """Grad-CAM maps of panels `a` and `b` w.r.t. their similarity -f(a, b).

    Args:
        model: a `SiameseScorer` loaded from Keras, a triplet / pair model (its "embedding" and
            "distance" layers), or an embedding model alone (then f is the unweighted L1).
        a, b: panels [H, W] (any sizes) float in [0, 1].
        layer: the convolution whose activations are explained (default: `last_conv_layer`).

    Returns:
        (map_a [H_a, W_a], map_b [H_b, W_b]) float32 in [0, 1].
    """
    import keras
    import tensorflow as tf

    from keras_forensics import preprocessing

    embedding, distance = _parts(model)
    size = int(embedding.input_shape[1])
    layer = layer or last_conv_layer(embedding)
    probe = keras.Model(embedding.inputs, [embedding.get_layer(layer).output, embedding.output])
    inputs = tf.constant(preprocessing.batch([a, b], size))
    with tf.GradientTape() as tape:
        activations, vectors = probe(inputs, training=False)
        tape.watch(activations)
        similarity = -_distance(distance, vectors[0:1], vectors[1:2])
    gradients = tape.gradient(similarity, activations)
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    cams = tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1, keepdims=True))
    cams = tf.image.resize(cams, (size, size), method="bilinear").numpy()[..., 0]
    return _to_panel(_normalise(cams[0]), a.shape), _to_panel(_normalise(cams[1]), b.shape)


def saliency_map(scorer, a: np.ndarray, b: np.ndarray, smoothing: float = 4.0):
    """Input-gradient maps |ds/dx| * x of a scorer without Keras parts (e.g. a SavedModel).

    Same returns as `similarity_map`. The maps are blurred with a Gaussian of `smoothing`
    pixels (at the 128x128 input) so they read as regions, not speckle.
    """
    import tensorflow as tf
    from scipy.ndimage import gaussian_filter

    from keras_forensics import preprocessing

    inputs = tf.constant(preprocessing.batch([a, b], scorer.input_size))
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        vectors = scorer.weighted_embed(inputs)
        similarity = -tf.reduce_sum(tf.abs(vectors[0] - vectors[1]))
    gradients = tape.gradient(similarity, inputs).numpy()[..., 0]
    maps = [gaussian_filter(np.abs(g * x), smoothing) for g, x in zip(gradients, inputs.numpy()[..., 0])]
    return _to_panel(_normalise(maps[0]), a.shape), _to_panel(_normalise(maps[1]), b.shape)


def explain_pair(scorer, a, b):
    """(map_a, map_b, method): Grad-CAM when the scorer has its Keras parts, else the saliency fallback."""
    if getattr(scorer, "embedding", None) is not None:
        return (*similarity_map(scorer, a, b), "Grad-CAM")
    return (*saliency_map(scorer, a, b), "input-gradient saliency")


def _distance(distance, a, b):
    import tensorflow as tf

    if distance is None:
        return tf.reduce_sum(tf.abs(a - b))
    return tf.reduce_sum(distance([a, b]))


def _normalise(cam: np.ndarray) -> np.ndarray:
    cam = np.asarray(cam, np.float32)
    top = float(cam.max())
    return cam / top if top > 0 else np.zeros_like(cam)


def _to_panel(cam: np.ndarray, shape) -> np.ndarray:
    """Undo the preprocessing: crop the panel's area out of the padded square, resize to the panel."""
    import cv2

    height, width = shape[:2]
    side = max(height, width)
    size = cam.shape[0]
    top = (side - height) // 2 * size / side
    left = (side - width) // 2 * size / side
    crop = cam[int(round(top)):max(int(round(top + height * size / side)), int(round(top)) + 1),
               int(round(left)):max(int(round(left + width * size / side)), int(round(left)) + 1)]
    return np.clip(cv2.resize(crop, (width, height), interpolation=cv2.INTER_LINEAR), 0, 1).astype(np.float32)


def heat_overlay(image: np.ndarray, cam: np.ndarray, strength: float = 0.5) -> np.ndarray:
    """An RGB uint8 picture: the panel in gray with the map in the 'jet' colour map on top."""
    import cv2

    from keras_forensics.screening.verify import to_uint8

    gray = cv2.cvtColor(to_uint8(image), cv2.COLOR_GRAY2RGB).astype(np.float32)
    colour = cv2.applyColorMap(np.uint8(np.clip(cam, 0, 1) * 255), cv2.COLORMAP_JET)[..., ::-1].astype(np.float32)
    alpha = strength * np.clip(cam, 0, 1)[..., None]
    return np.clip(gray * (1 - alpha) + colour * alpha, 0, 255).astype(np.uint8)
