"""Real-vs-synthetic patch classifiers: the CNN detector and the spectral baseline.

* `build_detector(config)`: grayscale patch [S, S, 1] -> p_fake (functional model "detector").
  Per-image normalisation (so brightness and contrast are no cue), a stem of two 3x3 convolutions
  at full resolution (GAN up-sampling traces live in the highest frequencies, which early
  down-sampling would throw away; Frank et al. 2020), residual stages that halve the resolution,
  global average pooling and a sigmoid unit. With `spectrum_branch`, a second branch reads the
  patch's centred log spectrum (`LogSpectrum`, computed in the graph) through strided
  convolutions and a dense layer -- flattened rather than pooled, because *where* a spectral
  peak sits is its frequency -- and is concatenated before the classifier.
* `build_spectral_baseline(config)`: patch -> azimuthal 1-D log spectrum -> standardisation ->
  logistic regression (Durall et al. 2020), the reference the CNN must beat.

Both take one input named "image" and give one output named "p_fake", so the same inference,
evaluation and export code serves both.

References:
    Wang, Wang, Zhang, Owens, Efros. CNN-generated images are surprisingly easy to spot... for
    now. CVPR 2020.
    Wang et al. Deepfakes: a new threat to image fabrication in scientific publications?
    Patterns 2022 (their detector: AUC 0.8542 on synthetic western blots).
    Mandelli, Cozzolino, Cannas, Cardenuto, Moreira, Bestagini, Scheirer, Rocha, Verdoliva,
    Tubaro, Delp. Forensic analysis of synthetically generated western blot images. IEEE Access
    2022.
    Durall, Keuper, Keuper. Watch your up-convolution. CVPR 2020.
    Frank et al. Leveraging frequency analysis for deep fake image recognition. ICML 2020.
"""

from __future__ import annotations

import keras
from keras import layers

from keras_forensics.config import DetectorConfig
from keras_forensics.layers import AzimuthalSpectrum, LogSpectrum, PixelNormalization


def _conv_bn_relu(x, filters, config: DetectorConfig, name: str, strides: int = 1):
    x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=config.batch_norm_momentum, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _residual_block(x, filters, config: DetectorConfig, name: str, strides: int):
    """Two 3x3 convolutions with a (projected, when the shape changes) shortcut (He et al. 2016)."""
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False, name=f"{name}_proj")(x)
        shortcut = layers.BatchNormalization(momentum=config.batch_norm_momentum,
                                             name=f"{name}_proj_bn")(shortcut)
    x = _conv_bn_relu(x, filters, config, f"{name}_a", strides)
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_b_conv")(x)
    x = layers.BatchNormalization(momentum=config.batch_norm_momentum, name=f"{name}_b_bn")(x)
    x = layers.Add(name=f"{name}_add")([x, shortcut])
    return layers.ReLU(name=f"{name}_out")(x)


def _image_input(config: DetectorConfig):
    return keras.Input((config.input_size, config.input_size, 1), name="image")


def _head(x, name: str = "p_fake"):
    logit = layers.Dense(1, name="logit")(x)
    # float32 output whatever the compute dtype, so mixed precision cannot round p_fake.
    return layers.Activation("sigmoid", dtype="float32", name=name)(logit)


def build_detector(config: DetectorConfig | None = None, name: str = "detector") -> keras.Model:
    """The CNN: [B, S, S, 1] in [0, 1] -> p_fake [B, 1]. Every size comes from `config`."""
    config = config or DetectorConfig()
    inputs = _image_input(config)
    x = PixelNormalization(name="pixel_norm")(inputs) if config.pixel_normalization else inputs
    x = _conv_bn_relu(x, config.filters[0], config, "stem1")
    x = _conv_bn_relu(x, config.filters[0], config, "stem2")
    for stage, filters in enumerate(config.filters[1:], start=1):
        for block in range(config.blocks_per_stage):
            x = _residual_block(x, filters, config, f"stage{stage}_block{block}", 2 if block == 0 else 1)
    features = [layers.GlobalAveragePooling2D(name="pool")(x)]
    if config.spectrum_branch:
        s = LogSpectrum(name="log_spectrum")(inputs)
        for index, filters in enumerate(config.spectrum_filters):
            s = _conv_bn_relu(s, filters, config, f"spectrum{index}", strides=2)
        s = layers.Flatten(name="spectrum_flatten")(s)
        features.append(layers.Dense(64, activation="relu", name="spectrum_dense")(s))
    x = features[0] if len(features) == 1 else layers.Concatenate(name="features")(features)
    if config.dropout:
        x = layers.Dropout(config.dropout, name="dropout")(x)
    return keras.Model(inputs, _head(x), name=name)


def build_spectral_baseline(config: DetectorConfig | None = None, name: str = "spectral_baseline") -> keras.Model:
    """Logistic regression on the relative 1-D log power spectrum: [B, S, S, 1] -> p_fake [B, 1].

    Call `adapt_spectral_baseline` on training patches before fitting, so the features are
    standardised (the Normalization layer keeps the statistics inside the saved model).
    """
    config = config or DetectorConfig(kind="spectral")
    inputs = _image_input(config)
    x = AzimuthalSpectrum(config.spectral_bins, relative=True, name="azimuthal_spectrum")(inputs)
    x = layers.Normalization(name="feature_norm")(x)
    logit = layers.Dense(1, kernel_regularizer=keras.regularizers.L2(config.l2), name="logit")(x)
    return keras.Model(inputs, layers.Activation("sigmoid", dtype="float32", name="p_fake")(logit), name=name)


def adapt_spectral_baseline(model: keras.Model, images, batch_size: int = 256) -> None:
    """Fit the baseline's feature standardisation to `images` [N, S, S, 1]."""
    features = keras.Model(model.input, model.get_layer("azimuthal_spectrum").output)
    model.get_layer("feature_norm").adapt(features.predict(images, batch_size=batch_size, verbose=0))


def build(config: DetectorConfig) -> keras.Model:
    """The model of `config.kind`."""
    return build_detector(config) if config.kind == "cnn" else build_spectral_baseline(config)
