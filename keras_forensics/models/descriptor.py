"""The copy-detection descriptor: an SSCD-style embedding for archive-scale re-use search.

* `build_backbone_embedding(config)`: 128x128x1 -> unit-length `embedding_dim` vector (per-image
  normalisation, a keras.applications backbone trained from scratch, GeM pooling, a linear
  projection, L2 normalisation);
* `build_embedding(config, backbone_embedding)`: the model screening and serving use, named
  "embedding" like the paper's; with `orientation_pooling` it averages the descriptor over the 8
  orientations of the image (`DihedralOrbit` -> backbone -> `OrbitMean`), exactly invariant to
  quarter turns and mirroring;
* `DescriptorTrainer`: a keras.Model whose `train_step` computes InfoNCE over in-batch negatives
  plus the KoLeo entropy regulariser on two views of each patch;
* `build_pair_model` (from models/siamese.py) with a `CosineDistance` gives the public contract:
  image_a, image_b -> {distance, p_same}, f <= 1 meaning "same".

Reference: Pizzi, Roy, Ravindra, Goyal, Douze. A self-supervised descriptor for image copy
detection. CVPR 2022 (facebookresearch/sscd-copy-detection); Sablayrolles et al. Spreading
vectors for similarity search (KoLeo), ICLR 2019; Oord et al. 2018 (InfoNCE).
"""

from __future__ import annotations

import keras
from keras import layers, ops

from keras_forensics.config import DescriptorConfig
from keras_forensics.layers import DihedralOrbit, GeMPooling, OrbitMean, PixelNormalization

BATCH_NORM_MOMENTUM = 0.99

_APPLICATIONS = {
    "mobilenet_v3_small": "MobileNetV3Small",
    "mobilenet_v3_large": "MobileNetV3Large",
    "efficientnet_b0": "EfficientNetB0",
}


def _backbone(config: DescriptorConfig, dtype=None) -> keras.Model:
    """The feature extractor, random initialisation (no weights can be downloaded)."""
    shape = (config.input_size, config.input_size, 1)
    application = getattr(keras.applications, _APPLICATIONS[config.backbone])
    if config.backbone.startswith("mobilenet"):
        model = application(input_shape=shape, include_top=False, weights=None, include_preprocessing=False,
                            minimalistic=config.minimalistic, alpha=config.width)
    else:
        model = application(input_shape=shape, include_top=False, weights=None)
    model.name = "backbone"
    for layer in model.layers:
        # keras.applications' batch norm keeps moving averages with momentum 0.999 (ImageNet
        # schedules of ~10^5 steps); at the few thousand steps of a CPU run they would still be
        # near their initial values when the run ends, and inference would see other statistics
        # than training.
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = BATCH_NORM_MOMENTUM
    return model


def build_backbone_embedding(config: DescriptorConfig | None = None, dtype=None,
                             name: str = "descriptor") -> keras.Model:
    """[B, S, S, 1] -> [B, embedding_dim] unit vectors, one orientation (what training fits).

    `dtype` is the dtype policy of the layers ("mixed_bfloat16" to train faster on CPUs with
    AVX512-BF16); the output is float32 whatever it is.
    """
    config = config or DescriptorConfig()
    previous = keras.config.dtype_policy()
    if dtype is not None:  # keras.applications builds its layers under the global policy
        keras.config.set_dtype_policy(dtype)
    try:
        inputs = keras.Input((config.input_size, config.input_size, 1), name="image")
        x = PixelNormalization(name="pixel_norm")(inputs) if config.pixel_normalization else inputs
        x = _backbone(config)(x)
        x = GeMPooling(config.gem_p, name="gem")(x)
        x = layers.Dense(config.embedding_dim, name="projection")(x)
    finally:
        keras.config.set_dtype_policy(previous)
    outputs = layers.UnitNormalization(name="unit", dtype="float32")(layers.Activation("linear", dtype="float32")(x))
    return keras.Model(inputs, outputs, name=name)


def build_embedding(config: DescriptorConfig, backbone_embedding: keras.Model, name: str = "embedding") -> keras.Model:
    """The inference embedding: `backbone_embedding`, averaged over the 8 orientations when
    `config.orientation_pooling` (same weights)."""
    inputs = keras.Input((config.input_size, config.input_size, 1), name="image")
    if config.orientation_pooling:
        outputs = OrbitMean(8, name="orbit_mean")(backbone_embedding(DihedralOrbit(name="orbit")(inputs)))
    else:
        outputs = backbone_embedding(inputs)
    return keras.Model(inputs, outputs, name=name)


# ---------------------------------------------------------------------------------------------
# the objective


def _positives(count):
    """Column of each row's positive in a [2B, 2B] similarity matrix: row i <-> row (i + B) mod 2B."""
    half = count // 2
    index = ops.arange(count)
    return (index + half) % count


