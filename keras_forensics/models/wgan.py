"""WGAN-GP for western blots (Wang et al. 2022), in Keras 3.

* `build_generator(config)`: noise [B, latent_dim] -> images [B, R, R, C] in [0, 1]; a residual
  up-sampling network (Gulrajani et al.'s ResNet generator) whose up-sampling is a config switch:
  resize-convolution (nearest or bilinear resize; no checkerboard) or transposed convolution
  (checkerboard artefacts that the detector studies), with zero or reflection padding and
  optional per-pixel noise inputs (Karras et al. 2019).
* `build_critic(config)`: images -> [B, 1] unbounded scores; residual down-sampling blocks with
  layer norm (never batch norm: the gradient penalty is defined per sample), plus extra residual
  blocks at the lowest resolution.
* `WGAN(generator, critic)`: the keras.Model that trains them, `critic_steps` critic updates per
  generator update, with the gradient penalty of Gulrajani et al., DiffAugment before the critic
  (Zhao et al. 2020) and an exponential moving average of the generator's weights
  (`ema_generator`, what `sampling_generator` samples and what is exported).

Two bugs of the keras-io example (examples/generative/wgan_gp.py) are avoided: the interpolation
weight of the penalty is uniform in [0, 1] per sample (not normal), and the gradient norm is
sqrt(sum g^2 + epsilon), whose gradient is finite where g = 0 (the plain norm gives NaN there).

References:
    Arjovsky, Chintala, Bottou. Wasserstein GAN. ICML 2017.
    Gulrajani, Ahmed, Arjovsky, Dumoulin, Courville. Improved training of Wasserstein GANs.
    NeurIPS 2017 (github.com/igul222/improved_wgan_training, gan_64x64.py ResNet models).
    Odena, Dumoulin, Olah. Deconvolution and checkerboard artifacts. Distill 2016.
    Zhao, Liu, Lin, Zhu, Han. Differentiable augmentation for data-efficient GAN training.
    NeurIPS 2020.
    Karras, Laine, Aila. A style-based generator architecture for generative adversarial
    networks. CVPR 2019 (noise inputs; the moving average of the generator's weights is from
    Karras et al. 2018, ProGAN, and Yazici et al. 2019).
    Wang, Xu, Zhou, et al. Deepfakes: a new threat to image fabrication in scientific
    publications? Patterns 3 (2022).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from keras_forensics.config import WGANConfig
from keras_forensics.layers import NoiseInjection, ReflectionPadding2D
from keras_forensics.ops.diff_augment import diff_augment


def sample_noise(count: int, latent_dim: int, seed: int = 0) -> np.ndarray:
    """The generator's input: standard normal, fixed by the seed."""
    return np.random.default_rng(seed).standard_normal((count, latent_dim)).astype(np.float32)


def stage_filters(width: int, max_filters: int, num_stages: int) -> list[int]:
    """Filters from the lowest resolution to the highest: min(width * 2**k, max), k counted down
    from `num_stages` to 0, so the output resolution always has `width` filters."""
    return [min(width * 2 ** k, max_filters) for k in range(num_stages, -1, -1)]


def num_stages(config: WGANConfig) -> int:
    return config.stages


def _generator_norm(config: WGANConfig, name: str):
    if config.generator_norm == "batch":
        return layers.BatchNormalization(name=name)
    return layers.Identity(name=name)


def _critic_norm(config: WGANConfig, name: str):
    # Gulrajani et al.'s layer norm: statistics over height, width and channels of each sample,
    # scale and offset per channel -- GroupNormalization with one group.
    if config.critic_norm == "layer":
        return layers.GroupNormalization(groups=1, name=name)
    return layers.Identity(name=name)


