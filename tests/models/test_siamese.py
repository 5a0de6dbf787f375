"""The Siamese model: layers, loss, learning, saving, resume after a kill, MirroredStrategy."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT
from keras_forensics.config import DeformationConfig, SiameseConfig
from keras_forensics.errors import ForensicsError
from keras_forensics.layers import WeightedL1Distance
from keras_forensics.models import siamese

TINY = SiameseConfig(input_size=32, filters=(4, 8), dense_units=16, embedding_dim=8)
TINY_FLAGS = ["--input_size", "32", "--filters", "4,8", "--dense_units", "16", "--embedding_dim", "8",
              "--patch_size", "64", "--crop_size", "32", "--text_bank_size", "8", "--batch_size", "4",
              "--validation_triplets", "8", "--test_triplets", "8", "--projector_size", "8"]


def test_alpha_stays_non_negative_when_pushed_down():
    layer = WeightedL1Distance(initial_alpha=0.01)
    a, b = tf.zeros((1, 4)), tf.ones((1, 4))
    layer([a, b])
    optimizer = keras.optimizers.SGD(10.0)
    for _ in range(50):  # maximise the distance of nothing: push every alpha down hard
        with tf.GradientTape() as tape:
            loss = layer([a, b])[0]
        optimizer.apply_gradients(zip(tape.gradient(loss, [layer.raw_alpha]), [layer.raw_alpha]))
    assert np.all(keras.ops.convert_to_numpy(layer.alpha) >= 0)


def test_triplet_loss_matches_numpy_and_is_stable():
    moderate = np.array([[2.0, -1.0], [0.5, 0.3], [0.0, 0.0]], np.float32)
    sigma = 1 / (1 + np.exp(-moderate.astype(np.float64)))
    expected = np.mean(-(np.log(sigma[:, 0]) + np.log(1 - sigma[:, 1])))
    assert float(siamese.TripletLoss()(np.zeros_like(moderate), moderate)) == pytest.approx(expected, rel=1e-5)
    # sigmoid(-30) and sigmoid(40) round to 0 and 1 in float32: the naive formula gives inf.
    logits = np.array([[2.0, -1.0], [-30.0, 40.0], [0.0, 0.0]], np.float32)
    expected = np.mean(np.logaddexp(0, -logits[:, 0].astype(np.float64)) + np.logaddexp(0, logits[:, 1]))
    loss = float(siamese.TripletLoss()(np.zeros_like(logits), logits))
    assert np.isfinite(loss) and loss == pytest.approx(expected, rel=1e-5)
    accuracy = siamese.TripletAccuracy()
    accuracy.update_state(np.zeros_like(logits), logits)
    # p_same = 0.5 (logit 0) is not "same" (> 0.5) but is "different" (<= 0.5), as in the original.
    assert float(accuracy.result()) == pytest.approx((1 + 1 + 0 + 0 + 0 + 1) / 6)


def test_embedding_has_the_paper_shapes():
    model = siamese.build_embedding(SiameseConfig())
    assert model.input_shape == (None, 128, 128, 1) and model.output_shape == (None, 128)
    assert model.get_layer("flatten").output.shape[-1] == 8 * 8 * 128
    assert model.get_layer("dense").output.shape[-1] == 1024
    names = [layer.name for layer in model.layers]
    assert "stage1_lrn" in names and "stage3_nin" in names and not any("shortcut" in n for n in names)
    plain = siamese.build_embedding(SiameseConfig(local_response_normalization=False, network_in_network=False,
                                                  residual=True))
    names = [layer.name for layer in plain.layers]
    assert "stage1_lrn" not in names and "stage1_nin" not in names and "stage2_shortcut" in names


def _patches(n, size, seed=0):
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    images = np.stack([gaussian_filter(rng.random((size, size)), 2) for _ in range(n)])
    images = (images - images.min(axis=(1, 2), keepdims=True)) / np.ptp(images, axis=(1, 2), keepdims=True)
    return (images * 255).astype(np.uint8)


def _tiny_triplet_model(learning_rate=3e-3):
    embedding = siamese.build_embedding(TINY)
    model = siamese.build_triplet_model(embedding, WeightedL1Distance(0.05, name="distance"))
    model.compile(keras.optimizers.Adam(learning_rate), siamese.TripletLoss(), metrics=siamese.triplet_metrics())
    return model


def test_the_triplet_model_learns():
    from keras_forensics.data.patches import PatchSet
    from keras_forensics.data.pipeline import triplet_dataset
    from keras_forensics.training.siamese import _with_dummy_targets

    keras.utils.set_random_seed(0)
    patchset = PatchSet(_patches(16, 64), np.arange(16), [str(i) for i in range(16)])
    deformation = DeformationConfig(patch_size=64, crop_size=32, text_bank_size=8, p_perspective=0,
                                    max_rotation_degrees=10, scale_range=(0.9, 1.1), max_translation=2)
    data = triplet_dataset(patchset, deformation, batch_size=16, seed=1).map(_with_dummy_targets)
    evaluation = triplet_dataset(patchset, deformation, batch_size=64, seed=2, num_steps=2).map(_with_dummy_targets)
    model = _tiny_triplet_model()
    before = model.evaluate(evaluation, verbose=0, return_dict=True)
    model.fit(data, steps_per_epoch=60, epochs=1, verbose=0)
    after = model.evaluate(evaluation, verbose=0, return_dict=True)
    assert after["loss"] < before["loss"] - 0.1
    assert after["accuracy"] > 0.6


def test_pair_model_shares_weights_and_save_load_round_trip(tmp_path, rng):
    model = _tiny_triplet_model()
    x = {k: rng.random((3, 32, 32, 1)).astype("float32") for k in ("anchor", "same", "different")}
    model.fit(x, np.zeros((3, 2)), verbose=0)
    embedding, distance = siamese.parts_of(model)
    pair = siamese.build_pair_model(embedding, distance)
    out = pair.predict({"image_a": x["anchor"], "image_b": x["same"]}, verbose=0)
    logits = model.predict(x, verbose=0)
    np.testing.assert_allclose(out["distance"], 1 - logits[:, 0], atol=1e-5)
    np.testing.assert_allclose(out["p_same"], 1 / (1 + np.exp(-(1 - out["distance"]))), atol=1e-6)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), logits)


def _train_command(model_dir, steps):
    return [sys.executable, "-m", "keras_forensics.train", "siamese", "--model_dir", str(model_dir),
            "--steps", str(steps), "--validate_every", "4", *TINY_FLAGS]


@pytest.mark.slow
def test_resume_after_kill(tmp_path):
    model_dir = tmp_path / "run"
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    process = subprocess.Popen(_train_command(model_dir, 400), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True)
    metadata = model_dir / "checkpoints" / "backup" / "training_metadata.json"
    deadline = time.time() + 300
    while time.time() < deadline and not (metadata.exists() and json.loads(metadata.read_text() or "{}").get("epoch", 0) >= 2):
        assert process.poll() is None, process.stdout.read().decode()
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = json.loads(metadata.read_text())["epoch"] * 4
    assert 8 <= killed_at < 400

    result = subprocess.run(_train_command(model_dir, killed_at + 8), cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"resuming {model_dir} at step {killed_at}" in result.stdout + result.stderr
    metrics = json.loads((model_dir / "metrics.json").read_text())
    # The optimizer's step counter continued from the checkpoint rather than restarting at 0.
    assert metrics["steps"] == killed_at + 8
    assert (model_dir / "model.keras").exists() and (model_dir / "split.json").exists()
    assert (model_dir / "logs" / "projector" / "projector_config.pbtxt").exists()


def test_fine_tuning_starts_from_a_run_and_keeps_its_split(tmp_path):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    first, second = tmp_path / "first", tmp_path / "second"
    result = subprocess.run(_train_command(first, 2), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    command = _train_command(second, 2) + ["--init_from", str(first), "--patch_scales", "1,0.5",
                                           "--seed", "5"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"starting from the weights of {first}" in result.stdout
    assert "Skipping variable loading" not in result.stderr  # a fresh optimizer is the intent
    # Another seed would split differently; the first run's test groups must stay unseen.
    assert (second / "split.json").read_text() == (first / "split.json").read_text()

    from keras_forensics.training.siamese import initial_weights

    assert initial_weights(first) == first / "checkpoints" / "best.keras"
    with pytest.raises(ForensicsError, match="--init_from"):
        initial_weights(tmp_path / "missing.keras")
    with pytest.raises(ForensicsError, match="--init_from"):
        initial_weights(tmp_path)


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    script = f"""
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from keras_forensics.train import main
main({_train_command(tmp_path / "run", 2)[3:] + ["--strategy", "mirrored", "--validate_every", "2"]!r})
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["steps"] == 2


