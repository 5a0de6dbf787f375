"""The serving stack: configs, REST/gRPC protocol, batching, the local server and the client.

Client <-> server tests use real sockets on 127.0.0.1 with ports picked by the OS, the tiny
exports of tests/serving_support.py, and bounded request counts and timeouts.
"""

from __future__ import annotations

import base64
import concurrent.futures
import http.client
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import serving_support
from keras_forensics import preprocessing
from keras_forensics.errors import ForensicsError
from keras_forensics.serving import client as client_module
from keras_forensics.serving import protocol
from keras_forensics.serving.batching import Batcher, BatchingOptions, read_batching_parameters
from keras_forensics.serving.client import ServingClient
from keras_forensics.serving.model_manager import ModelManager, read_model_config
from keras_forensics.serving.protocol import ServingError
from keras_forensics.serving.server import ModelServer

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "tf_serving_rest"
PROTOCOLS = ("rest", "grpc")
MAX_IMAGE_PIXELS = 4_000_000


def fixture(name: str):
    return json.loads((FIXTURES / name).read_text())


def json_shape(value):
    """The structure of a JSON value: object keys, list element shape and scalar types."""
    if isinstance(value, dict):
        return {key: json_shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_shape(value[0])] if value else []
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


# ---------------------------------------------------------------------------------------------
# Configs and Docker files


def test_models_config_parses_as_a_model_server_config():
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = text_format.Parse((ROOT / "saved_models" / "models.config").read_text(),
                               model_server_config_pb2.ModelServerConfig())
    entries = config.model_config_list.config
    assert "detector" in [e.name for e in entries]
    for entry in entries:
        # tensorflow_model_server waits forever for a listed model without a version: list only shipped ones.
        versions = [p for p in (ROOT / "saved_models" / entry.name).glob("*/saved_model.pb") if p.parent.name.isdigit()]
        assert versions, f"models.config lists {entry.name!r} but saved_models/{entry.name} holds no version"
        assert entry.base_path == f"/models/{entry.name}"  # absolute, as tensorflow_model_server requires
        assert entry.model_platform == "tensorflow"
        assert entry.model_version_policy.WhichOneof("policy_choice") == "latest"
        assert entry.model_version_policy.latest.num_versions == 1
    # The local server maps the container paths to the folders beside the file.
    sources = read_model_config(ROOT / "saved_models" / "models.config")
    for source in sources:
        if not Path(f"/models/{source.name}").exists():
            assert source.base_path == (ROOT / "saved_models" / source.name).resolve()


def test_batching_config_parses_as_batching_parameters():
    from google.protobuf import text_format

    from keras_forensics.serving.batching import batching_parameters_class

    text = (ROOT / "saved_models" / "batching.config").read_text()
    message = text_format.Parse(text, batching_parameters_class()())
    assert message.max_batch_size.value == 16
    assert message.batch_timeout_micros.value == 2000
    assert message.num_batch_threads.value == 2
    assert read_batching_parameters(ROOT / "saved_models" / "batching.config") == BatchingOptions(16, 2000, 100, 2)
    # The parser is as strict as tensorflow_model_server's: a misspelt field is an error.
    with pytest.raises(text_format.ParseError):
        text_format.Parse("max_batch_sise { value: 8 }", batching_parameters_class()())


def test_bad_config_files_give_clear_errors(tmp_path):
    (tmp_path / "models.config").write_text('model_config_list { config { name: "a" base_path: "a" } '
                                            'config { name: "a" base_path: "b" } }')
    with pytest.raises(ForensicsError, match="unique name"):
        read_model_config(tmp_path / "models.config")
    (tmp_path / "broken.config").write_text("model_config_list { config { nam: 1 } }")
    with pytest.raises(ForensicsError, match="not a valid ModelServerConfig"):
        read_model_config(tmp_path / "broken.config")
    (tmp_path / "batching.config").write_text("max_batch_size { value: 0 }")
    with pytest.raises(ForensicsError, match="must be positive"):
        read_batching_parameters(tmp_path / "batching.config")


