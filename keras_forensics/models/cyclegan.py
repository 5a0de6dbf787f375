"""CycleGAN for unpaired image-to-image translation (Zhu et al. 2017), in Keras 3.

Wang et al. (2022) used CycleGAN to impose a condition (oesophageal cancer) on endoscopy images of
healthy tissue; the same machinery moves any scientific image between two domains.

* `build_resnet_generator(config)`: images [B, H, W, C] in [0, 1] -> translated images, fully
  convolutional (any H, W divisible by 2**down_blocks): Johnson et al.'s ResNet generator with
  reflection padding and instance normalisation (`GroupNormalization(groups=-1)`).
* `build_patch_discriminator(config)`: images -> a map of real/fake scores, each seeing a 70x70
  patch with 3 down-sampling layers (PatchGAN, Isola et al. 2017).
* `CycleGAN(generator_ab, generator_ba, discriminator_a, discriminator_b)`: the keras.Model that
  trains them with least-squares adversarial losses, the cycle-consistency loss and the identity
  loss, four optimisers, and an `ImagePool` of past fakes for each discriminator.

References:
    Zhu, Park, Isola, Efros. Unpaired image-to-image translation using cycle-consistent
    adversarial networks. ICCV 2017 (github.com/junyanz/pytorch-CycleGAN-and-pix2pix).
    Johnson, Alahi, Fei-Fei. Perceptual losses for real-time style transfer and super-resolution.
    ECCV 2016. Mao et al. Least squares generative adversarial networks. ICCV 2017.
    Shrivastava et al. Learning from simulated and unsupervised images through adversarial
    training. CVPR 2017 (the image pool).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

from keras_forensics.config import CycleGANConfig
from keras_forensics.layers import ImagePool, ReflectionPadding2D


def _instance_norm(name: str):
    return layers.GroupNormalization(groups=-1, epsilon=1e-5, name=name)


def _residual_block(x, name: str):
    filters = x.shape[-1]
    h = ReflectionPadding2D(1, name=f"{name}_pad1")(x)
    h = layers.Conv2D(filters, 3, use_bias=False, name=f"{name}_conv1")(h)
    h = _instance_norm(f"{name}_norm1")(h)
    h = layers.ReLU(name=f"{name}_relu")(h)
    h = ReflectionPadding2D(1, name=f"{name}_pad2")(h)
    h = layers.Conv2D(filters, 3, use_bias=False, name=f"{name}_conv2")(h)
    h = _instance_norm(f"{name}_norm2")(h)
    return layers.Add(name=f"{name}_add")([x, h])


def build_resnet_generator(config: CycleGANConfig | None = None, name: str = "generator") -> keras.Model:
    """[B, H, W, C] in [0, 1] -> [B, H, W, C] in [0, 1].

    c7s1-w, d2w, d4w (stride-2 3x3 convs), `residual_blocks` x R4w, u2w, u1w (nearest resize + 3x3
    conv, or 3x3 stride-2 transposed conv), c7s1-C with tanh; instance norm and ReLU after every
    conv but the last. Convs before a norm have no bias (the norm removes it).
    """
    config = config or CycleGANConfig()
    images = keras.Input((None, None, config.channels), name="images")
    x = layers.Rescaling(2.0, offset=-1.0, name="to_signed")(images)
    x = ReflectionPadding2D(3, name="input_pad")(x)
    x = layers.Conv2D(config.generator_width, 7, use_bias=False, name="input_conv")(x)
    x = layers.ReLU(name="input_relu")(_instance_norm("input_norm")(x))
    for index in range(config.down_blocks):
        filters = config.generator_width * 2 ** (index + 1)
        x = layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False, name=f"down{index}_conv")(x)
        x = layers.ReLU(name=f"down{index}_relu")(_instance_norm(f"down{index}_norm")(x))
    for index in range(config.residual_blocks):
        x = _residual_block(x, f"residual{index}")
    for index in range(config.down_blocks):
        filters = config.generator_width * 2 ** (config.down_blocks - index - 1)
        if config.upsampling == "transposed":
            x = layers.Conv2DTranspose(filters, 3, strides=2, padding="same", use_bias=False,
                                       name=f"up{index}_transposed")(x)
        else:
            x = layers.UpSampling2D(2, interpolation=config.upsampling_interpolation, name=f"up{index}_resize")(x)
            x = ReflectionPadding2D(1, name=f"up{index}_pad")(x)
            x = layers.Conv2D(filters, 3, use_bias=False, name=f"up{index}_conv")(x)
        x = layers.ReLU(name=f"up{index}_relu")(_instance_norm(f"up{index}_norm")(x))
    x = ReflectionPadding2D(3, name="output_pad")(x)
    x = layers.Conv2D(config.channels, 7, activation="tanh", name="output_conv")(x)
    outputs = layers.Rescaling(0.5, offset=0.5, name="translated")(x)
    return keras.Model(images, outputs, name=name)


def build_patch_discriminator(config: CycleGANConfig | None = None, name: str = "discriminator") -> keras.Model:
    """[B, H, W, C] in [0, 1] -> [B, H / 2**layers, W / 2**layers, 1] least-squares scores.

    C64 (no norm), then `discriminator_layers - 1` stride-2 4x4 convs doubling the filters (up to
    8x), one stride-1 conv, a 1-channel 4x4 conv; instance norm and LeakyReLU(0.2) in between.
    With 3 layers each output sees a 70x70 patch (Isola et al.'s PatchGAN).
    """
    config = config or CycleGANConfig()
    width = config.discriminator_width
    images = keras.Input((None, None, config.channels), name="images")
    x = layers.Rescaling(2.0, offset=-1.0, name="to_signed")(images)
    x = layers.Conv2D(width, 4, strides=2, padding="same", name="conv0")(x)
    x = layers.LeakyReLU(0.2, name="relu0")(x)
    for index in range(1, config.discriminator_layers + 1):
        strides = 2 if index < config.discriminator_layers else 1
        filters = width * min(2 ** index, 8)
        x = layers.Conv2D(filters, 4, strides=strides, padding="same", use_bias=False, name=f"conv{index}")(x)
        x = layers.LeakyReLU(0.2, name=f"relu{index}")(_instance_norm(f"norm{index}")(x))
    scores = layers.Conv2D(1, 4, padding="same", name="scores")(x)
    return keras.Model(images, scores, name=name)


def _mean_square(tensor, target: float):
    return tf.reduce_mean(tf.square(tensor - target))


def _mean_absolute(first, second):
    return tf.reduce_mean(tf.abs(first - second))


@keras.saving.register_keras_serializable(package="keras_forensics")
class CycleGAN(keras.Model):
    """CycleGAN: G = generator_ab (A -> B), F = generator_ba (B -> A), D_A and D_B.

    Generators minimise (D_B(G(a)) - 1)^2 + (D_A(F(b)) - 1)^2 + cycle_weight * (|F(G(a)) - a| +
    |G(F(b)) - b|) + identity_fraction * cycle_weight * (|G(b) - b| + |F(a) - a|); each
    discriminator minimises ((D(real) - 1)^2 + D(pooled fake)^2) / 2, where the fakes come through
    an `ImagePool`. `train_step` takes {"a": [B, H, W, C], "b": [B, H, W, C]} and updates each of
    the four networks with its own optimiser.

    Args:
        generator_ab, generator_ba: image -> image models.
        discriminator_a, discriminator_b: image -> score map models.
        cycle_weight: lambda of the cycle-consistency loss (10).
        identity_fraction: the identity loss weight as a fraction of cycle_weight (0.5).
        pool_size: images in each discriminator's pool of past fakes (50; 0 = no pool).
        image_shape: (H, W, C) of the training images (the pools' shape).
        seed: seed of the pools.

    Example:
        >>> config = CycleGANConfig(image_size=32, residual_blocks=2)
        >>> gan = CycleGAN.from_cyclegan_config(config)
        >>> gan.compile(*[keras.optimizers.Adam(2e-4, 0.5) for _ in range(4)])
        >>> gan.fit(unpaired_batches, steps_per_epoch=100)
        >>> fake_b = gan(images_a)
    """

    def __init__(self, generator_ab, generator_ba, discriminator_a, discriminator_b, cycle_weight=10.0,
                 identity_fraction=0.5, pool_size=50, image_shape=(128, 128, 1), seed=None, **kwargs):
        super().__init__(**kwargs)
        self.generator_ab = generator_ab
        self.generator_ba = generator_ba
        self.discriminator_a = discriminator_a
        self.discriminator_b = discriminator_b
        self.cycle_weight = cycle_weight
        self.identity_fraction = identity_fraction
        self.pool_size = pool_size
        self.image_shape = tuple(image_shape)
        self.seed = seed
        self.pool_a = ImagePool(pool_size, self.image_shape, seed=seed, name="pool_a")
        self.pool_b = ImagePool(pool_size, self.image_shape, seed=None if seed is None else seed + 1, name="pool_b")
        self.trackers = {name: keras.metrics.Mean(name=name) for name in (
            "generator_loss", "adversarial_ab", "adversarial_ba", "cycle_loss", "identity_loss",
            "discriminator_a_loss", "discriminator_b_loss")}
        self.built = True

    @classmethod
    def from_cyclegan_config(cls, config: CycleGANConfig, seed=None) -> "CycleGAN":
        return cls(build_resnet_generator(config, "generator_ab"), build_resnet_generator(config, "generator_ba"),
                   build_patch_discriminator(config, "discriminator_a"),
                   build_patch_discriminator(config, "discriminator_b"),
                   cycle_weight=config.cycle_weight, identity_fraction=config.identity_fraction,
                   pool_size=config.pool_size, image_shape=(config.image_size, config.image_size, config.channels),
                   seed=seed)

    def call(self, images, training=False):
        """A -> B."""
        return self.generator_ab(images, training=training)

    def compile(self, generator_ab_optimizer, generator_ba_optimizer, discriminator_a_optimizer,
                discriminator_b_optimizer, **kwargs):
        super().compile(optimizer=generator_ab_optimizer, **kwargs)
        self.optimizers_by_network = {
            "generator_ab": generator_ab_optimizer, "generator_ba": generator_ba_optimizer,
            "discriminator_a": discriminator_a_optimizer, "discriminator_b": discriminator_b_optimizer}
        for network, optimizer in self.optimizers_by_network.items():
            optimizer.build(getattr(self, network).trainable_variables)

    def get_compile_config(self):
        return {f"{network}_optimizer": keras.saving.serialize_keras_object(optimizer)
                for network, optimizer in self.optimizers_by_network.items()}

    def compile_from_config(self, config):
        self.compile(**{key: keras.saving.deserialize_keras_object(value) for key, value in config.items()})

    @property
    def metrics(self):
        return list(self.trackers.values())

    def cycle_consistency_loss(self, real_a, real_b, training=False):
        """|F(G(a)) - a| + |G(F(b)) - b| (mean absolute errors), unweighted."""
        back_a = self.generator_ba(self.generator_ab(real_a, training=training), training=training)
        back_b = self.generator_ab(self.generator_ba(real_b, training=training), training=training)
        return _mean_absolute(back_a, real_a) + _mean_absolute(back_b, real_b)

    def _apply(self, network: str, tape, loss):
        variables = getattr(self, network).trainable_variables
        self.optimizers_by_network[network].apply_gradients(zip(tape.gradient(loss, variables), variables))

    def train_step(self, data):
        real_a = tf.convert_to_tensor(data["a"], self.compute_dtype)
        real_b = tf.convert_to_tensor(data["b"], self.compute_dtype)
        with tf.GradientTape(persistent=True) as tape:
            fake_b = self.generator_ab(real_a, training=True)
            fake_a = self.generator_ba(real_b, training=True)
            back_a = self.generator_ba(fake_b, training=True)
            back_b = self.generator_ab(fake_a, training=True)
            adversarial_ab = _mean_square(self.discriminator_b(fake_b, training=True), 1.0)
            adversarial_ba = _mean_square(self.discriminator_a(fake_a, training=True), 1.0)
            cycle = _mean_absolute(back_a, real_a) + _mean_absolute(back_b, real_b)
            identity = (_mean_absolute(self.generator_ab(real_b, training=True), real_b)
                        + _mean_absolute(self.generator_ba(real_a, training=True), real_a))
            generator_loss = (adversarial_ab + adversarial_ba + self.cycle_weight * cycle
                              + self.identity_fraction * self.cycle_weight * identity)
            pooled_a = self.pool_a(tf.stop_gradient(fake_a))
            pooled_b = self.pool_b(tf.stop_gradient(fake_b))
            discriminator_a_loss = 0.5 * (_mean_square(self.discriminator_a(real_a, training=True), 1.0)
                                          + _mean_square(self.discriminator_a(pooled_a, training=True), 0.0))
            discriminator_b_loss = 0.5 * (_mean_square(self.discriminator_b(real_b, training=True), 1.0)
                                          + _mean_square(self.discriminator_b(pooled_b, training=True), 0.0))
        self._apply("generator_ab", tape, generator_loss)
        self._apply("generator_ba", tape, generator_loss)
        self._apply("discriminator_a", tape, discriminator_a_loss)
        self._apply("discriminator_b", tape, discriminator_b_loss)
        del tape
        values = {"generator_loss": generator_loss, "adversarial_ab": adversarial_ab,
                  "adversarial_ba": adversarial_ba, "cycle_loss": cycle, "identity_loss": identity,
                  "discriminator_a_loss": discriminator_a_loss, "discriminator_b_loss": discriminator_b_loss}
        for name, value in values.items():
            self.trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def get_config(self):
        config = super().get_config()
        config.update({network: keras.saving.serialize_keras_object(getattr(self, network)) for network in
                       ("generator_ab", "generator_ba", "discriminator_a", "discriminator_b")})
        config.update(cycle_weight=self.cycle_weight, identity_fraction=self.identity_fraction,
                      pool_size=self.pool_size, image_shape=self.image_shape, seed=self.seed)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        networks = {network: keras.saving.deserialize_keras_object(config.pop(network)) for network in
                    ("generator_ab", "generator_ba", "discriminator_a", "discriminator_b")}
        return cls(**networks, **config)
