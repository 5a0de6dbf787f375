"""WGAN-GP sanity: what learns when, the gradient penalty, finite losses, saving; issue 16's
realistic generator, DiffAugment, the moving average and the realism figures."""

from pathlib import Path

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
    from keras_forensics.evaluation.gan import evaluate_wgan
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
    evaluation = evaluate_wgan(str(run), n=8, two_sample=False)
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


# ---------------------------------------------------------------------------------------------
# Issue 16: the realistic generator (no blocks, no frame), DiffAugment, the moving average


REALISTIC = WGANConfig(**{**TINY.__dict__, "upsampling_interpolation": "bilinear", "generator_padding": "reflect",
                          "noise_injection": True, "diffaugment": ("color", "translation", "cutout"),
                          "ema_decay": 0.5})


def test_the_realistic_generator_pads_every_conv_by_reflection_and_up_samples_bilinearly():
    from keras_forensics.config import WGAN_PRESETS
    from keras_forensics.layers import NoiseInjection, ReflectionPadding2D

    model = dataclasses_replace(WGAN_PRESETS["realistic"]["model"], generator_width=2, generator_max_filters=8)
    generator = build_generator(model)
    convs = [layer for layer in generator.layers if isinstance(layer, keras.layers.Conv2D)]
    assert not any(isinstance(layer, keras.layers.Conv2DTranspose) for layer in generator.layers)
    spatial = [layer for layer in convs if layer.kernel_size != (1, 1)]
    assert len(spatial) == 2 * model.stages + 1  # two per block, and the output conv
    for layer in spatial:  # no conv pads with zeros: each reads a reflection-padded input
        assert layer.padding == "valid"
        padding = generator.get_layer(f"{layer.name}_pad")
        assert isinstance(padding, ReflectionPadding2D) and layer.input is padding.output
    assert {layer.interpolation for layer in generator.layers if isinstance(layer, keras.layers.UpSampling2D)} == \
        {"bilinear"}
    assert sum(isinstance(layer, NoiseInjection) for layer in generator.layers) == 2 * model.stages
    assert generator.output_shape == (None, 128, 128, 1)
    # The legacy "shipped" generator (saved_models/wgan/1) is unchanged: zero padding, nearest, no noise.
    legacy = build_generator(dataclasses_replace(WGAN_PRESETS["shipped"]["model"], generator_width=2,
                                                 generator_max_filters=8))
    assert not any(isinstance(layer, (ReflectionPadding2D, NoiseInjection)) for layer in legacy.layers)
    assert all(layer.padding == "same" for layer in legacy.layers if isinstance(layer, keras.layers.Conv2D))


def test_at_init_resize_conv_output_has_no_8_or_16_px_periodic_peak_unlike_transposed():
    from keras_forensics.metrics.gan_quality import periodic_peak
    from keras_forensics.models.wgan import sample_noise

    base = WGANConfig(resolution=128, generator_width=4, generator_max_filters=32)
    noise = sample_noise(24, base.latent_dim, 0)
    peaks = {}
    for name, config in (("realistic", dataclasses_replace(base, upsampling_interpolation="bilinear",
                                                             generator_padding="reflect", noise_injection=True)),
                         ("transposed", dataclasses_replace(base, upsampling="transposed"))):
        keras.utils.set_random_seed(0)
        images = build_generator(config)(noise).numpy()
        peaks[name] = [periodic_peak(images, period) for period in (8, 16)]
    assert max(abs(peak) for peak in peaks["realistic"]) < 0.05, peaks
    assert min(peaks["transposed"]) > 0.2, peaks  # the measure does see a checkerboard


def dataclasses_replace(config, **changes):
    import dataclasses

    return dataclasses.replace(config, **changes)


def test_the_moving_average_starts_as_the_generator_then_lags_it_by_the_warm_up_decay(tmp_path):
    model = tiny_wgan(REALISTIC)
    average, raw = model.ema_generator, model.generator
    assert average is not raw and model.sampling_generator is average
    for a, b in zip(average.weights, raw.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    before = [keras.ops.convert_to_numpy(w) for w in raw.weights]
    model.train_step(tf.constant(real_batches(REALISTIC)))
    after = [keras.ops.convert_to_numpy(w) for w in raw.weights]
    decay = min(REALISTIC.ema_decay, 2 / 11)  # (1 + t) / (10 + t) after the first generator step
    for a, old, new in zip(average.weights, before, after):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), decay * old + (1 - decay) * new, atol=1e-6)
    for step in range(4):
        model.train_step(tf.constant(real_batches(REALISTIC, seed=10 + step)))
    kernel = [i for i, w in enumerate(raw.weights) if w.path.endswith("dense/kernel")][0]
    start = before[kernel]
    now, smoothed = (keras.ops.convert_to_numpy(net.weights[kernel]) for net in (raw, average))
    # It differs from the raw weights, and stays between them and where they came from.
    assert np.abs(smoothed - now).max() > 1e-5
    assert np.abs(smoothed - now).mean() < np.abs(start - now).mean()
    noise = np.random.default_rng(1).normal(size=(2, REALISTIC.latent_dim)).astype(np.float32)
    np.testing.assert_array_equal(model(noise).numpy(), average(noise).numpy())
    # The average is part of the weights a checkpoint holds, so a resumed run continues it.
    model.save_weights(tmp_path / "checkpoint.weights.h5")
    resumed = tiny_wgan(REALISTIC, seed=1)
    resumed.load_weights(tmp_path / "checkpoint.weights.h5")
    np.testing.assert_array_equal(resumed(noise).numpy(), average(noise).numpy())
    assert int(resumed.generator_optimizer.iterations) == 5