def test_docker_files_use_the_pinned_official_image_and_the_shipped_configs():
    import yaml

    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    version = next(line.split("=", 1)[1] for line in dockerfile.splitlines()
                   if line.startswith("ARG TF_SERVING_VERSION="))
    assert version == tf.__version__.split("-")[0]  # the server knows every op of our SavedModels
    assert "FROM tensorflow/serving:${TF_SERVING_VERSION}${VARIANT}" in dockerfile
    for flag in ("--port=8500", "--rest_api_port=8501", "--model_config_file=/models/models.config",
                 "--enable_batching=true", "--batching_parameters_file=/models/batching.config"):
        assert f'"{flag}"' in dockerfile
    compose = yaml.safe_load((ROOT / "docker" / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["serving"]["build"]["args"]["TF_SERVING_VERSION"] == version
    assert services["serving-gpu"]["build"]["args"]["VARIANT"] == "-gpu"
    assert "../runs:/runs:ro" in services["tensorboard"]["volumes"]
    assert "--logdir" in services["tensorboard"]["command"]


# ---------------------------------------------------------------------------------------------
# The REST JSON formats, without a server


def test_row_and_columnar_requests_decode_to_the_same_tensors():
    specs = {"image_bytes": np.dtype(object), "scale": np.dtype(np.float32)}
    rows = {"instances": [{"image_bytes": {"b64": base64.b64encode(b"ab").decode()}, "scale": [1, 2]},
                          {"image_bytes": {"b64": base64.urlsafe_b64encode(b"\xff\xfe").decode()}, "scale": [3, 4]}]}
    columns = {"inputs": {"image_bytes": [{"b64": "YWI="}, {"b64": "__4="}], "scale": [[1, 2], [3, 4]]}}
    from_rows, row_format = protocol.inputs_from_json(rows, specs)
    from_columns, column_format = protocol.inputs_from_json(columns, specs)
    assert (row_format, column_format) == (protocol.ROW, protocol.COLUMNAR)
    for inputs in (from_rows, from_columns):
        assert list(inputs["image_bytes"]) == [b"ab", b"\xff\xfe"]
        assert inputs["scale"].dtype == np.float32
        np.testing.assert_array_equal(inputs["scale"], [[1, 2], [3, 4]])


@pytest.mark.parametrize("request_body, message", [
    ({"instances": [1.0], "inputs": [1.0]}, "only one of 'inputs' or 'instances'"),
    ({"signature_name": "x"}, "Missing 'inputs' or 'instances' key"),
    ({"instances": []}, "at least one element"),
    ({"instances": [{"a": [1.0]}]}, "Missing but required: {b}"),
    ({"inputs": {"a": [[1.0, 2.0], [3.0]], "b": [1.0]}}, "not a rectangular array"),
    ({"inputs": {"a": ["x"], "b": [1.0]}}, "expected float32 numbers"),
    ({"inputs": {"a": [1.0], "b": [{"b64": "%%%"}]}}, "expected float32 numbers"),
])
def test_malformed_json_requests_are_invalid_argument(request_body, message):
    specs = {"a": np.dtype(np.float32), "b": np.dtype(np.float32)}
    with pytest.raises(ServingError, match=message) as caught:
        protocol.inputs_from_json(request_body, specs)
    assert caught.value.http_status == 400


def test_garbage_base64_is_invalid_argument():
    with pytest.raises(ServingError, match="unable to base64 decode"):
        protocol.inputs_from_json({"instances": [{"b64": "not base64!"}]}, {"image_bytes": np.dtype(object)})


def test_responses_have_the_documented_shapes():
    outputs = {"score": np.array([0.25, 0.75], np.float32), "embedding": np.array([[1, 2], [3, 4]], np.float32)}
    assert protocol.outputs_to_json(outputs, protocol.ROW) == fixture("predict_row_response.json")
    assert protocol.outputs_to_json(outputs, protocol.COLUMNAR) == fixture("predict_columnar_response.json")
    single = {"y": np.array([3.5, 4.0, 5.5], np.float32)}
    assert protocol.outputs_to_json(single, protocol.ROW) == fixture("predict_row_single_output_response.json")
    assert protocol.outputs_to_json({"thumbnail_bytes": np.array([b"\x00\x01"], object)}, protocol.COLUMNAR) == \
        {"outputs": [{"b64": "AAE="}]}


def test_documented_example_requests_are_accepted():
    rows = fixture("predict_row_request.json")
    specs = {"tag": np.dtype(object), "signal": np.dtype(np.float32), "sensor": np.dtype(np.float32)}
    from_rows, _ = protocol.inputs_from_json(rows, specs)
    from_columns, _ = protocol.inputs_from_json(fixture("predict_columnar_request.json"), specs)
    assert from_rows["sensor"].shape == from_columns["sensor"].shape == (2, 2, 2)
    assert list(from_rows["tag"]) == list(from_columns["tag"]) == [b"foo", b"bar"]
    b64, _ = protocol.inputs_from_json(fixture("predict_b64_request.json"),
                                       {"image": np.dtype(object), "caption": np.dtype(object)})
    assert list(b64["image"]) == [b"image bytes", b"awesome image bytes"]


def test_client_rest_requests_have_the_documented_columnar_shape():
    request = protocol.columnar_request({"image_a_bytes": np.array([b"png"], object),
                                         "image_b": np.zeros((1, 2, 2, 1), np.float32)}, "similarity_bytes")
    documented = fixture("predict_columnar_request.json")
    assert set(request) - {"signature_name"} == set(documented)
    assert request["inputs"]["image_a_bytes"] == [{"b64": "cG5n"}]  # api_rest.md "Encoding binary values"
    assert json_shape(request["inputs"]["image_b"]) == [[[["number"]]]]


# ---------------------------------------------------------------------------------------------
# Batching, without a server


def test_concurrent_requests_are_batched_and_answered_separately():
    calls = []

    def run(inputs):
        calls.append(len(inputs["x"]))
        time.sleep(0.05)
        return {"y": inputs["x"] * 2}

    batcher = Batcher(run, BatchingOptions(max_batch_size=8, batch_timeout_micros=20000, num_batch_threads=1))
    try:
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            results = list(pool.map(lambda i: batcher.submit({"x": np.array([i, i + 100])}, 2, timeout=10),
                                    range(12)))
    finally:
        batcher.close()
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result["y"], [2 * i, 2 * i + 200])
    assert sum(calls) == 24 and max(calls) <= 8
    assert len(calls) < 12  # requests were run together
    assert (batcher.batches, batcher.requests) == (len(calls), 12)


def test_a_failing_request_does_not_fail_its_batch_neighbours():
    def run(inputs):
        time.sleep(0.02)
        if np.any(inputs["x"] < 0):
            raise ServingError("INVALID_ARGUMENT", "negative input")
        return {"y": inputs["x"] + 1}

    batcher = Batcher(run, BatchingOptions(max_batch_size=16, batch_timeout_micros=50000))
    try:
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(batcher.submit, {"x": np.array([value])}, 1, 10) for value in (1, 2, -3, 4, 5, 6)]
            outcomes = []
            for future in futures:
                try:
                    outcomes.append(int(future.result()["y"][0]))
                except ServingError as error:
                    outcomes.append(error.code)
    finally:
        batcher.close()
    assert outcomes == [2, 3, "INVALID_ARGUMENT", 5, 6, 7]


