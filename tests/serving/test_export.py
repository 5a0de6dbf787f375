"""tools/export.py, keras_forensics.serving.modules and serving.export: SavedModels with named modules."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import serving_support
from keras_forensics import preprocessing
from keras_forensics.data.io import decode_image_bytes
from keras_forensics.errors import ForensicsError
from keras_forensics.ops import tiling
from keras_forensics.serving import export as exporting
from keras_forensics.serving import modules
from keras_forensics.serving.protocol import encode_png

ROOT = Path(__file__).resolve().parents[2]


def signature_table(path) -> dict:
    """signature -> ({input: (dtype, shape)}, {output: (dtype, shape)}) from saved_model.pb."""
    def table(tensors):
        return {key: (tf.dtypes.as_dtype(info.dtype).name, tuple(d.size for d in info.tensor_shape.dim))
                for key, info in tensors.items()}

    return {name: (table(d.inputs), table(d.outputs))
            for name, d in exporting.read_signature_defs(path).items() if not name.startswith("__")}


def test_siamese_signatures_are_named_as_the_issue_specifies():
    result = serving_support.exported("siamese")
    image, encoded = (-1, 128, 128, 1), (-1,)
    pair_out = {"distance": ("float32", (-1,)), "p_same": ("float32", (-1,))}
    embed_out = {"embedding": ("float32", (-1, 8)), "weighted_embedding": ("float32", (-1, 8))}
    assert signature_table(result.path) == {
        "serving_default": ({"image_a": ("float32", image), "image_b": ("float32", image)}, pair_out),
        "embed": ({"images": ("float32", image)}, embed_out),
        "similarity_bytes": ({"image_a_bytes": ("string", encoded), "image_b_bytes": ("string", encoded)},
                             pair_out),
        "embed_bytes": ({"image_bytes": ("string", encoded)}, embed_out),
    }
    # Each weight is stored once, under the tf.Variable the functions read (what TF-Serving restores).
    module = modules.load_siamese(serving_support.run_dir("siamese"))
    stored = [name for name, _ in tf.train.list_variables(str(result.path / "variables" / "variables"))
              if name != "_CHECKPOINTABLE_OBJECT_GRAPH"]
    assert len(stored) == len(module.embedding.variables) + len(module.distance.variables)
    assert set(result.max_abs_diff) == {"serving_default", "embed", "similarity_bytes", "embed_bytes"}
    assert all(value < exporting.TOLERANCE for value in result.max_abs_diff.values())


def test_siamese_saved_model_reproduces_keras_and_the_shared_preprocessing(rng):
    module = modules.load_siamese(serving_support.run_dir("siamese"))
    loaded = tf.saved_model.load(str(serving_support.exported("siamese").path))
    images = rng.random((3, 128, 128, 1)).astype(np.float32)
    others = images[::-1].copy()

    pair = loaded.signatures["serving_default"](image_a=tf.constant(images), image_b=tf.constant(others))
    keras_pair = module.pair_model({"image_a": images, "image_b": others}, training=False)
    np.testing.assert_allclose(pair["distance"].numpy(), keras_pair["distance"].numpy(), atol=1e-5)
    # The middle pair is an image with itself: distance 0, p_same = sigmoid(1).
    assert pair["distance"].numpy()[1] == pytest.approx(0.0, abs=1e-6)
    assert pair["p_same"].numpy()[1] == pytest.approx(1 / (1 + np.exp(-1)), abs=1e-6)

    embedded = loaded.signatures["embed"](images=tf.constant(images))
    alpha = module.distance.alpha.numpy()
    np.testing.assert_allclose(embedded["weighted_embedding"].numpy(), embedded["embedding"].numpy() * alpha,
                               rtol=1e-6, atol=1e-7)
    assert np.ptp(alpha) > 0.5  # the run's alpha is not uniform, so the check above means something

    # Panels of other sizes through the bytes signature == the CLI's preprocessing + the tensors one.
    panels = [rng.random((90, 140)).astype(np.float32), rng.random((200, 64)).astype(np.float32)]
    encoded = tf.constant([encode_png(p) for p in panels])
    from_bytes = loaded.signatures["similarity_bytes"](image_a_bytes=encoded, image_b_bytes=encoded[::-1])
    tensors = preprocessing.batch([np.round(p * 65535) / 65535 for p in panels])
    from_tensors = loaded.signatures["serving_default"](image_a=tf.constant(tensors),
                                                        image_b=tf.constant(tensors[::-1]))
    np.testing.assert_allclose(from_bytes["distance"].numpy(), from_tensors["distance"].numpy(), atol=1e-5)
    embedded_bytes = loaded.signatures["embed_bytes"](image_bytes=encoded)
    np.testing.assert_allclose(embedded_bytes["embedding"].numpy(),
                               loaded.signatures["embed"](images=tf.constant(tensors))["embedding"].numpy(),
                               atol=1e-5)
    # A JPEG decodes in the graph to the same pixels as on the CLI (Pillow), so it embeds the same.
    buffer = io.BytesIO()
    Image.fromarray((panels[0] * 255).astype(np.uint8)).save(buffer, "JPEG", quality=50)
    jpeg = buffer.getvalue()
    served = loaded.signatures["embed_bytes"](image_bytes=tf.constant([jpeg]))["embedding"].numpy()
    cli = loaded.signatures["embed"](images=tf.constant(preprocessing.batch([decode_image_bytes(jpeg)])))
    np.testing.assert_allclose(served, cli["embedding"].numpy(), atol=1e-5)


def test_warmup_requests_cover_every_signature():
    from tensorflow_serving.apis import prediction_log_pb2

    path = serving_support.exported("siamese").path / exporting.WARMUP_FILE
    records = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(str(path))]
    requests = {r.predict_log.request.model_spec.signature_name: r.predict_log.request for r in records}
    assert set(requests) == {"serving_default", "embed", "similarity_bytes", "embed_bytes"}
    assert all(r.model_spec.name == "siamese" for r in requests.values())
    assert tf.make_ndarray(requests["serving_default"].inputs["image_a"]).shape == (2, 128, 128, 1)
    loaded = tf.saved_model.load(str(path.parents[1]))
    for name, request in requests.items():  # each warm-up request is a valid request
        inputs = {key: tf.constant(tf.make_ndarray(proto)) for key, proto in request.inputs.items()}
        outputs = loaded.signatures[name](**inputs)
        batch = next(iter(inputs.values())).shape[0]
        assert batch >= 2 and all(value.shape[0] == batch for value in outputs.values())


def test_saved_model_cli_runs_the_exported_siamese_with_the_keras_values(tmp_path, rng):
    result = serving_support.exported("siamese")
    images = rng.random((2, 128, 128, 1)).astype(np.float32)
    np.save(tmp_path / "a.npy", images)
    np.save(tmp_path / "b.npy", images[::-1])
    out = tmp_path / "out"
    command = ["saved_model_cli", "run", "--dir", str(result.path), "--tag_set", "serve",
               "--signature_def", "serving_default",
               "--inputs", f"image_a={tmp_path / 'a.npy'};image_b={tmp_path / 'b.npy'}", "--outdir", str(out)]
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    completed = subprocess.run(command, capture_output=True, text=True, timeout=240, env=environment)
    assert completed.returncode == 0, completed.stderr[-2000:]
    module = modules.load_siamese(serving_support.run_dir("siamese"))
    expected = module.pair_model({"image_a": images, "image_b": images[::-1]}, training=False)
    np.testing.assert_allclose(np.load(out / "distance.npy"), expected["distance"].numpy(), atol=1e-5)
    np.testing.assert_allclose(np.load(out / "p_same.npy"), expected["p_same"].numpy(), atol=1e-5)


def test_describe_matches_saved_model_cli_show_layout():
    text = exporting.describe(serving_support.exported("siamese").path)
    assert "signature_def['similarity_bytes']:" in text
    assert "    inputs['image_a_bytes'] tensor_info:\n        dtype: DT_STRING\n        shape: (-1)" in text
    assert "    outputs['weighted_embedding'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, 8)" in text
    assert "Method name is: tensorflow/serving/predict" in text


def test_versions_are_numbered_written_atomically_and_never_silently_replaced(tmp_path):
    run = serving_support.run_dir("wgan")
    first = exporting.export("wgan", run, export_base=tmp_path, verbose=False)
    second = exporting.export("wgan", run, export_base=tmp_path, verbose=False)
    assert (first.version, second.version) == (1, 2)
    assert sorted(p.name for p in (tmp_path / "wgan").iterdir()) == ["1", "2"]  # no temporary folders
    with pytest.raises(ForensicsError, match="exists; pass --overwrite"):
        exporting.export("wgan", run, export_base=tmp_path, version=1, verbose=False)
    before = (tmp_path / "wgan" / "1" / "saved_model.pb").stat().st_ino
    replaced = exporting.export("wgan", run, export_base=tmp_path, version=1, overwrite=True, verbose=False)
    assert replaced.version == 1 and (tmp_path / "wgan" / "1" / "saved_model.pb").stat().st_ino != before
    assert sorted(p.name for p in (tmp_path / "wgan").iterdir()) == ["1", "2"]


def test_extra_assets_are_part_of_the_atomic_write(tmp_path):
    result = exporting.export("wgan", serving_support.run_dir("wgan"), export_base=tmp_path, verbose=False,
                               extra_assets={"generator.json": '{"bit_depth": 16}'})
    assert (result.path / "assets.extra" / "generator.json").read_text() == '{"bit_depth": 16}'
    assert (result.path / exporting.WARMUP_FILE).is_file()


def test_a_failed_reload_check_leaves_nothing_behind(tmp_path, monkeypatch):
    original = modules.GeneratorServing.__init__

    def wrong_reference(self, generator, name="wgan_serving"):
        original(self, generator, name)
        endpoint = self._endpoints["serving_default"]
        endpoint.reference = lambda inputs: {"images": np.ones((2, 16, 16, 1), np.float32) * 5}

    monkeypatch.setattr(modules.GeneratorServing, "__init__", wrong_reference)
    with pytest.raises(ForensicsError, match="reload check: serving_default differs"):
        exporting.export("wgan", serving_support.run_dir("wgan"), export_base=tmp_path, verbose=False)
    assert list((tmp_path / "wgan").iterdir()) == []


def test_detector_export_scores_images_of_any_size_like_the_detect_command():
    from keras_forensics.detection.inference import Detector

    result = serving_support.exported("detector")
    assert signature_table(result.path) == {
        "serving_default": ({"images": ("float32", (-1, 32, 32, 1))}, {"p_fake": ("float32", (-1,))}),
        "classify_bytes": ({"image_bytes": ("string", (-1,))},
                           {"p_fake": ("float32", (-1,)), "p_fake_max_patch": ("float32", (-1,))}),
    }
    loaded = tf.saved_model.load(str(result.path))
    rng = np.random.default_rng(5)
    patch = np.round(rng.random((32, 32)) * 255) / 255
    large = np.round(rng.random((70, 45)) * 255) / 255
    small = np.round(rng.random((12, 50)) * 255) / 255
    scores = loaded.signatures["classify_bytes"](image_bytes=tf.constant([encode_png(i) for i in (patch, large, small)]))
    direct = loaded.signatures["serving_default"](images=tf.constant(patch[None, ..., None], tf.float32))
    # A patch-sized image is one patch: mean = max = the tensor signature's score.
    assert scores["p_fake"].numpy()[0] == pytest.approx(direct["p_fake"].numpy()[0], abs=1e-5)
    assert scores["p_fake_max_patch"].numpy()[0] == pytest.approx(direct["p_fake"].numpy()[0], abs=1e-5)
    signature = loaded.signatures["serving_default"]
    detect = Detector(lambda x: signature(images=tf.constant(x, tf.float32))["p_fake"].numpy(), 32)
    for index, image in enumerate((patch, large, small)):
        verdict = detect.score(image.astype(np.float32))
        assert scores["p_fake"].numpy()[index] == pytest.approx(verdict.p_fake, abs=1e-5)
        assert scores["p_fake_max_patch"].numpy()[index] == pytest.approx(verdict.p_fake_max_patch, abs=1e-5)
    assert len(detect.score(large.astype(np.float32)).patch_scores) == 6 * 3  # rows 0, 8, .., 32, 38; columns 0, 8, 13


def cut_patches(image: np.ndarray, corners: np.ndarray, patch_size: int) -> np.ndarray:
    """The reference: [K, S, S] patches at `corners` of an [H, W] image, by NumPy indexing."""
    offsets = np.arange(patch_size)
    rows = corners[:, 0, None, None] + offsets[None, :, None]
    cols = corners[:, 1, None, None] + offsets[None, None, :]
    return image[rows, cols]


def test_tile_patches_is_the_detect_commands_patch_grid():
    from keras_forensics.detection.inference import fit_image, patch_corners

    rng = np.random.default_rng(6)
    for height, width in ((7, 5), (16, 16), (40, 23), (3, 30)):
        image = rng.random((height, width)).astype(np.float32)
        tiled = tiling.tile_patches(tf.constant(image[..., None]), 8).numpy()[..., 0]
        fitted = fit_image(image, 8)
        expected = cut_patches(fitted, patch_corners(*fitted.shape, 8, 2), 8)
        np.testing.assert_allclose(tiled, expected, atol=1e-6)
    corner = np.arange(16 * 12, dtype=np.float32).reshape(16, 12, 1)
    tiled = tiling.tile_patches(tf.constant(corner), 8).numpy()
    np.testing.assert_array_equal(tiled[-1], corner[8:16, 4:12])  # the last patch ends at the far corner


def test_wgan_and_cyclegan_exports():
    wgan = serving_support.exported("wgan")
    assert signature_table(wgan.path) == {
        "serving_default": ({"noise": ("float32", (-1, 8))}, {"images": ("float32", (-1, 16, 16, 1))})}
    cyclegan = serving_support.exported("cyclegan")
    any_image = (-1, -1, -1, 3)
    expected = ({"images": ("float32", any_image)}, {"images": ("float32", any_image)})
    assert signature_table(cyclegan.path) == {"serving_default": expected, "a_to_b": expected, "b_to_a": expected}
    loaded = tf.saved_model.load(str(cyclegan.path))
    images = tf.constant(np.random.default_rng(6).random((1, 12, 20, 3)).astype(np.float32))
    a_to_b = loaded.signatures["a_to_b"](images=images)["images"].numpy()
    b_to_a = loaded.signatures["b_to_a"](images=images)["images"].numpy()
    default = loaded.signatures["serving_default"](images=images)["images"].numpy()
    assert a_to_b.shape == (1, 12, 20, 3)
    np.testing.assert_array_equal(default, a_to_b)
    assert np.abs(a_to_b - b_to_a).max() > 1e-3  # two different generators


def test_cyclegan_model_file_with_generator_attributes(tmp_path):
    import keras

    @keras.saving.register_keras_serializable(package="keras_forensics_tests")
    class TwoGenerators(keras.Model):
        def __init__(self, generator_g, generator_f, **kwargs):
            super().__init__(**kwargs)
            self.generator_g, self.generator_f = generator_g, generator_f

        def call(self, images):
            return self.generator_g(images)

        def get_config(self):
            return {"generator_g": keras.saving.serialize_keras_object(self.generator_g),
                    "generator_f": keras.saving.serialize_keras_object(self.generator_f)}

        @classmethod
        def from_config(cls, config):
            return cls(keras.saving.deserialize_keras_object(config["generator_g"]),
                       keras.saving.deserialize_keras_object(config["generator_f"]))

    model = TwoGenerators(serving_support.make_translator(7, "g"), serving_support.make_translator(8, "f"))
    model(np.zeros((1, 8, 8, 3), np.float32))
    model.save(tmp_path / "model.keras")
    module = modules.load_cyclegan(tmp_path)
    images = np.random.default_rng(9).random((1, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(module.a_to_b(tf.constant(images))["images"].numpy(),
                               model.generator_g(images).numpy(), atol=1e-6)
    np.testing.assert_allclose(module.b_to_a(tf.constant(images))["images"].numpy(),
                               model.generator_f(images).numpy(), atol=1e-6)


def test_clear_errors_for_bad_run_dirs(tmp_path):
    with pytest.raises(ForensicsError, match="unknown model kind 'gan'"):
        modules.load_serving_module("gan", tmp_path)
    with pytest.raises(ForensicsError, match="no such folder"):
        modules.load_serving_module("siamese", tmp_path / "missing")
    with pytest.raises(ForensicsError, match="model.keras: no such file"):
        modules.load_serving_module("detector", tmp_path)
    serving_support.make_wgan_run(tmp_path)  # a WGAN generator as model.keras is no CycleGAN
    (tmp_path / "generator.keras").rename(tmp_path / "model.keras")
    with pytest.raises(ForensicsError, match="no generator_a_to_b.keras"):
        modules.load_serving_module("cyclegan", tmp_path)


def export_cli():
    """tools/export.py as a module (it is a script beside the package, not part of it)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("export_tool", ROOT / "tools" / "export.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_export_cli_reports_a_user_mistake_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        export_cli().main(["siamese", "--model_dir", str(tmp_path / "missing"), "--export_base", str(tmp_path)])
    assert caught.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: --model_dir {tmp_path / 'missing'}: no such folder"
    serving_support.exported("wgan")
    with pytest.raises(SystemExit):
        export_cli().main(["wgan", "--model_dir", str(serving_support.run_dir("wgan")),
                           "--export_base", str(serving_support.workspace() / "saved_models"), "--version", "1"])
    assert "exists; pass --overwrite" in capsys.readouterr().err


def test_export_cli_writes_a_version(tmp_path, capsys):
    export_cli().main(["cyclegan", "--model_dir", str(serving_support.run_dir("cyclegan")),
                       "--export_base", str(tmp_path), "--version", "7"])
    printed = capsys.readouterr().out
    assert "signature_def['b_to_a']:" in printed  # the saved_model_cli-style summary
    assert "path:" in printed and str(tmp_path / "cyclegan" / "7") in printed
    assert (tmp_path / "cyclegan" / "7" / "saved_model.pb").is_file()
    assert (tmp_path / "cyclegan" / "7" / exporting.WARMUP_FILE).is_file()
