"""keras_forensics: scientific image integrity with Keras 3 and TensorFlow.

Finds re-used figure panels with a Siamese network (Cicconet et al., *Image Forensics*), generates
realistic fakes (WGAN, CycleGAN) and detects GAN-made images (Wang et al. 2022, *Deepfakes: a new
threat to image fabrication in scientific publications?*).

Importing the package is cheap: TensorFlow is imported by the sub-modules that need it.
"""

__version__ = "0.1.0"

from keras_forensics.errors import ForensicsError, ImageReadError  # noqa: E402

__all__ = ["ForensicsError", "ImageReadError", "Screener", "__version__"]


def __getattr__(name):
    """Lazy attributes: `from keras_forensics import Screener` imports TensorFlow only then."""
    if name == "Screener":
        from keras_forensics.screening.screener import Screener

        return Screener
    raise AttributeError(f"module 'keras_forensics' has no attribute {name!r}")