def test_a_full_queue_refuses_instead_of_waiting_forever():
    release = threading.Event()

    def run(inputs):
        release.wait(5)
        return {"y": inputs["x"]}

    batcher = Batcher(run, BatchingOptions(max_batch_size=1, max_enqueued_batches=1, num_batch_threads=1))
    try:
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            first = pool.submit(batcher.submit, {"x": np.array([1])}, 1, 10)
            time.sleep(0.2)  # the first runs (blocked); the second fills the queue of one
            second = pool.submit(batcher.submit, {"x": np.array([2])}, 1, 10)
            time.sleep(0.2)
            with pytest.raises(ServingError, match="queue .* is full") as caught:
                batcher.submit({"x": np.array([3])}, 1, 10)
            assert caught.value.http_status == 429
            release.set()
            assert first.result()["y"][0] == 1 and second.result()["y"][0] == 2
    finally:
        release.set()
        batcher.close()


# ---------------------------------------------------------------------------------------------
# The server


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG file whose header claims width x height (how a decompression bomb starts)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 100))
            + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A ModelServer on random loopback ports serving every kind, plus an initially empty 'dropin' model."""
    base = tmp_path_factory.mktemp("served")
    shutil.copytree(serving_support.exported_models(), base / "saved_models")
    (base / "saved_models" / "dropin").mkdir()
    entries = "".join(f'config {{ name: "{name}" base_path: "{name}" model_platform: "tensorflow" }} '
                      for name in ("siamese", "detector", "wgan", "cyclegan", "dropin"))
    config = base / "saved_models" / "models.config"
    config.write_text(f"model_config_list {{ {entries} }}")
    manager = ModelManager(read_model_config(config), poll_seconds=0.2,
                           batching=BatchingOptions(max_batch_size=8, batch_timeout_micros=5000, num_batch_threads=2))
    server = ModelServer(manager, port=0, rest_api_port=0, max_request_bytes=4_000_000,
                         rest_api_timeout_in_ms=20000, max_image_pixels=MAX_IMAGE_PIXELS)
    server.start()
    server.base = base / "saved_models"
    yield server
    server.stop()


@pytest.fixture(scope="module")
def references():
    """The SavedModels loaded in-process: what the server must answer."""
    return {kind: tf.saved_model.load(str(serving_support.exported(kind).path)) for kind in serving_support.RUN_MAKERS}


def make_client(server, kind: str) -> ServingClient:
    return ServingClient("127.0.0.1", rest_port=server.rest_api_port, grpc_port=server.port, protocol=kind,
                         timeout=30)


def rest(server, method: str, path: str, body=None, headers=None):
    """One raw HTTP request; returns (status, parsed JSON body)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_api_port, timeout=30)
    try:
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        connection.request(method, path, body=data, headers=headers or {})
        response = connection.getresponse()
        payload = response.read()
        return response.status, json.loads(payload) if payload else None
    finally:
        connection.close()


