"""The Siamese duplicate detector of Cicconet et al., ported from TF1 to Keras 3.

* `build_embedding(config)`: one branch, 128x128x1 -> 128-d (functional model "embedding").
* `build_triplet_model(embedding)`: anchor / same / different -> logits 1 - f, trained with
  `TripletLoss`; this is what `train siamese` fits.
* `build_pair_model(embedding, distance)`: image_a / image_b -> {distance, p_same}, for inference.

All three share one embedding and one `WeightedL1Distance`, hence the same weights.

Port notes:
* The original keeps separate batch-norm moving statistics for each of the three branches (its
  `mmts<branch><layer>` variables) but evaluates pairs with the first two branches' statistics.
  Here one shared `BatchNormalization` sees all three branches as one joint batch (see
  `build_triplet_model`); at inference there is one set of statistics for every image, which is
  what a pair model and a search index need.
* The original sums the loss over the batch; here it is the mean (learning rates rescaled).
* alpha is kept non-negative (see `WeightedL1Distance`).

Reference: Cicconet, Elliott, Richmond, Wainstock, Walsh. Image Forensics: detecting duplication
of scientific images with manipulation-invariant image similarity. arXiv:1802.06515.
Original code: github.com/HMS-IDAC/ImageForensics (V01/Models.py, V02/Models.py).
"""

from __future__ import annotations

import keras
from keras import layers, ops

from keras_forensics.config import SiameseConfig
from keras_forensics.layers import LocalResponseNormalization, PixelNormalization, WeightedL1Distance


def _batch_norm(config: SiameseConfig, name: str):
    return layers.BatchNormalization(
        momentum=config.batch_norm_momentum, epsilon=config.batch_norm_epsilon, name=name
    )


def _lrn(config: SiameseConfig, name: str):
    return LocalResponseNormalization(
        config.lrn_depth_radius, config.lrn_bias, config.lrn_alpha, config.lrn_beta, name=name
    )


def _conv_pair(x, filters, config: SiameseConfig, name: str):
    """Two 3x3 convs with ReLU; only the second has a bias, as in the original."""
    x = layers.Conv2D(filters, config.kernel_size, padding="same", use_bias=False,
                      activation="relu", name=f"{name}_conv1")(x)
    return layers.Conv2D(filters, config.kernel_size, padding="same", activation="relu",
                         name=f"{name}_conv2")(x)


def _normalise(x, config: SiameseConfig, name: str):
    """batch norm -> LRN -> 1x1 conv (network in network), each switchable."""
    x = _batch_norm(config, f"{name}_bn")(x)
    if config.local_response_normalization:
        x = _lrn(config, f"{name}_lrn")(x)
    if config.network_in_network:
        x = layers.Conv2D(x.shape[-1], 1, use_bias=False, activation="relu", name=f"{name}_nin")(x)
    return x


def build_embedding(config: SiameseConfig | None = None, name: str = "embedding") -> keras.Model:
    """The paper's branch: [B, size, size, 1] -> [B, embedding_dim]. Every size comes from `config`."""
    config = config or SiameseConfig()
    inputs = keras.Input((config.input_size, config.input_size, 1), name="image")
    x = PixelNormalization(name="pixel_norm")(inputs) if config.pixel_normalization else inputs
    x = _batch_norm(config, "stage0_bn")(x)
    x = _conv_pair(x, config.filters[0], config, "stage0")
    x = layers.MaxPooling2D(2, padding="same", name="stage0_pool")(x)
    for index, filters in enumerate(config.filters[1:], start=1):
        stage = f"stage{index}"
        stage_input = x
        x = _normalise(x, config, stage)
        x = _conv_pair(x, filters, config, stage)
        if config.residual:
            shortcut = layers.Conv2D(filters, 1, name=f"{stage}_shortcut")(stage_input)
            x = layers.Add(name=f"{stage}_add")([x, shortcut])
        x = layers.MaxPooling2D(2, padding="same", name=f"{stage}_pool")(x)
    x = _normalise(x, config, "head")
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(config.dense_units, activation=config.dense_activation, name="dense")(x)
    x = _batch_norm(config, "dense_bn")(x)
    outputs = layers.Dense(config.embedding_dim, name="embedding_out")(x)
    return keras.Model(inputs, outputs, name=name)