def _conv(x, filters: int, kernel_size: int, config: WGANConfig, name: str, use_bias: bool = True):
    """A stride-1 convolution of the generator that keeps the size: zero padding ("same"), or
    with `generator_padding="reflect"` a `ReflectionPadding2D` then a "valid" convolution."""
    if config.generator_padding == "reflect" and kernel_size > 1:
        x = ReflectionPadding2D(kernel_size // 2, name=f"{name}_pad")(x)
        return layers.Conv2D(filters, kernel_size, padding="valid", use_bias=use_bias, name=name)(x)
    return layers.Conv2D(filters, kernel_size, padding="same", use_bias=use_bias, name=name)(x)


def _upsample_conv(x, filters, kernel_size, config: WGANConfig, name: str, use_bias: bool):
    if config.upsampling == "transposed":
        return layers.Conv2DTranspose(filters, kernel_size, strides=2, padding="same", use_bias=use_bias,
                                      name=f"{name}_transposed")(x)
    x = layers.UpSampling2D(2, interpolation=config.upsampling_interpolation, name=f"{name}_resize")(x)
    return _conv(x, filters, kernel_size, config, f"{name}_conv", use_bias)


def _inject_noise(x, latent, config: WGANConfig, name: str, salt: int):
    return NoiseInjection(salt=salt, name=name)([x, latent]) if config.noise_injection else x


def _generator_block(x, latent, filters: int, upsample: bool, config: WGANConfig, name: str, salt: int):
    """Pre-activation residual block: norm, ReLU, [up] conv 3x3, [noise], norm, ReLU, conv 3x3,
    [noise]; shortcut [up] conv 1x1 when the shape changes. Convs followed by batch norm need no
    bias. `salt` and `salt + 1` tell this block's noise maps from the other blocks'."""
    biased = config.generator_norm != "batch"
    h = _generator_norm(config, f"{name}_norm1")(x)
    h = layers.ReLU(name=f"{name}_relu1")(h)
    if upsample:
        h = _upsample_conv(h, filters, 3, config, f"{name}_up", biased)
    else:
        h = _conv(h, filters, 3, config, f"{name}_conv1", biased)
    h = _inject_noise(h, latent, config, f"{name}_noise1", salt)
    h = _generator_norm(config, f"{name}_norm2")(h)
    h = layers.ReLU(name=f"{name}_relu2")(h)
    h = _conv(h, filters, 3, config, f"{name}_conv2")
    h = _inject_noise(h, latent, config, f"{name}_noise2", salt + 1)
    if upsample:
        shortcut = _upsample_conv(x, filters, 1 if config.upsampling == "resize_conv" else 2, config,
                                  f"{name}_shortcut", True)
    elif x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, name=f"{name}_shortcut")(x)
    else:
        shortcut = x
    return layers.Add(name=f"{name}_add")([shortcut, h])


def build_generator(config: WGANConfig | None = None, name: str = "generator") -> keras.Model:
    """noise [B, latent_dim] -> images [B, resolution, resolution, channels] in [0, 1].

    Dense -> reshape to base_size^2 x filters -> `generator_extra_blocks` residual blocks at
    base_size -> per doubling one up-sampling residual block and `generator_blocks_per_stage - 1`
    residual blocks -> norm, ReLU, 3x3 conv, tanh, then mapped from [-1, 1] to [0, 1] (the
    toolkit's image range), so the model's output is an image. The output layer computes in
    float32 whatever the mixed-precision policy, so images and the critic's input are float32.
    Padding, up-sampling and noise inputs follow `config` (see `WGANConfig`).
    """
    config = config or WGANConfig()
    filters = stage_filters(config.generator_width, config.generator_max_filters, num_stages(config))
    noise = keras.Input((config.latent_dim,), name="noise")
    x = layers.Dense(config.base_size * config.base_size * filters[0],
                     use_bias=config.generator_norm != "batch", name="dense")(noise)
    x = layers.Reshape((config.base_size, config.base_size, filters[0]), name="reshape")(x)
    blocks = 0
    for block in range(config.generator_extra_blocks):
        x = _generator_block(x, noise, filters[0], False, config, f"base_block{block}", 2 * blocks)
        blocks += 1
    for stage, stage_width in enumerate(filters[1:], start=1):
        for block in range(config.generator_blocks_per_stage):
            x = _generator_block(x, noise, stage_width, block == 0, config, f"stage{stage}_block{block}", 2 * blocks)
            blocks += 1
    x = _generator_norm(config, "output_norm")(x)
    x = layers.ReLU(name="output_relu")(x)
    x = _conv(x, config.channels, 3, config, "output_conv")
    x = layers.Activation("tanh", dtype="float32", name="output_tanh")(x)
    images = layers.Rescaling(0.5, offset=0.5, dtype="float32", name="images")(x)
    return keras.Model(noise, images, name=name)