def run_signature(loaded, name: str, **inputs) -> dict:
    outputs = loaded.signatures[name](**{key: tf.constant(value) for key, value in inputs.items()})
    return {key: value.numpy() for key, value in outputs.items()}


def test_status_and_metadata_have_the_documented_shapes(served):
    status, body = rest(served, "GET", "/v1/models/siamese")
    assert status == 200
    assert json_shape(body) == json_shape(fixture("status_response.json"))
    assert body["model_version_status"] == [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]

    status, body = rest(served, "GET", "/v1/models/siamese/versions/1/metadata")
    documented = fixture("metadata_response.json")
    assert status == 200
    assert json_shape(body["model_spec"]) == json_shape(documented["model_spec"])
    assert body["model_spec"] == {"name": "siamese", "signature_name": "", "version": "1"}
    signature_defs = body["metadata"]["signature_def"]["signature_def"]
    assert set(body["metadata"]["signature_def"]) == {"signature_def"}
    documented_signature = documented["metadata"]["signature_def"]["signature_def"]["serving_default"]
    ours = signature_defs["serving_default"]
    assert set(ours) == set(documented_signature)  # inputs, outputs, method_name, defaults
    assert json_shape(ours["inputs"]["image_a"]) == json_shape(documented_signature["inputs"]["x"])
    assert ours["inputs"]["image_a"]["tensor_shape"]["dim"] == [
        {"size": size, "name": ""} for size in ("-1", "128", "128", "1")]
    assert {"serving_default", "embed", "similarity_bytes", "embed_bytes"} <= set(signature_defs)

    for kind in PROTOCOLS:  # the client gives the same documents over both protocols
        with make_client(served, kind) as client:
            assert client.status("siamese") == rest(served, "GET", "/v1/models/siamese")[1]
            assert client.metadata("siamese") == body