def _image_input(embedding: keras.Model, name: str):
    return keras.Input(embedding.input_shape[1:], name=name)


def build_triplet_model(embedding: keras.Model, distance: WeightedL1Distance | None = None) -> keras.Model:
    """anchor, same, different -> logits [B, 2] = (1 - f(A, S), 1 - f(A, D)).

    sigmoid of the logits are the paper's sigma_same and sigma_diff.

    The three branches go through the embedding as ONE batch of 3B images, so in training every
    batch-norm layer normalises anchors, same and different images with the same statistics, the
    ones its moving averages then hold for inference. With three separate calls each branch was
    normalised by its own batch (undeformed anchors apart from deformed copies) and the network
    learned to rely on that: in the shipped run, training accuracy rose to 0.96 while inference-mode
    validation accuracy fell from 0.86 to 0.50 (every pair "same").
    """
    distance = distance or WeightedL1Distance(name="distance", dtype="float32")
    inputs = {key: _image_input(embedding, key) for key in ("anchor", "same", "different")}
    joint = ops.concatenate([inputs[key] for key in ("anchor", "same", "different")], axis=0)
    anchor, same, different = ops.split(embedding(joint), 3, axis=0)
    distances = ops.stack([distance([anchor, same]), distance([anchor, different])], axis=-1)
    # float32 whatever the global policy, so a mixed-precision run computes its loss in float32.
    logits = layers.Identity(name="logits", dtype="float32")(1.0 - distances)
    return keras.Model(inputs, logits, name="siamese_triplet")


def build_pair_model(embedding: keras.Model, distance: WeightedL1Distance) -> keras.Model:
    """image_a, image_b -> {"distance": f, "p_same": sigmoid(1 - f)}; same weights as training."""
    image_a, image_b = _image_input(embedding, "image_a"), _image_input(embedding, "image_b")
    d = distance([embedding(image_a), embedding(image_b)])
    # p_same = sigmoid(sharpness (1 - f)); the paper's distance has sharpness 1, a calibrated
    # CosineDistance (the copy-detection descriptor) its own.
    sharpness = describe(embedding, distance)["p_same_sharpness"]
    p_same = layers.Activation("sigmoid", name="p_same", dtype="float32")(sharpness * (1.0 - d))
    d = layers.Identity(name="distance_out", dtype="float32")(d)
    return keras.Model({"image_a": image_a, "image_b": image_b}, {"distance": d, "p_same": p_same},
                       name="siamese_pair")


def describe(embedding: keras.Model, distance) -> dict:
    """What the distances of (embedding, distance) mean, for code that compares weighted
    embeddings without the layers (screening, an index, a SavedModel's assets.extra/siamese.json):
    the metric between `distance.weight` vectors ("l1" for `WeightedL1Distance`, "squared_l2" for
    `CosineDistance`), the slope of p_same = sigmoid(s (1 - f)), and whether the embedding is
    invariant to quarter turns and mirroring (it pools over `DihedralOrbit`)."""
    from keras_forensics.layers import DihedralOrbit

    return {"metric": getattr(distance, "metric", "l1"),
            "p_same_sharpness": float(getattr(distance, "sharpness", 1.0)),
            "orientation_invariant": any(isinstance(layer, DihedralOrbit) for layer in embedding.layers)}


def parts_of(triplet_model: keras.Model) -> tuple[keras.Model, WeightedL1Distance]:
    """The shared embedding and distance layer inside a triplet model."""
    return triplet_model.get_layer("embedding"), triplet_model.get_layer("distance")


