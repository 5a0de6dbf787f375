"""WGAN-GP sanity: what learns when, the gradient penalty, finite losses, saving."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_forensics.config import WGANConfig
from keras_forensics.models.wgan import WGAN, build_critic, build_generator

TINY = WGANConfig(resolution=16, latent_dim=8, generator_width=4, generator_max_filters=8, critic_width=4,
                  critic_max_filters=8, critic_steps=2, critic_extra_blocks=1)


def tiny_wgan(config=TINY, seed=0):
    keras.utils.set_random_seed(seed)
    model = WGAN.from_wgan_config(config, seed=seed)
    model.compile(keras.optimizers.Adam(1e-3, beta_1=0.0, beta_2=0.9),
                  keras.optimizers.Adam(1e-3, beta_1=0.0, beta_2=0.9))
    return model


def real_batches(config=TINY, batch=4, seed=1):
    """[critic_steps, batch, R, R, 1]: one real batch per critic step."""
    rng = np.random.default_rng(seed)
    return rng.random((config.critic_steps, batch, config.resolution, config.resolution, 1)).astype(np.float32)


def snapshot(network):
    return [keras.ops.convert_to_numpy(v) for v in network.trainable_variables]


def changed(network, before):
    return [not np.array_equal(keras.ops.convert_to_numpy(v), b) for v, b in zip(network.trainable_variables, before)]


def test_critic_step_changes_only_the_critic_and_a_train_step_changes_every_weight():
    model = tiny_wgan()
    generator_before, critic_before = snapshot(model.generator), snapshot(model.critic)
    model.critic_step(real_batches()[0])
    assert not any(changed(model.generator, generator_before))
    assert all(changed(model.critic, critic_before))
    model.train_step(tf.constant(real_batches(seed=2)))
    names = [v.path for v in model.generator.trainable_variables]
    assert all(changed(model.generator, generator_before)), [n for n, c in zip(
        names, changed(model.generator, generator_before)) if not c]
    assert all(changed(model.critic, critic_before))


def test_gradient_penalty_of_a_one_lipschitz_critic_is_zero():
    size = TINY.resolution * TINY.resolution
    direction = np.random.default_rng(0).normal(size=(size, 1)).astype(np.float32)

    def linear_critic(scale):
        critic = keras.Sequential([keras.Input((TINY.resolution, TINY.resolution, 1)), keras.layers.Flatten(),
                                   keras.layers.Dense(1, use_bias=False)])
        critic.layers[-1].kernel.assign(scale * direction / np.linalg.norm(direction))
        return critic

    real, fake = real_batches()[0], real_batches(seed=3)[0]
    penalty, norm = WGAN(build_generator(TINY), linear_critic(1.0), seed=0).gradient_penalty(real, fake)
    assert float(penalty) < 1e-8 and float(norm) == pytest.approx(1.0, abs=1e-5)
    # A 2-Lipschitz map is penalised by (2 - 1)^2.
    penalty, _ = WGAN(build_generator(TINY), linear_critic(2.0), seed=0).gradient_penalty(real, fake)
    assert float(penalty) == pytest.approx(1.0, abs=1e-4)
    # A critic with zero gradient: the epsilon under the square root keeps the penalty's gradient finite.
    flat = WGAN(build_generator(TINY), linear_critic(0.0), seed=0)
    with tf.GradientTape() as tape:
        penalty, _ = flat.gradient_penalty(real, fake)
    gradient = tape.gradient(penalty, flat.critic.trainable_variables)[0]
    assert np.all(np.isfinite(gradient)) and float(penalty) == pytest.approx(1.0, abs=1e-5)


def test_interpolation_weights_are_uniform_between_real_and_fake():
    """keras-io draws them from a normal distribution, which puts points outside the segment."""
    model = WGAN(build_generator(TINY), build_critic(TINY), seed=0)
    weights = np.array([float(model.interpolation_weights(1)[0, 0, 0, 0]) for _ in range(400)])
    assert weights.min() >= 0.0 and weights.max() <= 1.0
    assert weights.mean() == pytest.approx(0.5, abs=0.05) and weights.std() == pytest.approx(12 ** -0.5, abs=0.03)


def test_losses_are_finite_in_graph_mode():
    model = tiny_wgan()
    data = tf.data.Dataset.from_tensors(real_batches()).repeat()
    history = model.fit(data, steps_per_epoch=3, epochs=1, verbose=0, shuffle=False)
    assert set(history.history) == {"wasserstein", "critic_loss", "gradient_penalty", "gradient_norm",
                                    "generator_loss"}
    assert all(np.isfinite(values[-1]) for values in history.history.values())
    assert int(model.generator_optimizer.iterations) == 3
    assert int(model.critic_optimizer.iterations) == 3 * TINY.critic_steps


@pytest.mark.parametrize("upsampling", ["resize_conv", "transposed"])
def test_save_and_load_round_trip(tmp_path, upsampling):
    config = WGANConfig(**{**TINY.__dict__, "upsampling": upsampling, "channels": 3})
    model = tiny_wgan(config)
    model.train_step(tf.constant(real_batches(config)[..., [0, 0, 0]]))
    path = tmp_path / "wgan.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    noise = np.random.default_rng(4).normal(size=(3, config.latent_dim)).astype(np.float32)
    images = model(noise).numpy()
    assert images.shape == (3, 16, 16, 3) and images.min() >= 0.0 and images.max() <= 1.0
    np.testing.assert_allclose(loaded(noise).numpy(), images, atol=1e-6)
    np.testing.assert_allclose(loaded.critic(images).numpy(), model.critic(images).numpy(), atol=1e-5)
    assert int(loaded.critic_optimizer.iterations) == config.critic_steps
    assert loaded.get_config()["critic_steps"] == config.critic_steps
