"""The distance of the copy-detection descriptor: cosine distance scaled so that f <= 1 means "same"."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_forensics")
class CosineDistance(keras.layers.Layer):
    """f(a, b) = (1 - cos(a, b)) / (1 - threshold), for L2-normalised embeddings a, b.

    The public contract of the Siamese model holds: two images are "the same" when f <= 1, i.e.
    when their cosine similarity is at least `threshold`, and p_same = sigmoid(sharpness (1 - f)).
    Both numbers are calibrated on validation pairs after training (`training.descriptor.calibrate`)
    and given to the layer; the gradient never changes them.

    For unit vectors |a - b|^2 = 2 (1 - cos), so `weight(x) = x / sqrt(2 (1 - threshold))` maps
    embeddings to vectors whose squared L2 distance is f: a search under f is plain squared-L2
    nearest-neighbour search (FAISS METRIC_L2). `metric` names that for the screening code.

    Args:
        threshold: the cosine similarity at which f = 1 (in (-1, 1)).
        sharpness: slope of p_same at the threshold.

    Example:
        >>> distance = CosineDistance(threshold=0.5)
        >>> distance([keras.ops.ones((1, 4)) / 2, keras.ops.ones((1, 4)) / 2])  # [0.]
    """

    metric = "squared_l2"

    def __init__(self, threshold=0.5, sharpness=1.0, **kwargs):
        super().__init__(**kwargs)
        if not -1.0 < threshold < 1.0:
            raise ValueError(f"threshold must lie in (-1, 1), got {threshold}")
        self.threshold = threshold
        self.sharpness = sharpness

    def build(self, input_shape):
        self.cosine_threshold = self.add_weight(
            name="cosine_threshold", shape=(), trainable=False,
            initializer=keras.initializers.Constant(self.threshold))
        self.p_same_sharpness = self.add_weight(
            name="p_same_sharpness", shape=(), trainable=False,
            initializer=keras.initializers.Constant(self.sharpness))

    def weight(self, embeddings):
        """Embeddings scaled so that squared L2 distances between them equal f."""
        return embeddings * ops.rsqrt(2.0 * (1.0 - ops.cast(self.cosine_threshold, embeddings.dtype)))

    def call(self, inputs):
        a, b = inputs
        cosine = ops.sum(a * b, axis=-1)
        return (1.0 - cosine) / (1.0 - ops.cast(self.cosine_threshold, a.dtype))

    def compute_output_shape(self, input_shape):
        return input_shape[0][:-1]

    def get_config(self):
        config = super().get_config()
        config.update(threshold=float(self.threshold), sharpness=float(self.sharpness))
        return config

