"""Custom Keras layers, one class per file (file name = snake_case of the class)."""

from keras_forensics.layers.local_response_normalization import LocalResponseNormalization
from keras_forensics.layers.pixel_normalization import PixelNormalization
from keras_forensics.layers.weighted_l1_distance import WeightedL1Distance

__all__ = ["LocalResponseNormalization", "PixelNormalization", "WeightedL1Distance"]
