"""Generalised-mean pooling: the global pooling of copy-detection descriptors (SSCD, ISC 2021)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_forensics")
class GeMPooling(keras.layers.Layer):
    """Global generalised mean over height and width: (mean x^p)^(1/p), per channel.

    p = 1 is average pooling and p -> infinity max pooling; p is learnt (kept >= 1). Inputs are
    clipped at `epsilon` first, so the power is defined (the features follow a ReLU-like
    activation in every backbone used here).

    Args:
        p: initial exponent (Radenovic et al. and SSCD use 3).
        trainable_p: learn p with the network.
        epsilon: floor of the features before the power.

    Example:
        >>> GeMPooling()(keras.ops.ones((2, 4, 4, 8)))  # -> [2, 8] of ones

    Reference:
        Radenovic, Tolias, Chum. Fine-tuning CNN image retrieval with no human annotation. TPAMI 2018;
        Pizzi et al. A self-supervised descriptor for image copy detection (SSCD). CVPR 2022.
    """

    def __init__(self, p=3.0, trainable_p=True, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        if p < 1:
            raise ValueError(f"p must be at least 1, got {p}")
        self.p = p
        self.trainable_p = trainable_p
        self.epsilon = epsilon

    def build(self, input_shape):
        self.exponent = self.add_weight(name="p", shape=(), initializer=keras.initializers.Constant(self.p),
                                        trainable=self.trainable_p)

    def call(self, inputs):
        p = ops.maximum(ops.cast(self.exponent, inputs.dtype), 1.0)
        pooled = ops.mean(ops.power(ops.maximum(inputs, self.epsilon), p), axis=(1, 2))
        return ops.power(pooled, 1.0 / p)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(p=self.p, trainable_p=self.trainable_p, epsilon=self.epsilon)
        return config
