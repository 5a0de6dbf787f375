"""The 8 orientations of a square image batch, for an embedding that is invariant to them."""

import keras
from keras import ops

#: (quarter turns, mirrored) of each orientation, the image as it is first; the same order as
#: `keras_forensics.screening.model.DIHEDRAL`.
ORIENTATIONS = tuple((turns, mirrored) for mirrored in (False, True) for turns in range(4))


def _turn(images, turns: int):
    """Counter-clockwise quarter turns of [B, S, S, C] images (as np.rot90 on axes (1, 2))."""
    for _ in range(turns):
        images = ops.flip(ops.transpose(images, (0, 2, 1, 3)), axis=1)
    return images


@keras.saving.register_keras_serializable(package="keras_forensics")
class DihedralOrbit(keras.layers.Layer):
    """[B, S, S, C] -> [8 B, S, S, C]: every image in each of its 8 orientations (quarter turns of
    it and of its mirror image), orientation-major: rows k B ... (k + 1) B - 1 are orientation k.

    Followed by an embedding and `OrbitMean`, it makes the embedding exactly invariant to turns
    and mirroring: the orbit of a turned image is the same set of 8 images.

    Example:
        >>> DihedralOrbit()(keras.ops.zeros((2, 16, 16, 1))).shape  # (16, 16, 16, 1)
    """

    def call(self, inputs):
        mirrored = ops.flip(inputs, axis=2)
        return ops.concatenate([_turn(mirrored if m else inputs, t) for t, m in ORIENTATIONS], axis=0)

    def compute_output_shape(self, input_shape):
        batch = None if input_shape[0] is None else 8 * input_shape[0]
        return (batch, *input_shape[1:])
