"""CycleGAN sanity: the cycle loss, the image pool, one finite training step, saving."""

import keras
import numpy as np
import pytest

from keras_forensics.config import CycleGANConfig
from keras_forensics.layers import ImagePool
from keras_forensics.models.cyclegan import CycleGAN, build_patch_discriminator

TINY = CycleGANConfig(image_size=16, generator_width=4, residual_blocks=1, discriminator_width=4,
                      discriminator_layers=2, pool_size=4)


def images(seed, count=2, size=16):
    return np.random.default_rng(seed).random((count, size, size, 1)).astype(np.float32)


def test_cycle_loss_of_identity_generators_is_zero():
    identity = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Identity()])
    model = CycleGAN(identity, identity, build_patch_discriminator(TINY), build_patch_discriminator(TINY),
                     pool_size=0, image_shape=(16, 16, 1))
    assert float(model.cycle_consistency_loss(images(0), images(1))) == 0.0
    # Untrained ResNet generators do not invert each other.
    untrained = CycleGAN.from_cyclegan_config(TINY, seed=0)
    assert float(untrained.cycle_consistency_loss(images(0), images(1))) > 0.01


def test_image_pool_fills_then_swaps_half_for_stored_images():
    pool = ImagePool(50, (2, 2, 1), seed=0)
    old = np.arange(50, dtype=np.float32)[:, None, None, None] * np.ones((1, 2, 2, 1), np.float32)
    # While filling, the images come back unchanged and are stored.
    np.testing.assert_array_equal(pool(old[:30]).numpy(), old[:30])
    np.testing.assert_array_equal(pool(old[30:]).numpy(), old[30:])
    assert int(pool.count) == 50 and np.array_equal(np.sort(pool.images.numpy()[:, 0, 0, 0]), np.arange(50))
    new = 1000 + np.arange(2000, dtype=np.float32)[:, None, None, None] * np.ones((1, 2, 2, 1), np.float32)
    returned = pool(new).numpy()[:, 0, 0, 0]
    kept = returned == new[:, 0, 0, 0]
    # About half come back as they are, the rest are stored images from before this batch.
    assert kept.mean() == pytest.approx(0.5, abs=0.05)
    assert set(returned[~kept]) <= set(range(50))
    assert np.all(pool.images.numpy() >= 1000)  # 1000 swaps overwrite every one of the 50 slots
    # pool_size=0 turns the pool off.
    np.testing.assert_array_equal(ImagePool(0, (2, 2, 1))(new[:3]).numpy(), new[:3])


def test_train_step_losses_are_finite_and_model_round_trips(tmp_path):
    keras.utils.set_random_seed(0)
    model = CycleGAN.from_cyclegan_config(TINY, seed=0)
    model.compile(*[keras.optimizers.Adam(2e-4, beta_1=0.5) for _ in range(4)])
    logs = model.train_step({"a": images(2), "b": images(3)})
    assert all(np.isfinite(float(value)) for value in logs.values())
    path = tmp_path / "cyclegan.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    odd_size = images(4, count=1, size=20)  # fully convolutional: any size divisible by 4
    np.testing.assert_allclose(loaded(odd_size).numpy(), model(odd_size).numpy(), atol=1e-5)
    np.testing.assert_allclose(loaded.generator_ba(odd_size).numpy(), model.generator_ba(odd_size).numpy(),
                               atol=1e-5)
    np.testing.assert_array_equal(loaded.pool_b.images.numpy(), model.pool_b.images.numpy())


def test_four_adam_optimisers_hold_then_decay_linearly_to_zero():
    from keras_forensics.config import CycleGANTrainConfig
    from keras_forensics.training.cyclegan import build_model

    model = build_model(CycleGANTrainConfig(model=TINY, steps=100), total_steps=100)
    optimizers = list(model.optimizers_by_network.values())
    assert len({id(optimizer) for optimizer in optimizers}) == 4
    for optimizer in optimizers:
        assert float(optimizer.beta_1) == 0.5
        rates = []
        for step in (0, 50, 75, 100):
            optimizer.iterations.assign(step)
            rates.append(float(optimizer.learning_rate))
        np.testing.assert_allclose(rates, [2e-4, 2e-4, 1e-4, 0.0], atol=1e-9)