def _ignored(count, ids=None):
    """[2B, 2B] bool: pairs that are neither positive nor negative: a row with itself, and rows of
    the same patch (`ids` equal) other than the row's designated positive."""
    positives = _positives(count)
    ignored = ops.eye(count, dtype="bool")
    if ids is not None:
        not_positive = ~ops.equal(ops.arange(count)[None, :], positives[:, None])
        ignored = ignored | (ops.equal(ids[:, None], ids[None, :]) & not_positive)
    return ignored


def info_nce(embeddings, temperature: float, ids=None):
    """InfoNCE over in-batch negatives: rows i and i + B of `embeddings` [2B, D] (unit vectors)
    are two views of one image, every other row a negative, except other views of the same patch
    (`ids` [2B] equal), which are left out. Returns (loss, accuracy), where accuracy is the share
    of rows whose nearest other row is their positive."""
    count = ops.shape(embeddings)[0]
    similarity = ops.matmul(embeddings, ops.transpose(embeddings))
    logits = ops.where(_ignored(count, ids), -1e9, similarity / temperature)
    positives = _positives(count)
    log_probability = ops.log_softmax(logits, axis=-1)
    loss = -ops.mean(ops.take_along_axis(log_probability, positives[:, None], axis=1))
    accuracy = ops.mean(ops.cast(ops.argmax(logits, axis=-1) == positives, "float32"))
    return loss, accuracy


def koleo(embeddings, epsilon: float = 1e-8, ids=None):
    """The Kozachenko-Leonenko entropy estimate's loss, -mean log(distance to the nearest other
    embedding), views of the same patch excluded (as SSCD): it spreads the descriptors over the
    sphere, so that distances mean the same everywhere and a threshold transfers between archives."""
    count = ops.shape(embeddings)[0]
    similarity = ops.matmul(embeddings, ops.transpose(embeddings))
    excluded = _ignored(count, ids) | ops.equal(ops.arange(count)[None, :], _positives(count)[:, None])
    nearest = ops.max(ops.where(excluded, -2.0, similarity), axis=-1)
    distance = ops.sqrt(ops.maximum(2.0 - 2.0 * nearest, 0.0) + epsilon)
    return -ops.mean(ops.log(distance + epsilon))


@keras.saving.register_keras_serializable(package="keras_forensics")
class DescriptorTrainer(keras.Model):
    """Trains a descriptor on batches {"views": [2B, S, S, 1], "ids": [2B]} (rows i and B + i: two
    views of one patch; "ids", optional, the patch of each row) with InfoNCE at `temperature`
    plus `koleo_weight` x KoLeo.

    Args:
        descriptor: the embedding model (unit-length outputs).
        temperature: softmax temperature of InfoNCE (SSCD: 0.05).
        koleo_weight: weight of the entropy term (SSCD advises about 10 for a new setup).

    Example:
        >>> trainer = DescriptorTrainer(build_backbone_embedding(DescriptorConfig(input_size=32)))
        >>> trainer.compile(optimizer="adam")
        >>> trainer.fit(dataset_of_views, steps_per_epoch=10)
    """

    def __init__(self, descriptor, temperature=0.05, koleo_weight=10.0, **kwargs):
        super().__init__(**kwargs)
        self.descriptor = descriptor
        self.temperature = temperature
        self.koleo_weight = koleo_weight
        self.trackers = {name: keras.metrics.Mean(name=name)
                         for name in ("loss", "infonce", "koleo", "accuracy", "positive_cosine")}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, views, training=False):
        return self.descriptor(views, training=training)

    def _objective(self, data, training):
        embeddings = ops.cast(self.descriptor(data["views"], training=training), "float32")
        ids = data.get("ids")
        contrastive, accuracy = info_nce(embeddings, self.temperature, ids)
        entropy = koleo(embeddings, ids=ids)
        loss = contrastive + self.koleo_weight * entropy
        first, second = ops.split(embeddings, 2, axis=0)
        figures = {"loss": loss, "infonce": contrastive, "koleo": entropy, "accuracy": accuracy,
                   "positive_cosine": ops.mean(ops.sum(first * second, axis=-1))}
        return loss, figures

    def _report(self, figures):
        for name, value in figures.items():
            self.trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def train_step(self, data):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss, figures = self._objective(data, training=True)
            scaled = self.optimizer.scale_loss(loss)
        variables = self.descriptor.trainable_variables
        self.optimizer.apply(tape.gradient(scaled, variables), variables)
        return self._report(figures)

    def test_step(self, data):
        return self._report(self._objective(data, training=False)[1])

    def get_config(self):
        return {"descriptor": keras.saving.serialize_keras_object(self.descriptor),
                "temperature": self.temperature, "koleo_weight": self.koleo_weight, "name": self.name}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["descriptor"] = keras.saving.deserialize_keras_object(config["descriptor"])
        return cls(**config)
