"""Reflection padding: the border handling of the CycleGAN / Johnson et al. ResNet generator."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_forensics")
class ReflectionPadding2D(keras.layers.Layer):
    """Pads height and width of [B, H, W, C] by mirroring the image at its border (no edge pixel
    repeated), so convolutions near the border see image-like content rather than zeros, which
    would otherwise show as dark frames in generated images.

    Args:
        padding: pixels added on each side (int, or (height, width)).

    Example:
        >>> ReflectionPadding2D(3)(keras.ops.ones((1, 16, 16, 8))).shape  # (1, 22, 22, 8)

    Reference:
        Zhu, Park, Isola, Efros. Unpaired image-to-image translation using cycle-consistent
        adversarial networks. ICCV 2017 (github.com/junyanz/pytorch-CycleGAN-and-pix2pix,
        ResnetGenerator with padding_type="reflect").
    """

    def __init__(self, padding=1, **kwargs):
        super().__init__(**kwargs)
        self.padding = tuple(padding) if isinstance(padding, (list, tuple)) else (padding, padding)

    def call(self, inputs):
        height, width = self.padding
        return ops.pad(inputs, [[0, 0], [height, height], [width, width], [0, 0]], mode="reflect")

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        grow = lambda size, pad: None if size is None else size + 2 * pad  # noqa: E731
        return (batch, grow(height, self.padding[0]), grow(width, self.padding[1]), channels)

    def get_config(self):
        config = super().get_config()
        config.update(padding=self.padding)
        return config
