"""Per-pixel noise added to a generator's feature maps, with a learnt strength per channel."""

import keras
import tensorflow as tf

#: Multipliers of the integer hash (odd 32-bit constants: Knuth's golden ratio and MurmurHash3's).
_GOLDEN = 0x9E3779B1
_MIX_1 = 0x85EBCA6B
_MIX_2 = 0xC2B2AE35


def _mix(bits):
    """MurmurHash3's 32-bit finaliser: every input bit flips about half of the output bits."""
    bits = tf.bitwise.bitwise_xor(bits, tf.bitwise.right_shift(bits, tf.constant(16, tf.uint32)))
    bits = bits * tf.constant(_MIX_1, tf.uint32)
    bits = tf.bitwise.bitwise_xor(bits, tf.bitwise.right_shift(bits, tf.constant(13, tf.uint32)))
    bits = bits * tf.constant(_MIX_2, tf.uint32)
    return tf.bitwise.bitwise_xor(bits, tf.bitwise.right_shift(bits, tf.constant(16, tf.uint32)))


def _unit_interval(bits):
    """uint32 -> float32 in (0, 1) (24 bits, never exactly 0 for the logarithm)."""
    return (tf.cast(tf.bitwise.right_shift(bits, tf.constant(8, tf.uint32)), tf.float32) + 0.5) / 16777216.0


def hashed_normal(latent, height: int, width: int, salt: int):
    """Standard normal noise [B, height, width, 1] that is a fixed function of each sample's latent
    vector (and of `salt`): a hash of the latent's bits, then of the pixel index, then Box-Muller."""
    words = tf.bitcast(tf.cast(latent, tf.float32), tf.uint32)  # [B, D]
    position = tf.cast(tf.range(tf.shape(words)[1]), tf.uint32) * tf.constant(_GOLDEN, tf.uint32)
    # Mix each word with its position, then combine: any change of any coordinate changes the seed.
    mixed = _mix(words + position[None, :])
    total = tf.reduce_sum(tf.cast(mixed, tf.int64), axis=1) % (2 ** 32)  # an int64 sum of D words cannot wrap
    sample_seed = _mix(_mix(tf.cast(total, tf.uint32)) + tf.constant(salt % 2 ** 32, tf.uint32))
    pixels = tf.cast(tf.range(height * width), tf.uint32) * tf.constant(2, tf.uint32)
    first = _mix(sample_seed[:, None] + pixels[None, :] * tf.constant(_GOLDEN, tf.uint32))
    second = _mix(first + tf.constant(_MIX_1, tf.uint32))
    radius = tf.sqrt(-2.0 * tf.math.log(_unit_interval(first)))
    normal = radius * tf.cos(6.283185307179586 * _unit_interval(second))
    return tf.reshape(normal, [-1, height, width, 1])


@keras.saving.register_keras_serializable(package="keras_forensics")
class NoiseInjection(keras.layers.Layer):
    """features + strength * noise: one noise map per sample, [B, H, W, 1], scaled per channel by
    a learnt `strength` [C] that starts at `initial_strength` (0: the layer starts as the identity
    and the generator learns how much fine, unstructured detail each channel needs).

    The noise is a deterministic function of the sample's latent vector (a hash of its bits and
    of the pixel position, mixed with `salt` so that every layer draws its own map), not a draw
    from a random generator: the generator stays a function of its input, so the same noise
    vector gives the same image in training, in `generate` and in the exported SavedModel, and
    the export's reload check holds. It is standard normal and uncorrelated between pixels,
    samples and salts.

    Inputs: [features [B, H, W, C], latent [B, D]]. The arithmetic is float32; the output has
    the features' dtype.

    Args:
        salt: an integer that tells this layer's noise from that of other layers.
        initial_strength: the starting value of every channel's strength.

    Example:
        >>> latent = keras.Input((128,))
        >>> x = keras.layers.Reshape((4, 4, 8))(keras.layers.Dense(128)(latent))
        >>> x = NoiseInjection(salt=1)([x, latent])

    Reference:
        Karras, Laine, Aila. A style-based generator architecture for generative adversarial
        networks. CVPR 2019 (per-pixel noise inputs with learnt per-channel scaling factors).
    """

    def __init__(self, salt=0, initial_strength=0.0, **kwargs):
        kwargs.pop("autocast", None)  # the hash needs the latent's float32 bits, never a cast copy
        super().__init__(autocast=False, **kwargs)
        self.salt = int(salt)
        self.initial_strength = float(initial_strength)

    def build(self, input_shape):
        features_shape, _ = input_shape
        self.strength = self.add_weight(name="strength", shape=(features_shape[-1],),
                                        initializer=keras.initializers.Constant(self.initial_strength),
                                        trainable=True, dtype="float32")

    def call(self, inputs):
        features, latent = inputs
        noise = hashed_normal(latent, features.shape[1], features.shape[2], self.salt)
        out = tf.cast(features, tf.float32) + noise * tf.cast(self.strength, tf.float32)
        return tf.cast(out, features.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        config = super().get_config()
        config.update(salt=self.salt, initial_strength=self.initial_strength)
        return config
