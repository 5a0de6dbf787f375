"""The serving modules: one `tf.Module` per model kind, whose functions are its named signatures.

Each model kind has a `tf.Module` whose `tf.function`s are the serving signatures, with named
inputs and outputs (never Keras's auto-generated `output_0`):

==========  ===================  ==========================================  ==========================
kind        signature            inputs                                      outputs
==========  ===================  ==========================================  ==========================
siamese     serving_default      image_a, image_b: float32 [B, 128, 128, 1]  distance, p_same: [B]
siamese     embed                images: float32 [B, 128, 128, 1]            embedding, weighted_embedding
siamese     similarity_bytes     image_a_bytes, image_b_bytes: string [B]    distance, p_same
siamese     embed_bytes          image_bytes: string [B]                     embedding, weighted_embedding
detector    serving_default      images: float32 [B, S, S, 1]                p_fake: [B]
detector    classify_bytes       image_bytes: string [B]                     p_fake, p_fake_max_patch: [B]
wgan        serving_default      noise: float32 [B, latent]                  images: [B, H, W, C]
cyclegan    a_to_b, b_to_a       images: float32 [B, H, W, C]                images
==========  ===================  ==========================================  ==========================

The `*_bytes` signatures take encoded PNG / JPEG / BMP / GIF files of any size and decode them in
the graph with `keras_forensics.preprocessing` -- the same function the CLI and the Python API use,
so a panel scores the same everywhere; the detector's `classify_bytes` scores an image of any size
on the same patch grid as the `detect` command (see `DetectorServing`). `weighted_embedding` is alpha * embedding: L1 distances
between weighted embeddings equal the Siamese distance f (see `WeightedL1Distance`).

Writing these modules as SavedModels is keras_forensics.serving.export.

Layout and naming follow TF Model Garden's `official/vision/serving/export_base.py` (a module per
model with tensor and encoded-bytes signatures, decoding inside the graph).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from keras_forensics import artifacts, preprocessing
from keras_forensics.errors import ForensicsError
from keras_forensics.ops import tiling
from keras_forensics.serving.protocol import encode_png

KINDS = ("siamese", "detector", "wgan", "cyclegan")

@dataclasses.dataclass
class Endpoint:
    """One serving signature.

    Attributes:
        function: a `tf.function` with an input signature; its argument names are the
            signature's input names and its returned dict keys the output names.
        example: a fixed input (input name -> NumPy array) for the reload check and warm-up.
        reference: computes the outputs for `example` with the Keras model itself.
    """

    function: Callable
    example: dict
    reference: Callable[[dict], dict]


class ServingModule(tf.Module):
    """Base class: a tf.Module with named endpoints (subclasses fill `self._endpoints`)."""

    kind = ""

    def extra_assets(self) -> dict:
        """Files (name -> text or bytes) the export writes into assets.extra/ beside the warm-up."""
        return {}

    def __init__(self, name: str):
        super().__init__(name=name)
        self._endpoints: dict[str, Endpoint] = {}
        self.model_variables = []

    def keep(self, track: bool = True, **models) -> None:
        """Hold Keras models as attributes, and (with `track`) their variables for saving.

        The models themselves are not tracked: Keras 3 would write every variable a second time
        under a generic name ("Variable_N"), doubling the SavedModel's weights. Their variables
        are tracked once, by `_track_variables`.
        """
        self._setattr_tracking = False
        try:
            for name, model in models.items():
                setattr(self, name, model)
        finally:
            self._setattr_tracking = True
        if track:
            self._track_variables(*models.values())

    def _track_variables(self, *models) -> None:
        """Track the models' variables -- the tf.Variables under the Keras variables -- explicitly.

        The signature functions capture those tf.Variables. Untracked (Keras 3 layers do not
        expose them to tf.Module tracking), tf.saved_model.load in Python still restores them, but
        the session-based loader of TF-Serving and saved_model_cli does not ("Could not find
        variable embedding_out/kernel"). Tracking the Keras wrappers instead is not enough either:
        they are written as separate copies ("Variable_N") that the functions never read.
        """
        for model in models:
            self.model_variables += [variable.value for variable in model.variables]

    @property
    def endpoints(self) -> dict[str, Endpoint]:
        return dict(self._endpoints)

    def concrete_signatures(self) -> dict:
        """signature name -> concrete function, as `tf.saved_model.save(signatures=...)` takes it."""
        return {name: e.function.get_concrete_function() for name, e in self._endpoints.items()}


def _predict(model: keras.Model, inputs):
    """The Keras model's own inference (eager call, training=False) as NumPy; the reference."""
    outputs = model(inputs, training=False)
    return keras.tree.map_structure(keras.ops.convert_to_numpy, outputs)


def _decode_batch(data, size: int):
    """[B] encoded images -> [B, size, size, 1] with THE preprocessing (in-graph)."""
    return tf.map_fn(lambda item: preprocessing.bytes_to_model_input(item, size), data,
                     fn_output_signature=tf.TensorSpec([size, size, 1], tf.float32))


def _eager_inputs(encoded: np.ndarray, size: int) -> np.ndarray:
    """The reference path: preprocess each encoded image eagerly, one by one."""
    return np.stack([preprocessing.bytes_to_model_input(tf.constant(item), size).numpy() for item in encoded])


def example_images(count: int, height: int, width: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Deterministic float32 images in [0, 1] with structure (smooth blobs plus noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    images = []
    for _ in range(count):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        radius = rng.uniform(0.15, 0.4) * max(height, width)
        blob = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * radius ** 2))
        image = 0.7 * blob[..., None] + 0.3 * rng.random((height, width, channels))
        images.append(np.clip(image, 0, 1))
    return np.stack(images).astype(np.float32)


def example_encoded_images() -> np.ndarray:
    """Encoded images of different sizes and formats as a [3] array: a 16-bit gray PNG, an RGB
    JPEG, and a small PNG (below a detector patch, so that its up-sampling is checked too)."""
    gray = example_images(1, 150, 100, 1, seed=1)[0]
    color = example_images(1, 90, 160, 3, seed=2)[0]
    small = example_images(1, 20, 45, 1, seed=3)[0]
    jpeg = tf.io.encode_jpeg(tf.constant(np.round(color * 255).astype(np.uint8)), quality=90).numpy()
    return np.array([encode_png(gray), jpeg, encode_png(small)], dtype=object)


# ---------------------------------------------------------------------------------------------
# Siamese


class SiameseServing(ServingModule):
    """The Siamese duplicate detector's signatures (Cicconet et al.), see the module docstring.

    Args:
        embedding: the embedding branch, [B, size, size, 1] -> [B, D].
        distance: the `WeightedL1Distance` layer trained with it.
    """

    kind = "siamese"

    def __init__(self, embedding: keras.Model, distance, name: str = "siamese_serving"):
        super().__init__(name=name)
        from keras_forensics.models.siamese import build_pair_model

        self.keep(embedding=embedding, distance=distance)
        self.size = int(embedding.input_shape[1])
        if self.size != preprocessing.INPUT_SIZE:
            raise ForensicsError(
                f"the Siamese embedding takes {self.size}x{self.size} inputs; the serving signatures "
                f"use the shared preprocessing's {preprocessing.INPUT_SIZE}x{preprocessing.INPUT_SIZE}"
            )
        self.keep(track=False, pair_model=build_pair_model(embedding, distance))  # same variables
        size = self.size
        image = tf.TensorSpec([None, size, size, 1], tf.float32)
        encoded = tf.TensorSpec([None], tf.string)

        @tf.function(input_signature=[image, image])
        def similarity(image_a, image_b):
            return self._similarity(image_a, image_b)

        @tf.function(input_signature=[image])
        def embed(images):
            return self._embed(images)

        @tf.function(input_signature=[encoded, encoded])
        def similarity_bytes(image_a_bytes, image_b_bytes):
            return self._similarity(_decode_batch(image_a_bytes, size), _decode_batch(image_b_bytes, size))

        @tf.function(input_signature=[encoded])
        def embed_bytes(image_bytes):
            return self._embed(_decode_batch(image_bytes, size))

        # Tracked as attributes so that the reloaded object exposes them as methods too.
        self.similarity, self.embed = similarity, embed
        self.similarity_bytes, self.embed_bytes = similarity_bytes, embed_bytes

        images = example_images(2, size, size, seed=0)
        others = example_images(2, size, size, seed=1)
        others[0] = images[0] * 0.9 + 0.05  # one near-duplicate pair, one different pair
        encoded_a = example_encoded_images()
        encoded_b = encoded_a[::-1].copy()
        self._endpoints = {
            "serving_default": Endpoint(similarity, {"image_a": images, "image_b": others},
                                        self._pair_reference),
            "embed": Endpoint(embed, {"images": images}, self._embed_reference),
            "similarity_bytes": Endpoint(
                similarity_bytes, {"image_a_bytes": encoded_a, "image_b_bytes": encoded_b},
                lambda x: self._pair_reference({"image_a": _eager_inputs(x["image_a_bytes"], size),
                                                "image_b": _eager_inputs(x["image_b_bytes"], size)})),
            "embed_bytes": Endpoint(embed_bytes, {"image_bytes": encoded_a},
                                    lambda x: self._embed_reference({"images": _eager_inputs(x["image_bytes"], size)})),
        }

    def _similarity(self, image_a, image_b):
        a = self.embedding(image_a, training=False)
        b = self.embedding(image_b, training=False)
        distance = self.distance([a, b])
        return {"distance": distance, "p_same": tf.sigmoid(self.description["p_same_sharpness"] * (1.0 - distance))}

    @property
    def description(self) -> dict:
        from keras_forensics.models.siamese import describe

        return describe(self.embedding, self.distance)

    def extra_assets(self) -> dict:
        """assets.extra/siamese.json: what the distances mean (read back by `load_scorer`)."""
        return {"siamese.json": json.dumps(self.description, indent=2) + "\n"}

    def _embed(self, images):
        embedding = self.embedding(images, training=False)
        return {"embedding": embedding, "weighted_embedding": self.distance.weight(embedding)}

    def _pair_reference(self, inputs):
        outputs = _predict(self.pair_model, {"image_a": inputs["image_a"], "image_b": inputs["image_b"]})
        return {key: np.asarray(value) for key, value in outputs.items()}

    def _embed_reference(self, inputs):
        embedding = _predict(self.embedding, inputs["images"])
        return {"embedding": embedding,
                "weighted_embedding": keras.ops.convert_to_numpy(self.distance.weight(embedding))}


def load_siamese(model_dir) -> SiameseServing:
    """A Siamese run dir (its model.keras, or while training runs its checkpoints/best.keras), or
    a .keras file -> its serving module. See `siamese.load_parts`: the network is rebuilt from the
    file's own config in float32, so loading never deserialises code."""
    from keras_forensics.models import siamese

    embedding, distance = siamese.load_parts(model_dir)
    return SiameseServing(embedding, distance)


# ---------------------------------------------------------------------------------------------
# Detector


class DetectorServing(ServingModule):
    """The real/fake detector's signatures.

    `serving_default` scores patches of the model's input size. `classify_bytes` scores encoded
    images of any size exactly as the `detect` command does (`Detector.score` with its default
    stride): both cut and aggregate with keras_forensics.ops.tiling -- the grayscale image is
    up-sampled (bilinear) when its shorter side is below the patch size, cut into patches on a
    grid of stride a quarter patch with the last row and column touching the far edges, flat
    patches (std < FLAT_PATCH_STD) are ignored unless all are flat, and `p_fake` is the mean and
    `p_fake_max_patch` the maximum of the remaining patch scores. The export check compares the
    graph with the same ops run eagerly on the Keras model.

    Args:
        model: a Keras model, one grayscale input [B, S, S, 1] (float32 in [0, 1]) -> p_fake
            [B] or [B, 1] (or a dict holding "p_fake").
    """

    kind = "detector"

    def __init__(self, model: keras.Model, name: str = "detector_serving"):
        super().__init__(name=name)
        self.keep(model=model)
        shape = _single_input_shape(model, "detector")
        if len(shape) != 4 or shape[1] is None or shape[1] != shape[2] or shape[3] != 1:
            raise ForensicsError(f"the detector must take square grayscale patches [B, S, S, 1], got {shape}")
        self.patch_size = size = int(shape[1])

        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 1], tf.float32)])
        def classify(images):
            return {"p_fake": self._p_fake(images)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def classify_bytes(image_bytes):
            mean, maximum = tf.map_fn(
                self._image_scores, image_bytes,
                fn_output_signature=(tf.TensorSpec([], tf.float32), tf.TensorSpec([], tf.float32)))
            return {"p_fake": mean, "p_fake_max_patch": maximum}

        self.classify, self.classify_bytes = classify, classify_bytes
        encoded = example_encoded_images()
        self._endpoints = {
            "serving_default": Endpoint(classify, {"images": example_images(2, size, size, seed=3)},
                                        lambda x: {"p_fake": self._p_fake_reference(x["images"])}),
            "classify_bytes": Endpoint(classify_bytes, {"image_bytes": encoded}, self._bytes_reference),
        }

    def _p_fake(self, images):
        return _p_fake_of(self.model(images, training=False))

    def _image_scores(self, data):
        """(p_fake, p_fake_max_patch) of one encoded image: ops.tiling's grid and rule."""
        patches = tiling.tile_patches(preprocessing.decode_to_gray(data), self.patch_size)
        return tiling.aggregate_patch_scores(self._p_fake(patches), tiling.informative_patches(patches))

    def _p_fake_reference(self, images):
        return np.asarray(_p_fake_of(_predict(self.model, images))).reshape(-1)

    def _bytes_reference(self, inputs):
        """The same files scored eagerly, one by one, by the Keras model itself (what the `detect`
        command computes: it runs the same ops.tiling functions)."""
        scores = []
        for data in inputs["image_bytes"]:
            patches = tiling.tile_patches(preprocessing.decode_to_gray(tf.constant(data)), self.patch_size)
            predicted = tf.constant(self._p_fake_reference(patches.numpy()))
            scores.append([float(v) for v in tiling.aggregate_patch_scores(
                predicted, tiling.informative_patches(patches))])
        scores = np.asarray(scores, np.float32).reshape(-1, 2)
        return {"p_fake": scores[:, 0], "p_fake_max_patch": scores[:, 1]}


def _p_fake_of(outputs):
    if isinstance(outputs, dict):
        if "p_fake" not in outputs:
            raise ForensicsError(f"the detector returns {sorted(outputs)}; expected a 'p_fake' output")
        outputs = outputs["p_fake"]
    if isinstance(outputs, (list, tuple)):
        raise ForensicsError("the detector must return one p_fake tensor, got several outputs")
    shape = tuple(outputs.shape)
    if len(shape) == 2 and shape[1] == 1:
        return outputs[:, 0]
    if len(shape) != 1:
        raise ForensicsError(f"the detector must return p_fake of shape [B] or [B, 1], got {shape}")
    return outputs


# ---------------------------------------------------------------------------------------------
# Generators


class GeneratorServing(ServingModule):
    """A WGAN generator: `serving_default` (noise [B, latent]) -> images [B, H, W, C].

    The images are the generator's raw output (its own value range, e.g. [-1, 1] for tanh).
    """

    kind = "wgan"

    def __init__(self, generator: keras.Model, name: str = "wgan_serving"):
        super().__init__(name=name)
        self.keep(generator=generator)
        shape = _single_input_shape(generator, "wgan generator")
        if len(shape) != 2 or shape[1] is None:
            raise ForensicsError(f"the WGAN generator must take noise [B, latent], got input shape {shape}")
        self.latent_dim = int(shape[1])

        @tf.function(input_signature=[tf.TensorSpec([None, self.latent_dim], tf.float32)])
        def generate(noise):
            return {"images": _single_output(self.generator(noise, training=False))}

        self.generate = generate
        noise = np.random.default_rng(4).standard_normal((2, self.latent_dim)).astype(np.float32)
        self._endpoints = {
            "serving_default": Endpoint(generate, {"noise": noise},
                                        lambda x: {"images": _single_output(_predict(generator, x["noise"]))}),
        }


class CycleGANServing(ServingModule):
    """CycleGAN's two generators: `a_to_b` and `b_to_a` (images -> images).

    `serving_default` is `a_to_b`, so requests that name no signature work as well.
    """

    kind = "cyclegan"

    def __init__(self, a_to_b: keras.Model, b_to_a: keras.Model, name: str = "cyclegan_serving"):
        super().__init__(name=name)
        self.keep(generator_a_to_b=a_to_b, generator_b_to_a=b_to_a)
        self._endpoints = {}
        functions = {}
        for direction, generator in (("a_to_b", a_to_b), ("b_to_a", b_to_a)):
            shape = _single_input_shape(generator, f"cyclegan {direction} generator")
            if len(shape) != 4 or shape[3] is None:
                raise ForensicsError(f"the {direction} generator must take images [B, H, W, C], got {shape}")
            function = _image_to_image(generator, shape)
            functions[direction] = function
            height, width = shape[1] or 64, shape[2] or 64
            example = {"images": example_images(2, height, width, shape[3], seed=5)}
            self._endpoints[direction] = Endpoint(
                function, example,
                lambda x, generator=generator: {"images": _single_output(_predict(generator, x["images"]))})
        self.a_to_b, self.b_to_a = functions["a_to_b"], functions["b_to_a"]
        self._endpoints = {"serving_default": self._endpoints["a_to_b"], **self._endpoints}


def _image_to_image(generator, shape):
    @tf.function(input_signature=[tf.TensorSpec([None, *shape[1:]], tf.float32)])
    def translate(images):
        return {"images": _single_output(generator(images, training=False))}

    return translate


def _single_output(outputs):
    if isinstance(outputs, dict):
        if len(outputs) != 1:
            raise ForensicsError(f"a generator must return one tensor, got outputs {sorted(outputs)}")
        return next(iter(outputs.values()))
    if isinstance(outputs, (list, tuple)):
        if len(outputs) != 1:
            raise ForensicsError(f"a generator must return one tensor, got {len(outputs)}")
        return outputs[0]
    return outputs


def _single_input_shape(model: keras.Model, what: str) -> tuple:
    if len(model.inputs) != 1:
        raise ForensicsError(f"the {what} must have exactly one input, it has {len(model.inputs)}")
    return tuple(model.inputs[0].shape)


# ---------------------------------------------------------------------------------------------
# Loading run dirs


def _require_file(path: Path, kind: str) -> Path:
    if not path.is_file():
        raise ForensicsError(f"{path}: no such file (a {kind} run dir holds {path.name})")
    return path


def load_detector(model_dir) -> DetectorServing:
    """A detector run dir: model.keras maps image patches -> p_fake."""
    return DetectorServing(artifacts.load_keras(_require_file(Path(model_dir) / artifacts.MODEL_FILE, "detector")))


def _wgan_generator(model):
    """What a WGAN exports: the moving average of its generator's weights if it kept one
    (`WGAN.sampling_generator`), else its generator; a bare generator as it is."""
    return getattr(model, "sampling_generator", None) or getattr(model, "generator", model)


def load_wgan(model_dir) -> GeneratorServing:
    """A WGAN run dir: generator.keras, or model.keras holding the WGAN (its moving-average
    generator, else its `.generator`) or the generator itself, or -- a run in progress or stopped
    early -- its latest checkpoint (what `generate` and `evaluate` use for such a run)."""
    model_dir = Path(model_dir)
    if (model_dir / "generator.keras").is_file():
        return GeneratorServing(artifacts.load_keras(model_dir / "generator.keras"))
    if not (model_dir / artifacts.MODEL_FILE).is_file() and (model_dir / "config.json").is_file():
        return GeneratorServing(_wgan_generator(artifacts.load_run_model("wgan", model_dir)))
    model = artifacts.load_keras(_require_file(model_dir / artifacts.MODEL_FILE, "wgan"))
    return GeneratorServing(_wgan_generator(model))


#: Attribute pairs (a -> b, b -> a) under which a CycleGAN model may hold its generators.
CYCLEGAN_GENERATOR_ATTRIBUTES = (
    ("generator_a_to_b", "generator_b_to_a"),
    ("generator_ab", "generator_ba"),
    ("generator_g", "generator_f"),  # keras-io cyclegan.py: G maps X -> Y, F maps Y -> X
    ("gen_G", "gen_F"),
)


def load_cyclegan(model_dir) -> CycleGANServing:
    """A CycleGAN run dir: generator_a_to_b.keras + generator_b_to_a.keras, or model.keras holding
    both generators under one of CYCLEGAN_GENERATOR_ATTRIBUTES."""
    model_dir = Path(model_dir)
    files = (model_dir / "generator_a_to_b.keras", model_dir / "generator_b_to_a.keras")
    if all(path.is_file() for path in files):
        return CycleGANServing(artifacts.load_keras(files[0]), artifacts.load_keras(files[1]))
    model = artifacts.load_keras(_require_file(model_dir / artifacts.MODEL_FILE, "cyclegan"))
    for a_to_b, b_to_a in CYCLEGAN_GENERATOR_ATTRIBUTES:
        if hasattr(model, a_to_b) and hasattr(model, b_to_a):
            return CycleGANServing(getattr(model, a_to_b), getattr(model, b_to_a))
    raise ForensicsError(
        f"{model_dir}: no generator_a_to_b.keras / generator_b_to_a.keras, and model.keras has none of "
        f"the generator attribute pairs {CYCLEGAN_GENERATOR_ATTRIBUTES}"
    )


LOADERS = {"siamese": load_siamese, "detector": load_detector, "wgan": load_wgan, "cyclegan": load_cyclegan}


def load_serving_module(kind: str, model_dir) -> ServingModule:
    """The serving module of a run dir of the given kind."""
    if kind not in LOADERS:
        raise ForensicsError(f"unknown model kind {kind!r} (known: {', '.join(KINDS)})")
    if not Path(model_dir).is_dir():
        raise ForensicsError(f"--model_dir {model_dir}: no such folder")
    return LOADERS[kind](model_dir)