@pytest.mark.parametrize("kind", PROTOCOLS)
def test_every_signature_over_both_protocols(served, references, kind, rng, tmp_path):
    with make_client(served, kind) as client:
        # siamese: tensors, files (bytes), embeddings
        images = rng.random((3, 128, 128, 1)).astype(np.float32)
        others = rng.random((3, 128, 128, 1)).astype(np.float32)
        expected = run_signature(references["siamese"], "serving_default", image_a=images, image_b=others)
        result = client.similarity(images, others)
        for key in ("distance", "p_same"):
            np.testing.assert_allclose(result[key], expected[key], atol=1e-5)
            assert result[key].dtype == np.float32

        panels = [rng.random((100, 70)).astype(np.float32), rng.random((64, 150)).astype(np.float32)]
        paths = []
        for index, panel in enumerate(panels):
            paths.append(tmp_path / f"panel{index}.png")
            paths[-1].write_bytes(protocol.encode_png(panel))
        tensors = preprocessing.batch([np.round(p * 65535) / 65535 for p in panels])
        expected = run_signature(references["siamese"], "serving_default", image_a=tensors, image_b=tensors[::-1])
        result = client.similarity([str(p) for p in paths], [str(p) for p in paths[::-1]])  # similarity_bytes
        np.testing.assert_allclose(result["distance"], expected["distance"], atol=1e-5)
        one_against_many = client.similarity(str(paths[0]), [str(paths[0]), str(paths[1])])
        assert one_against_many["distance"][0] == pytest.approx(0.0, abs=1e-6)

        expected = run_signature(references["siamese"], "embed", images=images)
        embedded = client.embed(images)
        np.testing.assert_allclose(embedded["weighted_embedding"], expected["weighted_embedding"], atol=1e-5)
        embedded_bytes = client.embed(panels)  # arrays of other sizes travel as 16-bit PNGs
        expected = run_signature(references["siamese"], "embed", images=tensors)
        np.testing.assert_allclose(embedded_bytes["embedding"], expected["embedding"], atol=1e-5)

        # detector: patches, and an image of another size tiled on the server
        patches = rng.random((2, 32, 32, 1)).astype(np.float32)
        expected = run_signature(references["detector"], "serving_default", images=patches)
        np.testing.assert_allclose(client.detect(patches)["p_fake"], expected["p_fake"], atol=1e-5)
        large = np.round(rng.random((50, 40)) * 65535) / 65535
        scores = client.detect([large])
        expected = run_signature(references["detector"], "classify_bytes",
                                 image_bytes=np.array([protocol.encode_png(large)], object))
        np.testing.assert_allclose(scores["p_fake_max_patch"], expected["p_fake_max_patch"], atol=1e-5)
        assert scores["p_fake_max_patch"][0] >= scores["p_fake"][0]

        # wgan: seeded noise drawn by the client
        generated = client.generate(3, seed=7)
        noise = np.random.default_rng(7).standard_normal((3, serving_support.LATENT_DIM)).astype(np.float32)
        np.testing.assert_allclose(generated, run_signature(references["wgan"], "serving_default", noise=noise)["images"],
                                   atol=1e-5)
        assert generated.shape == (3, 16, 16, 1)

        # cyclegan: both directions and the default
        pictures = rng.random((2, 12, 10, 3)).astype(np.float32)
        for direction in ("a_to_b", "b_to_a"):
            np.testing.assert_allclose(client.translate(pictures, direction),
                                       run_signature(references["cyclegan"], direction, images=pictures)["images"],
                                       atol=1e-5)
        np.testing.assert_allclose(client.predict("cyclegan", {"images": pictures})["images"],
                                   client.translate(pictures, "a_to_b"), atol=1e-6)


@pytest.mark.parametrize("kind", PROTOCOLS)
def test_server_errors_reach_the_client_with_the_servers_message(served, kind):
    with make_client(served, kind) as client:
        cases = [
            (lambda: client.status("no_such_model"), "NOT_FOUND", "Could not find any versions of model no_such_model"),
            (lambda: client.predict("siamese", {"images": np.zeros((1, 128, 128, 1), np.float32)}, "embed", version=9),
             "NOT_FOUND", "Specific(siamese, 9)"),
            (lambda: client.predict("siamese", {"images": np.zeros((1, 128, 128, 1), np.float32)}, "no_signature"),
             "INVALID_ARGUMENT", 'Serving signature name: "no_signature" not found'),
            (lambda: client.predict("siamese", {"images": np.zeros((1, 64, 64, 1), np.float32)}, "embed"),
             "INVALID_ARGUMENT", "has shape [1, 64, 64, 1], the signature expects [-1, 128, 128, 1]"),
            (lambda: client.similarity(b"not an image", b"neither"), "INVALID_ARGUMENT", "Unknown image file format"),
            (lambda: client.embed(png_claiming(5000, 5000)), "INVALID_ARGUMENT", "--max_image_pixels"),
        ]
        for call, code, message in cases:
            with pytest.raises(ServingError) as caught:
                call()
            assert caught.value.code == code
            assert message in caught.value.message
        # Over the request size limit (4 MB here): refused with the server's reason, nothing run.
        with pytest.raises(ServingError) as caught:
            client.embed(np.zeros((70, 128, 128, 1), np.float32))
        assert caught.value.code == "RESOURCE_EXHAUSTED"
        assert ("max_request_bytes" if kind == "rest" else "larger than max") in caught.value.message
        assert client.status("siamese")["model_version_status"][0]["state"] == "AVAILABLE"


