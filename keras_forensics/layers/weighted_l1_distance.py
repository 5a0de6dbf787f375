"""The learned metric of Cicconet et al.: f(a, b) = sum_k alpha_k |a_k - b_k|."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_forensics")
class WeightedL1Distance(keras.layers.Layer):
    """Alpha-weighted L1 distance between two embeddings, with alpha kept non-negative.

    `call([a, b])` returns f(a, b) = sum_k alpha_k |a_k - b_k| with shape [B]. Two images are
    "the same" when f <= 1, i.e. sigmoid(1 - f) >= 0.5.

    alpha is parameterised as softplus(w) with a trainable w, so alpha_k > 0 always. The original
    TF1 code left alpha unconstrained (initialised from a normal distribution with std 0.01), so
    some alpha_k could turn negative and f was not a metric: a pair could have a negative
    "distance" and the triangle inequality failed. With alpha >= 0, f is a true (pseudo-)metric and
    f(a, b) = ||alpha * a - alpha * b||_1, so `weight(x) = alpha * x` turns a search under f into
    plain L1 nearest-neighbour search (FAISS METRIC_L1), which the screening index relies on.

    Args:
        initial_alpha: the value every alpha_k starts from (> 0).

    Example:
        >>> distance = WeightedL1Distance()
        >>> distance([keras.ops.zeros((2, 128)), keras.ops.ones((2, 128))])  # 128 * 0.01 each

    Reference:
        Cicconet et al., Image Forensics, eq. (1); ImageForensics V01/Models.py ("alpha").
    """

    def __init__(self, initial_alpha=0.01, **kwargs):
        super().__init__(**kwargs)
        if initial_alpha <= 0:
            raise ValueError(f"initial_alpha must be positive, got {initial_alpha}")
        self.initial_alpha = initial_alpha

    def build(self, input_shape):
        dim = input_shape[0][-1]
        # softplus^-1(initial_alpha), so that alpha starts at initial_alpha exactly.
        raw = float(ops.convert_to_numpy(ops.log(ops.expm1(ops.convert_to_tensor(self.initial_alpha)))))
        self.raw_alpha = self.add_weight(
            name="raw_alpha", shape=(dim,), initializer=keras.initializers.Constant(raw), trainable=True
        )

    @property
    def alpha(self):
        """The non-negative weights, [D]."""
        return ops.softplus(self.raw_alpha)

    def weight(self, embeddings):
        """alpha * embeddings: L1 distances between these equal f."""
        return embeddings * self.alpha

    def call(self, inputs):
        a, b = inputs
        return ops.sum(ops.abs(a - b) * self.alpha, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape[0][:-1]

    def get_config(self):
        config = super().get_config()
        config.update(initial_alpha=self.initial_alpha)
        return config
