"""The azimuthally averaged 1-D power spectrum of an image, as a layer (the spectral baseline's features)."""

import keras
import tensorflow as tf

from keras_forensics.ops import spectrum


@keras.saving.register_keras_serializable(package="keras_forensics")
class AzimuthalSpectrum(keras.layers.Layer):
    """[B, H, W, 1] images -> [B, num_bins] log10 power averaged over rings of equal frequency.

    Bin 0 is the lowest frequency, the last bin the Nyquist frequency of the shorter side
    (`keras_forensics.spectrum.azimuthal_power_spectrum`). Durall et al. feed this profile to a
    logistic regression; here it is the input of `models.detector.build_spectral_baseline`.

    Args:
        num_bins: number of rings (0 = half the shorter side).
        window: apply a 2-D Hann window before the FFT.
        relative: subtract each profile's mean, i.e. divide the power by its geometric mean, so
            the profile does not move with the image's contrast (Durall et al. normalise it too).

    Example:
        >>> AzimuthalSpectrum()(keras.ops.ones((2, 64, 64, 1))).shape
        TensorShape([2, 32])

    Reference:
        Durall, Keuper, Keuper. Watch your up-convolution: CNN based generative deep neural
        networks are failing to reproduce spectral distributions. CVPR 2020.
    """

    def __init__(self, num_bins=0, window=True, relative=False, **kwargs):
        super().__init__(**kwargs)
        self.num_bins = num_bins
        self.window = window
        self.relative = relative

    def _bins(self, input_shape):
        return self.num_bins or min(input_shape[1], input_shape[2]) // 2

    def call(self, inputs):
        profile = spectrum.azimuthal_power_spectrum(
            tf.cast(inputs, tf.float32), self._bins(inputs.shape), window=self.window, log=True
        )
        if self.relative:
            profile = profile - tf.reduce_mean(profile, axis=-1, keepdims=True)
        return profile

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self._bins(input_shape))

    def get_config(self):
        config = super().get_config()
        config.update(num_bins=self.num_bins, window=self.window, relative=self.relative)
        return config