def test_grpc_rejects_a_wrong_dtype_like_tf_serving(served):
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{served.port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "siamese"
        request.model_spec.signature_name = "embed"
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.zeros((1, 128, 128, 1), np.float64)))
        with pytest.raises(grpc.RpcError) as caught:
            stub.Predict(request, timeout=30)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "expects float32, got float64" in caught.value.details()
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.zeros((1, 128, 128, 1), np.float32)))
        request.output_filter.append("weighted_embedding")
        response = stub.Predict(request, timeout=30)
        assert list(response.outputs) == ["weighted_embedding"]
        assert (response.model_spec.name, response.model_spec.version.value, response.model_spec.signature_name) == \
            ("siamese", 1, "embed")


def test_rest_row_and_columnar_requests(served, references, rng):
    panels = [rng.random((40, 60)).astype(np.float32) for _ in range(2)]
    encoded = [base64.b64encode(protocol.encode_png(p)).decode() for p in panels]
    rows = {"signature_name": "similarity_bytes",
            "instances": [{"image_a_bytes": {"b64": encoded[0]}, "image_b_bytes": {"b64": encoded[1]}},
                          {"image_a_bytes": {"b64": encoded[1]}, "image_b_bytes": {"b64": encoded[1]}}]}
    status, by_rows = rest(served, "POST", "/v1/models/siamese:predict", rows)
    assert status == 200
    # As documented (predict_row_response.json): several named outputs -> a list of objects, one per
    # instance, each naming every output.
    documented = fixture("predict_row_response.json")
    assert set(by_rows) == set(documented) and isinstance(by_rows["predictions"], list)
    assert [set(row) for row in by_rows["predictions"]] == [{"distance", "p_same"}] * 2
    assert by_rows["predictions"][1]["distance"] == pytest.approx(0.0, abs=1e-6)
    columns = {"signature_name": "similarity_bytes",
               "inputs": {"image_a_bytes": [{"b64": encoded[0]}, {"b64": encoded[1]}],
                          "image_b_bytes": [{"b64": encoded[1]}, {"b64": encoded[1]}]}}
    status, by_columns = rest(served, "POST", "/v1/models/siamese/versions/1:predict", columns)
    assert status == 200
    # As documented (predict_columnar_response.json): an object of named outputs, each a column.
    documented = fixture("predict_columnar_response.json")
    assert set(by_columns) == set(documented) and isinstance(by_columns["outputs"], dict)
    assert {name: len(column) for name, column in by_columns["outputs"].items()} == {"distance": 2, "p_same": 2}
    np.testing.assert_allclose([r["distance"] for r in by_rows["predictions"]], by_columns["outputs"]["distance"])
    # One input and one output: the names are left out both ways, as documented.
    noise = rng.standard_normal((2, serving_support.LATENT_DIM)).tolist()
    status, generated = rest(served, "POST", "/v1/models/wgan:predict", {"instances": noise})
    assert status == 200 and json_shape(generated) == {"predictions": [[[["number"]]]]}
    expected = run_signature(references["wgan"], "serving_default", noise=np.array(noise, np.float32))["images"]
    np.testing.assert_allclose(generated["predictions"], expected, atol=1e-5)


