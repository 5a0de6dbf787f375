"""The mean over the orientations `DihedralOrbit` made, re-normalised to unit length."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_forensics")
class OrbitMean(keras.layers.Layer):
    """[size B, D] (orientation-major, as `DihedralOrbit` orders them) -> [B, D]: the mean over the
    `size` orientations of each image, divided by its L2 norm.

    Args:
        size: orientations per image (8 for the dihedral group of the square).

    Example:
        >>> OrbitMean(2)(keras.ops.ones((4, 3))).shape  # (2, 3)
    """

    def __init__(self, size=8, **kwargs):
        super().__init__(**kwargs)
        self.size = size

    def call(self, inputs):
        grouped = ops.reshape(inputs, (self.size, -1, ops.shape(inputs)[-1]))
        mean = ops.mean(grouped, axis=0)
        return mean / ops.maximum(ops.norm(mean, axis=-1, keepdims=True), 1e-12)

    def compute_output_shape(self, input_shape):
        batch = None if input_shape[0] is None else input_shape[0] // self.size
        return (batch, input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(size=self.size)
        return config
