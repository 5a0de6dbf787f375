"""Per-image intensity normalisation: the first operation of Cicconet et al.'s network."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_forensics")
class PixelNormalization(keras.layers.Layer):
    """Subtract each image's mean and divide by its standard deviation (over height, width and
    channels), so that the network ignores global brightness and contrast changes.

    Args:
        epsilon: added to the variance (the original used 1e-6); a flat image maps to zeros.

    Example:
        >>> PixelNormalization()(keras.ops.ones((2, 4, 4, 1)))  # flat images -> zeros

    Reference:
        Cicconet et al., Image Forensics (ImageForensics V01/Models.py, pixel_intensity_normalization).
    """

    def __init__(self, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, inputs):
        axes = list(range(1, len(inputs.shape)))
        mean = ops.mean(inputs, axis=axes, keepdims=True)
        variance = ops.var(inputs, axis=axes, keepdims=True)
        return (inputs - mean) * ops.rsqrt(variance + self.epsilon)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(epsilon=self.epsilon)
        return config
