"""The centred log power spectrum of an image, as a layer: the detector's optional second branch."""

import keras
import tensorflow as tf

from keras_forensics.ops import spectrum


@keras.saving.register_keras_serializable(package="keras_forensics")
class LogSpectrum(keras.layers.Layer):
    """[B, H, W, 1] images -> [B, H, W, 1] centred log(1 + |FFT|^2), computed in the graph.

    The image mean is removed and a 2-D Hann window applied first (`keras_forensics.spectrum`),
    so the borders do not paint a cross through the spectrum. With `standardize`, each spectrum
    is shifted and scaled to zero mean and unit variance, which keeps the branch's inputs in a
    range a convolution learns from whatever the image contrast.

    Args:
        window: apply the Hann window.
        standardize: per-image zero mean, unit variance.
        epsilon: added to the variance.

    Example:
        >>> LogSpectrum()(keras.ops.ones((2, 64, 64, 1))).shape
        TensorShape([2, 64, 64, 1])

    Reference:
        Frank, Eisenhofer, Schoenherr, Fischer, Kolossa, Holz. Leveraging frequency analysis for
        deep fake image recognition. ICML 2020. Wang et al. 2022, Patterns, Fig. 1E.
    """

    def __init__(self, window=True, standardize=True, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.window = window
        self.standardize = standardize
        self.epsilon = epsilon

    def call(self, inputs):
        log_power = spectrum.log_spectrum_2d(tf.cast(inputs, tf.float32), self.window)[..., None]
        if self.standardize:
            mean, variance = tf.nn.moments(log_power, axes=[1, 2, 3], keepdims=True)
            log_power = (log_power - mean) * tf.math.rsqrt(variance + self.epsilon)
        return log_power

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:3]) + (1,)

    def get_config(self):
        config = super().get_config()
        config.update(window=self.window, standardize=self.standardize, epsilon=self.epsilon)
        return config