def _critic_block(x, filters: int, downsample: bool, config: WGANConfig, name: str,
                  image_filters: int | None = None):
    """Pre-activation residual block: norm, ReLU, conv 3x3, norm, ReLU, conv 3x3, [mean-pool];
    shortcut [mean-pool] then conv 1x1 when the width changes (Gulrajani et al.'s 'down' block;
    pooling first is the same linear map at a quarter of the cost).

    With `image_filters`, the block reads the image itself (Gulrajani et al.'s and Miyato et al.'s
    "optimized" first block): no norm or ReLU before its first conv, which widens the image's
    channels to `image_filters`; the shortcut is mean-pooled before its 1x1 conv (4x cheaper).
    """
    first = image_filters is not None
    inner = image_filters if first else x.shape[-1]
    h = x if first else layers.ReLU(name=f"{name}_relu1")(_critic_norm(config, f"{name}_norm1")(x))
    h = layers.Conv2D(inner, 3, padding="same", name=f"{name}_conv1")(h)
    h = _critic_norm(config, f"{name}_norm2")(h)
    h = layers.ReLU(name=f"{name}_relu2")(h)
    h = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv2")(h)
    shortcut = x
    if downsample:
        h = layers.AveragePooling2D(2, name=f"{name}_pool")(h)
        shortcut = layers.AveragePooling2D(2, name=f"{name}_shortcut_pool")(shortcut)
    if x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, name=f"{name}_shortcut")(shortcut)
    return layers.Add(name=f"{name}_add")([shortcut, h])


def build_critic(config: WGANConfig | None = None, name: str = "critic") -> keras.Model:
    """images [B, R, R, C] in [0, 1] -> scores [B, 1].

    Per halving one down-sampling residual block (and `critic_blocks_per_stage - 1` more; the
    very first reads the image, see `_critic_block`) -> `critic_extra_blocks` residual blocks at
    base_size -> ReLU -> dense 1 without bias (a constant offset cancels in every WGAN loss, so
    its gradient is always 0). The scores are float32 whatever the mixed-precision policy.
    """
    config = config or WGANConfig()
    filters = stage_filters(config.critic_width, config.critic_max_filters, num_stages(config))[::-1]
    images = keras.Input((config.resolution, config.resolution, config.channels), name="images")
    x = layers.Rescaling(2.0, offset=-1.0, name="to_signed")(images)
    for stage, stage_width in enumerate(filters[1:], start=1):
        for block in range(config.critic_blocks_per_stage):
            last = block == config.critic_blocks_per_stage - 1
            first = stage == 1 and block == 0
            width = stage_width if last else (filters[0] if first else x.shape[-1])
            x = _critic_block(x, width, last, config, f"stage{stage}_block{block}",
                              image_filters=filters[0] if first else None)
    for block in range(config.critic_extra_blocks):
        x = _critic_block(x, filters[-1], False, config, f"extra_block{block}")
    x = layers.ReLU(name="output_relu")(x)
    x = layers.Flatten(name="flatten")(x)
    scores = layers.Dense(1, use_bias=False, dtype="float32", name="score")(x)
    return keras.Model(images, scores, name=name)


def count_weight_layers(model: keras.Model) -> int:
    """Convolution and dense layers on the main path (1x1 shortcut convs not counted), the way
    network depths are quoted in papers."""
    return sum(1 for layer in model.layers
               if isinstance(layer, (layers.Conv2D, layers.Conv2DTranspose, layers.Dense))
               and "shortcut" not in layer.name)