def test_diffaugment_reaches_the_critic_for_real_and_fake_and_the_step_stays_finite():
    class Recording(keras.Model):
        """The critic, keeping every batch it is shown."""

        def __init__(self, inner):
            super().__init__()
            self.inner, self.seen = inner, []

        def call(self, images, training=False):
            self.seen.append(keras.ops.convert_to_numpy(images))
            return self.inner(images, training=training)

    model = tiny_wgan(dataclasses_replace(REALISTIC, diffaugment=("cutout",)))
    model.critic = Recording(model.critic)
    model.critic_step(tf.constant(real_batches(REALISTIC)[0]))
    real, fake = model.critic.seen[:2]  # the critic's first two calls: the real batch, then the fake one
    assert (real == 0.5).mean() > 0.05 and (fake == 0.5).mean() > 0.05  # both carry cutout squares
    logs = tiny_wgan(REALISTIC).train_step(tf.constant(real_batches(REALISTIC)))
    assert all(np.isfinite(float(value)) for value in logs.values())


def test_new_fields_are_range_checked_and_old_configs_load_as_the_legacy_model():
    from keras_forensics import config as config_lib
    from keras_forensics.config import WGAN_PRESETS, WGANTrainConfig
    from keras_forensics.errors import ForensicsError

    for field, value, message in (("ema_decay", 1.0, "ema_decay"), ("diffaugment", ("zoom",), "diffaugment"),
                                  ("generator_padding", "circular", "generator_padding"),
                                  ("diffaugment_translation", 0.7, "diffaugment_translation")):
        with pytest.raises(ForensicsError, match=message):
            config_lib.replace(WGANConfig(), **{field: value})
    shipped = config_lib.replace(WGANTrainConfig(), **WGAN_PRESETS["shipped"])
    old = config_lib.to_dict(shipped)
    for field in ("generator_padding", "noise_injection", "diffaugment", "diffaugment_translation",
                  "diffaugment_cutout", "ema_decay"):
        del old["model"][field]  # a config.json written before issue 16
    assert config_lib.from_dict(WGANTrainConfig, old) == shipped
    assert (shipped.model.ema_decay, shipped.model.diffaugment, shipped.model.generator_padding) == (0.0, (), "zero")
    realistic = config_lib.replace(WGANTrainConfig(), **WGAN_PRESETS["realistic"])
    assert realistic.model.resolution == 128 and realistic.model.ema_decay == 0.999 and realistic.flip
    assert realistic.model.diffaugment == ("color", "translation", "cutout")
    assert realistic.data == ("../shared/data/western_blots/real",) and realistic.export_base == "saved_models"
    assert config_lib.replace(WGANTrainConfig(), diffaugment="color,cutout").model.diffaugment == ("color", "cutout")


def test_the_shipped_generator_1_still_loads_and_samples():
    from pathlib import Path

    from keras_forensics import artifacts

    shipped = Path(__file__).resolve().parents[2] / "saved_models" / "wgan" / "1"
    if not shipped.is_dir():
        pytest.skip("saved_models/wgan/1 is not in this checkout")
    loaded = artifacts.load_generator(shipped, "wgan")
    images = loaded.sample(np.zeros((2, 128), np.float32))
    assert images.shape == (2, 128, 128, 1) and 0.0 <= images.min() and images.max() <= 1.0


def test_a_realistic_run_exports_its_moving_average_and_reports_the_four_figures(tmp_path):
    import dataclasses
    import json

    from keras_forensics import artifacts
    from keras_forensics.evaluation.gan import evaluate_wgan
    from keras_forensics.evaluation.two_sample import CLASSIFIER, TwoSampleOptions
    from keras_forensics.serving import export as exporting
    from keras_forensics.training import wgan as trainer

    config = tiny_train_config(write_blots(tmp_path / "blots", count=6), model=REALISTIC, steps=2)
    run = trainer.train(config, tmp_path / "run")
    model = artifacts.load_keras(run / "model.keras")
    assert json.loads((run / "metrics.json").read_text())["steps"] == 2 and model.ema_generator is not None
    exported = exporting.export_generator("wgan", run, export_base=tmp_path / "saved", version=1)
    served = artifacts.load_generator(exported, "wgan")
    noise = np.random.default_rng(0).normal(size=(2, REALISTIC.latent_dim)).astype(np.float32)
    np.testing.assert_allclose(served.sample(noise), model.ema_generator(noise).numpy(), atol=1e-5)
    assert np.abs(served.sample(noise) - model.generator(noise).numpy()).max() > 1e-4  # not the raw weights
    info = json.loads((run / "generator.json").read_text())
    assert info["ema_decay"] == 0.5 and info["train_groups"] and info["validation_groups"]

    options = TwoSampleOptions(folds=2, steps=5, batch_size=4, crop_size=16,
                               classifier=dataclasses.replace(CLASSIFIER, filters=(4, 8), spectrum_filters=(4,)))
    result = evaluate_wgan(str(exported), n=8, options=options, out=tmp_path / "evaluation.json")
    for figure in ("swd", "spectral_distance", "two_sample_auc", "memorisation_ratio"):
        assert np.isfinite(result[figure]) and np.isfinite(result[f"{figure}_real_reference"]), figure
    assert set(result["targets"]) == {"swd_vs_floor", "spectral_distance_vs_floor", "two_sample_auc",
                                      "memorisation_ratio"}
    assert result["memorisation_size"] == 16 and "periodic_peak_8" in result
    key = "".join(result["shuffled_key"]).replace(" ", "")
    assert sorted(set(key)) == ["G", "R"] and key.count("G") == key.count("R")
    assert json.loads(Path(result["out"]).read_text())["two_sample_auc"] == result["two_sample_auc"]
