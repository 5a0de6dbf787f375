"""WGAN-GP sanity: what learns when, the gradient penalty, finite losses, saving."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

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


def test_paper_preset_has_a_34_layer_generator_and_a_15_layer_critic():
    """Wang et al.'s depths, counted as conv and dense layers on the main path (widths do not matter)."""
    import dataclasses

    from keras_forensics.config import WGAN_PRESETS
    from keras_forensics.models.wgan import count_weight_layers

    paper = dataclasses.replace(WGAN_PRESETS["paper"]["model"], generator_width=2, generator_max_filters=4,
                                critic_width=2, critic_max_filters=4)
    generator, critic = build_generator(paper), build_critic(paper)
    assert (count_weight_layers(generator), count_weight_layers(critic)) == (34, 15)
    assert (paper.generator_depth, paper.critic_depth) == (34, 15)
    assert generator.output_shape == (None, 256, 256, 1) and critic.output_shape == (None, 1)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in critic.layers)
    # The generator up-samples by resize-convolution, never by transposed convolution.
    assert not any(isinstance(layer, keras.layers.Conv2DTranspose) for layer in generator.layers)


def test_mixed_bfloat16_step_keeps_float32_weights_images_and_penalty():
    from keras_forensics.training.common import dtype_policy

    keras.utils.set_random_seed(0)
    with dtype_policy("mixed_bfloat16"):
        model = WGAN.from_wgan_config(TINY, seed=0)
    model.compile(keras.optimizers.Adam(1e-3, beta_1=0.0, beta_2=0.9),
                  keras.optimizers.Adam(1e-3, beta_1=0.0, beta_2=0.9))
    assert keras.mixed_precision.global_policy().name == "float32"
    assert model.generator.get_layer("stage1_block0_conv2").compute_dtype == "bfloat16"
    logs = model.train_step(tf.constant(real_batches()))
    assert all(np.isfinite(float(value)) for value in logs.values())
    assert 0.0 < float(logs["gradient_norm"]) < 100.0
    assert all(v.dtype == "float32" for v in model.trainable_variables)
    noise = np.zeros((2, TINY.latent_dim), np.float32)
    assert model(noise).dtype == "float32" and model.critic(model(noise)).dtype == "float32"


# ---------------------------------------------------------------------------------------------
# The trainer and the commands around it, on a few tiny blots


def write_blots(folder, count=4, size=40, bit_depth=8, colour=False, seed=0):
    from PIL import Image

    from keras_forensics.data.blots import quantize, render_blots

    folder.mkdir(parents=True)
    for index, image in enumerate(render_blots(count, size, seed)):
        if colour:  # blue-tinted bands
            image = np.stack([image, image, np.clip(image + 0.3 * (1 - image), 0, 1)], axis=-1)
        Image.fromarray(quantize(image, bit_depth)).save(folder / f"blot_{index}.png")
    return folder


def tiny_train_config(folder, **overrides):
    from keras_forensics.config import WGANTrainConfig

    options = dict(model=TINY, data=(str(folder),), data_scale=1.0, patch_stride=8, min_std=0.0, batch_size=4,
                   steps=2, validate_every=1, validation_images=8, swd_patches_per_image=8, swd_directions=8,
                   swd_repeats=1, sample_every=1, sample_grid=2, log_every=1)
    return WGANTrainConfig(**{**options, **overrides})


def test_training_resumes_and_16_bit_blots_give_16_bit_fakes(tmp_path, capsys):
    import dataclasses
    import json

    from keras_forensics import generate
    from keras_forensics.data.io import file_bit_depth
    from keras_forensics.errors import ForensicsError
    from keras_forensics.training import wgan as trainer

    config = tiny_train_config(write_blots(tmp_path / "blots", bit_depth=16))
    run = trainer.train(config, tmp_path / "run")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 2 and np.isfinite(metrics["test"]["swd"])
    assert json.loads((run / "generator.json").read_text())["bit_depth"] == 16
    assert sorted(p.name for p in (run / "samples").iterdir())[:2] == ["step_0000001.png", "step_0000002.png"]
    # The same command, with the schedule extended by one step, resumes at step 2 (not from 0,
    # which would also end at step 3) with the optimisers' state.
    capsys.readouterr()
    trainer.train(dataclasses.replace(config, steps=3), run)
    assert f"resuming {run} at step 2" in capsys.readouterr().out
    assert json.loads((run / "metrics.json").read_text())["steps"] == 3
    with pytest.raises(ForensicsError, match="different configuration"):
        trainer.train(dataclasses.replace(config, batch_size=2), run)

    result = generate.generate_wgan(str(run), n=3, out=str(tmp_path / "fakes"))
    assert result["bit_depth"] == 16 and file_bit_depth(tmp_path / "fakes" / "fake_00002.png") == 16
    evaluation = trainer.evaluate(str(run), n=8)
    assert np.isfinite(evaluation["swd"]) and np.isfinite(evaluation["spectral_distance"])
    assert (run / "evaluation.json").exists()
    picture = np.asarray(Image.open(evaluation["picture"]))  # real blots above generated ones
    assert evaluation["picture"].endswith("evaluation_real_vs_generated.png") and picture.shape[0] > picture.shape[1] / 4

    # A run stopped before its end has no model.keras: export, like generate, uses its latest
    # checkpoint, and the SavedModel reproduces it (the export checks that itself).
    from keras_forensics.serving import export as exporting

    (run / "model.keras").unlink()
    exported = exporting.export("wgan", run, export_base=tmp_path / "saved", version=1, verbose=False)
    assert (exported.path / "saved_model.pb").is_file() and max(exported.max_abs_diff.values()) < 1e-4


def test_user_mistakes_give_one_line_errors_and_leave_no_model_dir(tmp_path, capsys):
    from keras_forensics import generate, train
    from keras_forensics.config import WGANTrainConfig
    from keras_forensics.errors import ForensicsError
    from keras_forensics.training import wgan as trainer

    run = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        train.main(["wgan", "--data", str(tmp_path / "missing"), "--model_dir", str(run)])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and error.startswith("error: --data") and "Traceback" not in error
    assert not run.exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ForensicsError, match="no readable images"):
        trainer.train(tiny_train_config(tmp_path / "empty"), run)
    assert not run.exists()
    gray = write_blots(tmp_path / "gray")
    rgb = WGANConfig(**{**TINY.__dict__, "channels": 3})
    with pytest.raises(ForensicsError, match="grayscale"):
        trainer.load_blots(tiny_train_config(gray, model=rgb))
    with pytest.raises(ForensicsError, match="grayscale"):
        trainer.load_blots(WGANTrainConfig(model=rgb))  # the rendered default blots
    # Colour blots feed an RGB model in colour.
    patches = trainer.load_blots(tiny_train_config(write_blots(tmp_path / "colour", colour=True), model=rgb))[0].patches
    assert patches.shape[-1] == 3 and np.abs(patches[..., 2].astype(int) - patches[..., 0]).max() > 20
    with pytest.raises(ForensicsError, match="--direction must be a_to_b or b_to_a, got 'a2b'"):
        generate.translate_cyclegan(str(tmp_path / "run"), str(gray), direction="a2b")
    with pytest.raises(ForensicsError, match="no such file or folder"):
        generate.generate_wgan(str(tmp_path / "nowhere"))