def test_mixed_bfloat16_training_loads_back_in_float32(tmp_path, rng):
    """--precision mixed_bfloat16 trains with bf16 layers but a float32 loss; load_parts rebuilds
    the saved model in float32 with the same weights."""
    from keras_forensics.config import SiameseTrainConfig
    from keras_forensics.training.siamese import build_models

    config = SiameseTrainConfig(model=TINY, deformation=DeformationConfig(patch_size=64, crop_size=32),
                                precision="mixed_bfloat16")
    model = build_models(config, total_steps=10)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after building
    embedding, distance = siamese.parts_of(model)
    assert embedding.get_layer("stage1_conv1").compute_dtype == "bfloat16"
    assert distance.compute_dtype == "float32" and model.output.dtype == "float32"
    x = {k: rng.random((4, 32, 32, 1)).astype("float32") for k in ("anchor", "same", "different")}
    history = model.fit(x, np.zeros((4, 2)), epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    model.save(tmp_path / "bf16.keras")

    loaded_embedding, loaded_distance = siamese.load_parts(tmp_path / "bf16.keras")
    assert {layer.compute_dtype for layer in loaded_embedding.layers if layer.weights} == {"float32"}
    for before, after in zip(embedding.weights, loaded_embedding.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(before), keras.ops.convert_to_numpy(after))
    reference = keras.ops.convert_to_numpy(distance([embedding(x["anchor"]), embedding(x["same"])]))
    restored = keras.ops.convert_to_numpy(loaded_distance([loaded_embedding(x["anchor"]), loaded_embedding(x["same"])]))
    np.testing.assert_allclose(restored, reference, rtol=0.05, atol=0.02)  # bf16 vs float32 arithmetic


def test_precision_flag_is_checked():
    from keras_forensics.config import SiameseTrainConfig
    from keras_forensics.errors import ForensicsError

    with pytest.raises(ForensicsError, match="--precision"):
        SiameseTrainConfig(precision="half")


def test_branches_share_batch_statistics_in_training(rng):
    """Anchor, same and different are normalised as one batch: an anchor and an identical "same"
    image get identical embeddings in training mode even when the rest of their batches differ."""
    model = _tiny_triplet_model()
    anchor = rng.random((4, 32, 32, 1)).astype("float32")
    same = rng.random((4, 32, 32, 1)).astype("float32") * 0.3  # a differently distributed batch...
    same[0] = anchor[0]                                          # ...except one identical image
    different = rng.random((4, 32, 32, 1)).astype("float32")
    logits = keras.ops.convert_to_numpy(model({"anchor": anchor, "same": same, "different": different},
                                              training=True))
    assert logits[0, 0] == pytest.approx(1.0, abs=1e-6)  # f(A0, S0) = 0
    assert np.all(logits[1:, 0] < 1.0)