def test_embedded_demo_domains_are_clean_and_overexposed_blots_and_refuse_rgb():
    from keras_forensics.config import CycleGANTrainConfig
    from keras_forensics.data.blots import BlotStyle
    from keras_forensics.errors import ForensicsError
    from keras_forensics.training.cyclegan import load_domain

    config = CycleGANTrainConfig(model=TINY, demo_count=8)
    clean, depth = load_domain((), config, BlotStyle.clean(), 0, "--domain_a")
    overexposed, _ = load_domain((), config, BlotStyle.overexposed(), 1, "--domain_b")
    assert depth == 8 and clean.patches.shape == (8, config.tile_size, config.tile_size)
    # Domain B is darker where the bands saturate and greyer where the membrane is uneven.
    assert (clean.patches < 10).mean() < (overexposed.patches < 10).mean()
    assert np.median(clean.patches) > np.median(overexposed.patches)
    rgb = CycleGANTrainConfig(model=CycleGANConfig(**{**TINY.__dict__, "channels": 3}))
    with pytest.raises(ForensicsError, match="grayscale"):
        load_domain((), rgb, BlotStyle.clean(), 0, "--domain_a")


# ---------------------------------------------------------------------------------------------
# Issue 16: real blots to overexposed versions of themselves, and the realism figures


def test_overexposure_saturates_bands_greys_the_membrane_and_keeps_the_type():
    from keras_forensics.data.blots import overexpose, quantize, render_blots

    blots = render_blots(4, 32, seed=0)
    exposed = overexpose(blots, gain=2.0, spread=0.0)
    np.testing.assert_allclose(exposed, 1.0 - np.clip(2.0 * (1.0 - blots), 0, 1), atol=1e-6)
    assert (exposed == 0).mean() > (blots == 0).mean()  # band cores clip to black
    assert np.all(exposed <= blots + 1e-6)  # never lighter
    stored = quantize(blots, 8)
    assert overexpose(stored).dtype == np.uint8 and overexpose(quantize(blots, 16)).dtype == np.uint16
    # Spreading blurs the darkness first: a single dark pixel bleeds into its neighbours.
    dot = np.ones((1, 9, 9), np.float32)
    dot[0, 4, 4] = 0.0
    spread = overexpose(dot, gain=1.0, spread=1.0)
    assert spread[0, 4, 4] > 0.5 and spread[0, 4, 5] < 1.0 and spread[0, 0, 0] == pytest.approx(1.0, abs=1e-3)


def test_domain_b_from_a_is_checked():
    from keras_forensics.config import CycleGANTrainConfig
    from keras_forensics.errors import ForensicsError

    with pytest.raises(ForensicsError, match="not both"):
        CycleGANTrainConfig(domain_a=("a",), domain_b=("b",), domain_b_from_a="overexposed")
    with pytest.raises(ForensicsError, match="domain_b_from_a must be"):
        CycleGANTrainConfig(domain_a=("a",), domain_b_from_a="sepia")
    assert CycleGANTrainConfig(domain_a=("a",), domain_b_from_a="overexposed").domain_b == ()


def test_a_run_on_blots_and_their_overexposed_selves_reports_cycle_paired_and_realism_figures(tmp_path):
    import dataclasses
    import json

    from keras_forensics.config import CycleGANTrainConfig
    from keras_forensics.data.blots import overexpose
    from keras_forensics.errors import ForensicsError
    from keras_forensics.evaluation.gan import evaluate_cyclegan
    from keras_forensics.evaluation.two_sample import CLASSIFIER, TwoSampleOptions
    from keras_forensics.training import cyclegan as trainer
    from test_wgan import write_blots  # same folder: pytest puts it on the path

    folder = write_blots(tmp_path / "blots", count=6)
    config = CycleGANTrainConfig(model=TINY, domain_a=(str(folder),), domain_b_from_a="overexposed", steps=2,
                                 validate_every=2, sample_every=2, validation_images=4, min_std=0.0)
    run = trainer.train(config, tmp_path / "run")
    info = json.loads((run / "generator.json").read_text())
    assert info["splits"]["a"] == info["splits"]["b"] and "overexposed" in info["domain_b"][0]
    _, parts = trainer.held_out_domains(info)
    np.testing.assert_array_equal(parts["b"]["test"].patches, overexpose(parts["a"]["test"].patches))

    options = TwoSampleOptions(folds=2, steps=5, batch_size=4, crop_size=16,
                               classifier=dataclasses.replace(CLASSIFIER, filters=(4, 8), spectrum_filters=(4,)))
    result = evaluate_cyclegan(str(run), n=8, options=options)
    for figure in ("swd", "spectral_distance", "two_sample_auc", "memorisation_ratio"):
        assert np.isfinite(result[figure]) and np.isfinite(result[f"{figure}_real_reference"]), figure
    assert result["cycle_consistency_error"] == pytest.approx(result["cycle_error_a"] + result["cycle_error_b"])
    assert 0 < result["paired_error_identity"] < 1 and 0 <= result["paired_error_a_to_b"] < 1
    assert (run / "evaluation.json").exists() and result["domain_b_from_a"] == "overexposed"
    with pytest.raises(ForensicsError, match="no record of its data"):
        trainer.held_out_domains({"kind": "cyclegan"})