MALFORMED = [
    ("POST", "/v1/models/siamese:predict", b"{not json", 400, "JSON Parse error"),
    ("POST", "/v1/models/siamese:predict", b"[1, 2]", 400, "Is not object"),
    ("POST", "/v1/models/siamese:predict", {"instances": [[0.0]]}, 400, "Expecting each item of 'instances'"),
    ("POST", "/v1/models/siamese:predict",
     {"signature_name": "embed", "inputs": np.zeros((1, 4, 4, 1)).tolist()}, 400, "has shape [1, 4, 4, 1]"),
    ("POST", "/v1/models/siamese:predict", {"signature_name": "embed", "inputs": [["a"]]}, 400, "float32 numbers"),
    ("POST", "/v1/models/siamese:predict", {"signature_name": "embed_bytes", "instances": [{"b64": "!!"}]},
     400, "unable to base64 decode"),
    ("POST", "/v1/models/siamese:predict",
     {"signature_name": "embed_bytes", "instances": [{"b64": base64.b64encode(b"GIF89a broken").decode()}]},
     400, "Invalid GIF data"),
    ("POST", "/v1/models/siamese:predict", {"signature_name": "nope", "instances": [1.0]}, 400, '"nope" not found'),
    ("POST", "/v1/models/unknown:predict", {"instances": [1.0]}, 404, "Servable not found for request: Latest(unknown)"),
    ("POST", "/v1/models/siamese/versions/42:predict", {"instances": [1.0]}, 404, "Specific(siamese, 42)"),
    ("GET", "/v1/models/siamese/versions/42", None, 404, "Could not find version 42 of model siamese"),
    ("GET", "/v1/models/siamese/labels/stable", None, 404, "Unrecognized servable version label"),
    ("GET", "/v1/models", None, 400, "Missing model name"),
    ("GET", "/v1/models/siamese:predict", None, 400, "Malformed request: GET"),
    ("POST", "/v1/foo", b"{}", 400, "Malformed request: POST /v1/foo"),
    ("POST", "/v1/models/siamese:classify", b"{}", 501, "classify is not served"),
    ("GET", "/index.html", None, 404, "the API lives under /v1/"),
]


def test_malformed_requests_get_errors_and_the_server_keeps_answering(served):
    for method, path, body, status, message in MALFORMED:
        got, answer = rest(served, method, path, body)
        assert (got, message in answer["error"]) == (status, True), (path, body, got, answer)
        assert json_shape(answer) == json_shape(fixture("error_response.json"))
    # A body over --max_request_bytes is refused unread.
    connection = http.client.HTTPConnection("127.0.0.1", served.rest_api_port, timeout=30)
    connection.putrequest("POST", "/v1/models/siamese:predict")
    connection.putheader("Content-Length", str(50_000_000))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and "max_request_bytes" in json.loads(response.read())["error"]
    connection.close()
    # A chunked body (no Content-Length, so no size known in advance) is refused.
    import socket

    with socket.create_connection(("127.0.0.1", served.rest_api_port), timeout=30) as raw:
        raw.sendall(b"POST /v1/models/siamese:predict HTTP/1.1\r\nHost: localhost\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
        answer = raw.makefile("rb").read()
    assert answer.startswith(b"HTTP/1.1 400") and b"Content-Length" in answer
    assert rest(served, "GET", "/v1/models/siamese")[0] == 200


def test_requests_are_batched_across_clients(served):
    signature = served.manager.servable("siamese").signature("embed")
    before = (signature.batcher.batches, signature.batcher.requests)
    images = np.random.default_rng(3).random((1, 128, 128, 1)).astype(np.float32)
    clients = [make_client(served, "grpc") for _ in range(12)]
    for client in clients:
        client.signatures("siamese")  # fetch the metadata first, so the requests below start together
    start = threading.Barrier(12)

    def embed(client):
        start.wait(timeout=30)
        return client.embed(images)["embedding"]

    try:
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            results = list(pool.map(embed, clients))
    finally:
        for client in clients:
            client.close()
    for result in results[1:]:
        np.testing.assert_allclose(result, results[0], atol=1e-6)
    batches, requests = (signature.batcher.batches - before[0], signature.batcher.requests - before[1])
    assert requests == 12 and batches < 12


def test_a_new_version_dropped_in_is_served_within_seconds(served):
    dropin = served.base / "dropin"

    def drop(version: int):
        staging = dropin / f".staging-{version}"  # as tools/export.py does: copy beside, then rename
        shutil.copytree(serving_support.exported("wgan").path, staging)
        os.replace(staging, dropin / str(version))

    def wait_for(version: int, limit: float = 20.0) -> float:
        start = time.monotonic()
        while time.monotonic() - start < limit:
            try:
                states = {s["version"]: s["state"] for s in client.status("dropin")["model_version_status"]}
                if states.get(str(version)) == "AVAILABLE":
                    return time.monotonic() - start
            except ServingError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"version {version} not served after {limit} s")

    with make_client(served, "grpc") as client:
        with pytest.raises(ServingError, match="Latest\\(dropin\\)"):
            client.generate(1, model="dropin")
        drop(1)
        assert wait_for(1) < 10
        client.generate(1, model="dropin")
        drop(2)
        assert wait_for(2) < 10
        states = {s["version"]: s["state"] for s in client.status("dropin")["model_version_status"]}
        assert states == {"2": "AVAILABLE", "1": "END"}  # latest policy: the old version is unloaded
        noise = {"noise": np.zeros((1, serving_support.LATENT_DIM), np.float32)}
        assert client.predict("dropin", noise)["images"].shape == (1, 16, 16, 1)
        assert served.manager.servable("dropin").version == 2