@keras.saving.register_keras_serializable(package="keras_forensics")
class TripletLoss(keras.losses.Loss):
    """-[log sigma_same + log(1 - sigma_diff)], averaged over the batch, computed stably.

    With logits l = 1 - f: -log sigmoid(l_s) = softplus(-l_s) and -log(1 - sigmoid(l_d)) =
    softplus(l_d); no sigmoid is ever rounded to 0 or 1 before its log. The labels are implied
    by the columns (same, different), so `y_true` is ignored.
    """

    def __init__(self, name="triplet_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        return ops.softplus(-y_pred[:, 0]) + ops.softplus(y_pred[:, 1])


@keras.saving.register_keras_serializable(package="keras_forensics")
class TripletAccuracy(keras.metrics.MeanMetricWrapper):
    """Share of sigma_same > 0.5 and sigma_diff <= 0.5 over both pairs (the original's measure)."""

    def __init__(self, name="accuracy", dtype=None):
        super().__init__(_triplet_accuracy, name=name, dtype=dtype)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


def _triplet_accuracy(y_true, y_pred):
    return (ops.cast(y_pred[:, 0] > 0.0, "float32") + ops.cast(y_pred[:, 1] <= 0.0, "float32")) / 2.0


@keras.saving.register_keras_serializable(package="keras_forensics")
class MeanSigma(keras.metrics.MeanMetricWrapper):
    """Mean sigma_same (column 0) or sigma_diff (column 1) over the batch."""

    def __init__(self, column=0, name=None, dtype=None):
        self.column = column
        super().__init__(_sigma_of_column(column), name=name or ("sigma_same", "sigma_diff")[column],
                         dtype=dtype)

    def get_config(self):
        return {"column": self.column, "name": self.name, "dtype": self.dtype}


def _sigma_of_column(column):
    def sigma(y_true, y_pred):
        return ops.sigmoid(y_pred[:, column])

    return sigma


def triplet_metrics():
    return [TripletAccuracy(), MeanSigma(0), MeanSigma(1)]


def load_parts(path) -> tuple[keras.Model, WeightedL1Distance]:
    """The float32 embedding and distance layer of a trained model: a .keras file (triplet or pair
    model), or a training run's model_dir (its model.keras, else its best checkpoint).

    The network is rebuilt from the file's own config and the weights loaded into it, so loading
    never deserialises code. A run trained under a mixed-precision policy is rebuilt in float32:
    inference, export and the search index always compute in float32. A best checkpoint is copied
    before reading, because a running trainer rewrites it at each validation.
    """
    import json
    import shutil
    import tempfile
    import zipfile
    from pathlib import Path

    from keras_forensics.errors import ForensicsError

    path = Path(path)
    if path.is_dir():
        for candidate in ("model.keras", "checkpoints/best.keras"):
            if (path / candidate).is_file():
                path = path / candidate
                break
        else:
            raise ForensicsError(f"{path}: no model.keras or checkpoints/best.keras in this folder")
    if not path.is_file():
        raise ForensicsError(f"{path}: no such model file")
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "model.keras"
        shutil.copyfile(path, copy)
        try:
            with zipfile.ZipFile(copy) as archive:
                config = json.loads(archive.read("config.json"))
        except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, OSError) as error:
            raise ForensicsError(f"{path}: not a Keras .keras file ({error})") from None
        layer_configs = {layer.get("config", {}).get("name"): _float32(layer)
                         for layer in config.get("config", {}).get("layers", [])}
        if "embedding" not in layer_configs or "distance" not in layer_configs:
            raise ForensicsError(f"{path}: not a Siamese model (no 'embedding' and 'distance' layers); "
                                 "pass the model.keras a `train siamese` run wrote")
        try:
            embedding = keras.saving.deserialize_keras_object(layer_configs["embedding"])
            distance = keras.saving.deserialize_keras_object(layer_configs["distance"])
            build = build_pair_model if config.get("config", {}).get("name") == "siamese_pair" else build_triplet_model
            model = build(embedding, distance)
            model.load_weights(copy)
        except Exception as error:  # Keras raises many types for a mismatched file
            raise ForensicsError(f"{path}: cannot load the Siamese weights ({type(error).__name__}: {error})") from None
    return parts_of(model)


def _float32(layer_config):
    """A copy of a serialised layer (nested layers included) with every dtype policy set to float32."""
    if isinstance(layer_config, dict):
        if str(layer_config.get("class_name", "")).endswith(("DTypePolicy", "DTypePolicyMap")):
            return "float32"
        return {key: _float32(value) for key, value in layer_config.items()}
    if isinstance(layer_config, list):
        return [_float32(value) for value in layer_config]
    return layer_config
