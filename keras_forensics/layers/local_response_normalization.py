"""Local response normalisation (AlexNet), as used in every stage of Cicconet et al.'s network."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_forensics")
class LocalResponseNormalization(keras.layers.Layer):
    """Wraps `tf.nn.local_response_normalization` so that it saves, loads and exports.

    Each channel is divided by `(bias + alpha * sum of squares over 2 * depth_radius + 1
    neighbouring channels) ** beta`. The defaults are TensorFlow's, which the original
    ImageForensics code used.

    Args:
        depth_radius: half-width of the channel window.
        bias: offset (usually positive to avoid dividing by 0).
        alpha: scale of the sum of squares.
        beta: exponent.

    Example:
        >>> layer = LocalResponseNormalization(depth_radius=2)
        >>> layer(keras.ops.ones((1, 8, 8, 16))).shape
        TensorShape([1, 8, 8, 16])

    Reference:
        Krizhevsky, Sutskever, Hinton. ImageNet classification with deep convolutional neural
        networks. NeurIPS 2012.
    """

    def __init__(self, depth_radius=5, bias=1.0, alpha=1.0, beta=0.5, **kwargs):
        super().__init__(**kwargs)
        self.depth_radius = depth_radius
        self.bias = bias
        self.alpha = alpha
        self.beta = beta

    def call(self, inputs):
        # TensorFlow's LRN kernel is float32/float16 only; under a bfloat16 policy compute it in float32.
        outputs = tf.nn.local_response_normalization(
            tf.cast(inputs, "float32"), depth_radius=self.depth_radius, bias=self.bias, alpha=self.alpha,
            beta=self.beta,
        )
        return tf.cast(outputs, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(depth_radius=self.depth_radius, bias=self.bias, alpha=self.alpha, beta=self.beta)
        return config