def clone_generator(generator: keras.Model, name: str = "ema_generator") -> keras.Model:
    """A copy of `generator` with its own weights, equal to the generator's now (the start of its
    moving average). Each layer keeps its dtype policy."""
    clone = keras.models.clone_model(generator)
    clone.name = name  # the clone's layers keep their names; the model needs its own
    clone.set_weights(generator.get_weights())
    return clone


@keras.saving.register_keras_serializable(package="keras_forensics")
class WGAN(keras.Model):
    """Wasserstein GAN with gradient penalty (Gulrajani et al. 2017).

    The critic minimises E[D(A(G(z)))] - E[D(A(x))] + lambda * E[(||grad D(x_hat)||_2 - 1)^2] with
    x_hat = A(x) + u (A(G(z)) - A(x)), u ~ U[0, 1] per sample; the generator minimises
    -E[D(A(G(z)))]. A is DiffAugment (Zhao et al. 2020) with the `diffaugment` policy, a fresh
    random draw for every batch, real and fake alike (the identity with an empty policy).
    `train_step` takes a batch shaped [critic_steps, B, H, W, C] (a fresh real batch for every
    critic step, as in the paper's Algorithm 1) or [B, H, W, C] (the same real batch for every
    critic step), runs `critic_steps` critic updates and one generator update, then moves the
    moving average of the generator's weights, and returns the running means of: wasserstein
    (E[D(A(x))] - E[D(A(G(z)))], the critic's estimate of the Wasserstein-1 distance; Wang et
    al.'s Figure 1B), critic_loss, gradient_penalty, gradient_norm and generator_loss.

    With `ema_decay` > 0, `ema_generator` holds an exponential moving average of every weight of
    the generator (batch-norm statistics included), updated after each generator step with the
    decay min(ema_decay, (1 + t) / (10 + t)) at generator step t (tf.train.ExponentialMovingAverage's
    warm-up, so early weights are soon forgotten). It is never trained; `sampling_generator` (and
    calling the WGAN) uses it, so samples, validation figures and the export come from it.

    Args:
        generator: noise [B, latent_dim] -> images.
        critic: images -> scores [B, 1].
        critic_steps: critic updates per generator update (5 in the paper).
        gradient_penalty_weight: lambda (10 in the paper).
        gradient_norm_epsilon: added under the square root of the gradient norm.
        drift_weight: weight of E[D(x)^2] (Karras et al. 2018), which keeps scores near 0; 0 = off.
        diffaugment: DiffAugment ops ("color", "translation", "cutout"); () = none.
        diffaugment_translation: largest DiffAugment shift, a fraction of the side (1/8).
        diffaugment_cutout: side of the DiffAugment cutout square, a fraction of the side (1/2).
        ema_decay: decay of the moving average of the generator's weights; 0 = no average.
        seed: seed of the noise, the interpolation weights and the augmentations.

    Example:
        >>> config = WGANConfig(resolution=32, diffaugment=("color", "translation", "cutout"), ema_decay=0.999)
        >>> gan = WGAN.from_wgan_config(config)
        >>> gan.compile(keras.optimizers.Adam(1e-4, 0.0, 0.9), keras.optimizers.Adam(1e-4, 0.0, 0.9))
        >>> gan.fit(real_batches, steps_per_epoch=100)
        >>> images = gan(keras.random.normal((16, config.latent_dim)))  # from the moving average
    """

    def __init__(self, generator, critic, critic_steps=5, gradient_penalty_weight=10.0,
                 gradient_norm_epsilon=1e-12, drift_weight=0.0, diffaugment=(), diffaugment_translation=0.125,
                 diffaugment_cutout=0.5, ema_decay=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.critic = critic
        self.critic_steps = int(critic_steps)
        self.gradient_penalty_weight = gradient_penalty_weight
        self.gradient_norm_epsilon = gradient_norm_epsilon
        self.drift_weight = drift_weight
        self.diffaugment = tuple(diffaugment)
        self.diffaugment_translation = diffaugment_translation
        self.diffaugment_cutout = diffaugment_cutout
        self.ema_decay = float(ema_decay)
        self.seed = seed
        self.latent_dim = int(generator.input_shape[-1])
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.ema_generator = clone_generator(generator) if self.ema_decay else None
        self.trackers = {name: keras.metrics.Mean(name=name) for name in
                         ("wasserstein", "critic_loss", "gradient_penalty", "gradient_norm", "generator_loss")}
        self.built = True

    @classmethod
    def from_wgan_config(cls, config: WGANConfig, seed=None) -> "WGAN":
        """The generator and critic of `config`, with its loss, augmentation and averaging settings."""
        return cls(build_generator(config), build_critic(config), critic_steps=config.critic_steps,
                   gradient_penalty_weight=config.gradient_penalty_weight,
                   gradient_norm_epsilon=config.gradient_norm_epsilon, drift_weight=config.drift_weight,
                   diffaugment=config.diffaugment, diffaugment_translation=config.diffaugment_translation,
                   diffaugment_cutout=config.diffaugment_cutout, ema_decay=config.ema_decay, seed=seed)

    @property
    def sampling_generator(self) -> keras.Model:
        """What generates images: the moving average of the generator if there is one, else the
        generator itself. Samples, validation, `generate` and the export use it."""
        return self.ema_generator if self.ema_generator is not None else self.generator

    def call(self, noise, training=False):
        return self.sampling_generator(noise, training=training)

    def compile(self, generator_optimizer, critic_optimizer, **kwargs):
        """Two optimisers; the generator's is also `self.optimizer` (learning-rate logging, resume)."""
        super().compile(optimizer=generator_optimizer, **kwargs)
        self.generator_optimizer = generator_optimizer
        self.critic_optimizer = critic_optimizer
        # Built here on their own variables, so that Keras does not build the generator's
        # optimiser on every variable of the model, and resumed weights can be loaded at once.
        generator_optimizer.build(self.generator.trainable_variables)
        critic_optimizer.build(self.critic.trainable_variables)

    def get_compile_config(self):
        return {"generator_optimizer": keras.saving.serialize_keras_object(self.generator_optimizer),
                "critic_optimizer": keras.saving.serialize_keras_object(self.critic_optimizer)}

    def compile_from_config(self, config):
        self.compile(keras.saving.deserialize_keras_object(config["generator_optimizer"]),
                     keras.saving.deserialize_keras_object(config["critic_optimizer"]))

    @property
    def metrics(self):
        return list(self.trackers.values())

    def sample_noise(self, batch_size):
        return keras.random.normal((batch_size, self.latent_dim), seed=self.seed_generator)

    def interpolation_weights(self, batch_size):
        """u ~ U[0, 1], one per sample, [B, 1, 1, 1]: where between real and fake the penalty looks."""
        return keras.random.uniform((batch_size, 1, 1, 1), 0.0, 1.0, seed=self.seed_generator)

    def augment(self, images):
        """DiffAugment of a float32 batch with this model's policy (a fresh draw every call)."""
        return diff_augment(images, self.diffaugment, self.seed_generator, self.diffaugment_translation,
                            self.diffaugment_cutout)

    def gradient_penalty(self, real, fake):
        """(mean penalty, mean gradient norm) at random points between real and fake images.

        Computed in float32 under any mixed-precision policy: the critic's layers cast their
        input, and the norm of a bfloat16 gradient would be too coarse for a penalty on |g| - 1.
        """
        real, fake = tf.cast(real, "float32"), tf.cast(fake, "float32")
        mixed = real + self.interpolation_weights(tf.shape(real)[0]) * (fake - real)
        with tf.GradientTape() as tape:
            tape.watch(mixed)
            scores = tf.cast(self.critic(mixed, training=True), "float32")
        gradient = tf.cast(tape.gradient(scores, mixed), "float32")
        norm = tf.sqrt(tf.reduce_sum(tf.square(gradient), axis=[1, 2, 3]) + self.gradient_norm_epsilon)
        return tf.reduce_mean(tf.square(norm - 1.0)), tf.reduce_mean(norm)

    def critic_step(self, real):
        """One critic update on a real batch; the generator's weights are not touched. The critic
        sees, and the penalty interpolates between, the augmented real and fake images."""
        real = self.augment(tf.cast(real, "float32"))
        fake = self.augment(tf.cast(self.generator(self.sample_noise(tf.shape(real)[0]), training=True), "float32"))
        with tf.GradientTape() as tape:
            real_scores = tf.cast(self.critic(real, training=True), "float32")
            fake_scores = tf.cast(self.critic(fake, training=True), "float32")
            wasserstein = tf.reduce_mean(real_scores) - tf.reduce_mean(fake_scores)
            penalty, norm = self.gradient_penalty(real, fake)
            loss = -wasserstein + self.gradient_penalty_weight * penalty
            if self.drift_weight:
                loss += self.drift_weight * tf.reduce_mean(tf.square(real_scores))
        gradients = tape.gradient(loss, self.critic.trainable_variables)
        self.critic_optimizer.apply_gradients(zip(gradients, self.critic.trainable_variables))
        return {"wasserstein": wasserstein, "critic_loss": loss, "gradient_penalty": penalty, "gradient_norm": norm}

    def generator_step(self, batch_size):
        """One generator update through the augmentation; the critic's weights are not touched."""
        noise = self.sample_noise(batch_size)
        with tf.GradientTape() as tape:
            fake = self.augment(tf.cast(self.generator(noise, training=True), "float32"))
            loss = -tf.reduce_mean(tf.cast(self.critic(fake, training=True), "float32"))
        gradients = tape.gradient(loss, self.generator.trainable_variables)
        self.generator_optimizer.apply_gradients(zip(gradients, self.generator.trainable_variables))
        return loss

    def ema_step_decay(self):
        """The decay of the next moving-average update: min(ema_decay, (1 + t) / (10 + t)), t the
        generator steps done."""
        steps = tf.cast(self.generator_optimizer.iterations, "float32")
        return tf.minimum(tf.constant(self.ema_decay, "float32"), (1.0 + steps) / (10.0 + steps))

    def update_ema(self):
        """ema <- decay * ema + (1 - decay) * weight, for every weight of the generator."""
        if self.ema_generator is None:
            return
        decay = self.ema_step_decay()
        for average, weight in zip(self.ema_generator.weights, self.generator.weights):
            value = tf.cast(weight, "float32")
            average.assign(tf.cast(decay * tf.cast(average, "float32") + (1.0 - decay) * value, average.dtype))

    def train_step(self, data):
        real = data[0] if isinstance(data, (tuple, list)) else data
        per_step = real.shape.rank == 5
        for step in range(self.critic_steps):
            results = self.critic_step(real[step] if per_step else real)
            for name, value in results.items():
                self.trackers[name].update_state(value)
        batch_size = tf.shape(real)[1 if per_step else 0]
        self.trackers["generator_loss"].update_state(self.generator_step(batch_size))
        self.update_ema()
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def get_config(self):
        config = super().get_config()
        config.update(
            generator=keras.saving.serialize_keras_object(self.generator),
            critic=keras.saving.serialize_keras_object(self.critic),
            critic_steps=self.critic_steps, gradient_penalty_weight=self.gradient_penalty_weight,
            gradient_norm_epsilon=self.gradient_norm_epsilon, drift_weight=self.drift_weight,
            diffaugment=list(self.diffaugment), diffaugment_translation=self.diffaugment_translation,
            diffaugment_cutout=self.diffaugment_cutout, ema_decay=self.ema_decay, seed=self.seed,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        generator = keras.saving.deserialize_keras_object(config.pop("generator"))
        critic = keras.saving.deserialize_keras_object(config.pop("critic"))
        return cls(generator, critic, **config)