@pytest.mark.parametrize("kind", PROTOCOLS)
def test_client_command_line(served, tmp_path, capsys, kind):
    image = np.random.default_rng(4).random((60, 60)).astype(np.float32)
    path = tmp_path / "panel.png"
    path.write_bytes(protocol.encode_png(image))
    client_module.main(["similarity", str(path), str(path), "--host", "127.0.0.1", "--protocol", kind,
                        "--rest_port", str(served.rest_api_port), "--grpc_port", str(served.port)])
    printed = dict(line.split(":", 1) for line in capsys.readouterr().out.strip().splitlines())
    assert float(printed["distance"]) == pytest.approx(0.0, abs=1e-6)
    assert float(printed["p_same"]) == pytest.approx(1 / (1 + np.exp(-1)), abs=1e-6)
    assert printed["same"].strip() == "true"
    with pytest.raises(SystemExit) as caught:
        client_module.main(["similarity", str(path), str(tmp_path / "missing.png"), "--protocol", kind])
    assert caught.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'missing.png'}: no such file"


def test_client_reports_an_unreachable_server_clearly():
    with ServingClient("127.0.0.1", rest_port=free_port(), protocol="rest", timeout=5) as client:
        with pytest.raises(ServingError, match="cannot reach") as caught:
            client.status("siamese")
    assert caught.value.code == "UNAVAILABLE"
    with pytest.raises(ForensicsError, match="protocol must be"):
        ServingClient(protocol="http")


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serve_command_starts_answers_and_stops(tmp_path):
    ready = tmp_path / "ready.json"
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    process = subprocess.Popen(
        [sys.executable, "-m", "keras_forensics", "serve", "--model_base_path",
         str(serving_support.exported("wgan").path.parent), "--model_name", "wgan", "--port", "0",
         "--rest_api_port", str(free_port()), "--enable_batching", "--batching_parameters_file",
         str(ROOT / "saved_models" / "batching.config"), "--ready_file", str(ready)],
        cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ready.exists(), process.stderr.read() if process.poll() is not None else "not ready in time"
        ports = json.loads(ready.read_text())
        with ServingClient("127.0.0.1", rest_port=ports["rest_api_port"], protocol="rest") as client:
            assert client.status("wgan")["model_version_status"][0]["state"] == "AVAILABLE"
            assert client.generate(2, model="wgan", seed=1).shape == (2, 16, 16, 1)
        process.send_signal(signal.SIGTERM)
        stdout, _ = process.communicate(timeout=60)
        assert process.returncode == 0
        assert "batching on" in stdout and f"REST on http://127.0.0.1:{ports['rest_api_port']}" in stdout
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_serve_command_flag_mistakes_are_one_line(capsys):
    from keras_forensics.__main__ import main

    for argv, message in ((["serve", "--port", "0"], "give either --model_config_file or --model_base_path"),
                          (["serve", "--model_base_path", "/nonexistent/models"], "no such folder"),
                          (["serve", "--modelbasepath", "x"], "unknown flag(s) --modelbasepath")):
        with pytest.raises(SystemExit) as caught:
            main(argv)
        assert caught.value.code == 2
        assert message in capsys.readouterr().err
