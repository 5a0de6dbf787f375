"""Custom Keras layers, one class per file (file name = snake_case of the class)."""

from keras_forensics.layers.azimuthal_spectrum import AzimuthalSpectrum
from keras_forensics.layers.cosine_distance import CosineDistance
from keras_forensics.layers.dihedral_orbit import DihedralOrbit
from keras_forensics.layers.gem_pooling import GeMPooling
from keras_forensics.layers.image_pool import ImagePool
from keras_forensics.layers.local_response_normalization import LocalResponseNormalization
from keras_forensics.layers.log_spectrum import LogSpectrum
from keras_forensics.layers.noise_injection import NoiseInjection
from keras_forensics.layers.orbit_mean import OrbitMean
from keras_forensics.layers.pixel_normalization import PixelNormalization
from keras_forensics.layers.reflection_padding_2d import ReflectionPadding2D
from keras_forensics.layers.weighted_l1_distance import WeightedL1Distance

__all__ = [
    "AzimuthalSpectrum", "CosineDistance", "DihedralOrbit", "GeMPooling", "ImagePool",
    "LocalResponseNormalization", "LogSpectrum", "NoiseInjection", "OrbitMean", "PixelNormalization",
    "ReflectionPadding2D", "WeightedL1Distance",
]
