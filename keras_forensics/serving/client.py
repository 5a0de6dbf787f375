"""A client for TensorFlow Serving (and the local server): one API over REST and gRPC.

    from keras_forensics.serving.client import ServingClient

    client = ServingClient("localhost", protocol="grpc")      # or protocol="rest"
    client.similarity("panel_a.png", "panel_b.png")           # {"distance": [..], "p_same": [..]}
    client.embed(["a.png", "b.png"])["weighted_embedding"]    # [2, 128]
    client.status("siamese")                                  # GetModelStatus, as TF-Serving's JSON

Images may be file paths, encoded bytes (PNG / JPEG / BMP / GIF), float arrays in [0, 1] ([H, W],
[H, W, C] or a batch [N, H, W, C]) or lists of these. Arrays that already have the model's input
shape go to the tensor signature (`serving_default`, `embed`); anything else is sent encoded to the
`*_bytes` signature, where the server decodes and preprocesses it in the graph with the toolkit's
one preprocessing function -- over REST as `{"b64": ...}` values, over gRPC as DT_STRING tensors.

Over REST, tensors travel as JSON numbers (about 0.7 MB per 128x128 pair) and encoded files as
base64 (a few tens of kB), so the files path is the faster one there; over gRPC both are binary.

Errors from the server (unknown model, version or signature, wrong shape, undecodable image) raise
`ServingError` carrying the server's code and message verbatim.

Command line: `python -m keras_forensics.serving.client similarity A.png B.png --host localhost`
(also `embed`, `detect`, `generate`, `status`, `metadata`; `--protocol rest|grpc`, `--rest_port`,
`--grpc_port`, `--timeout`). Follows tensorflow/serving's example clients (resnet_client.py):
the address is a parameter, every call has a timeout, failures raise.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
from pathlib import Path

import numpy as np

from keras_forensics.errors import ForensicsError
from keras_forensics.serving import protocol
from keras_forensics.serving.protocol import DEFAULT_SIGNATURE, ServingError

PROTOCOLS = ("grpc", "rest")

_NUMPY_DTYPES = {"DT_FLOAT": np.float32, "DT_DOUBLE": np.float64, "DT_INT32": np.int32, "DT_INT64": np.int64,
                 "DT_UINT8": np.uint8, "DT_BOOL": np.bool_, "DT_HALF": np.float16}

_HTTP_CODES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
               409: "ABORTED", 413: "RESOURCE_EXHAUSTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED",
               500: "INTERNAL", 501: "UNIMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


class ServingClient:
    """Query models served by TF-Serving (or `python -m keras_forensics serve`).

    Args:
        host: the server's host name or address.
        rest_port: its REST port (`--rest_api_port`).
        grpc_port: its gRPC port (`--port`).
        protocol: "grpc" or "rest".
        timeout: seconds for each call.

    Example:
        >>> client = ServingClient("localhost", protocol="rest")
        >>> client.similarity("a.png", ["b.png", "c.png"])["p_same"]   # a against b and c
    """

    def __init__(self, host: str = "localhost", rest_port: int = 8501, grpc_port: int = 8500,
                 protocol: str = "grpc", timeout: float = 30.0):
        if protocol not in PROTOCOLS:
            raise ForensicsError(f"protocol must be 'grpc' or 'rest', got {protocol!r}")
        self.host, self.rest_port, self.grpc_port = host, rest_port, grpc_port
        self.protocol, self.timeout = protocol, timeout
        self._transport = (_GrpcTransport(host, grpc_port, timeout) if protocol == "grpc"
                           else _RestTransport(host, rest_port, timeout))
        self._signatures: dict = {}

    def close(self) -> None:
        self._transport.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # -- the protocol ----------------------------------------------------------------------

    def predict(self, model: str, inputs: dict, signature_name: str = DEFAULT_SIGNATURE,
                version: int | None = None) -> dict:
        """Run any signature: named NumPy inputs -> named NumPy outputs."""
        inputs = {key: np.asarray(value) for key, value in inputs.items()}
        outputs = self.signatures(model, version).get(signature_name, {}).get("outputs")
        return self._transport.predict(model, inputs, signature_name, version, outputs)

    def status(self, model: str, version: int | None = None) -> dict:
        """GetModelStatus, as TF-Serving's REST JSON: {"model_version_status": [...]}."""
        return self._transport.status(model, version)

    def metadata(self, model: str, version: int | None = None) -> dict:
        """GetModelMetadata, as TF-Serving's REST JSON: {"model_spec": ..., "metadata": {"signature_def": ...}}."""
        return self._transport.metadata(model, version)

    def signatures(self, model: str, version: int | None = None) -> dict:
        """signature name -> {"inputs": {name: (dtype, shape)}, "outputs": {name: (dtype, shape)}} (cached).

        dtypes are TensorFlow's enum names ("DT_FLOAT", "DT_STRING"); -1 marks a dimension of any size.
        """
        key = (model, version)
        if key not in self._signatures:
            definitions = self.metadata(model, version)["metadata"]["signature_def"]["signature_def"]
            self._signatures[key] = {name: _signature_summary(d) for name, d in definitions.items()}
        return self._signatures[key]

    # -- the models ---------------------------------------------------------------------------

    def similarity(self, a, b, model: str = "siamese", version: int | None = None) -> dict:
        """Siamese distance f and p_same = sigmoid(1 - f) of image pairs (a[i], b[i]).

        `a` and `b` are images or equally long lists of images; a single image on one side is
        compared with every image on the other. Returns {"distance": [N], "p_same": [N]}.
        """
        side_a, side_b = _images(a), _images(b)
        if len(side_a) == 1 and len(side_b) > 1:
            side_a = side_a * len(side_b)
        if len(side_b) == 1 and len(side_a) > 1:
            side_b = side_b * len(side_a)
        if len(side_a) != len(side_b):
            raise ForensicsError(f"similarity needs as many images on each side, got {len(side_a)} and {len(side_b)}")
        shape = self._input_shape(model, version, DEFAULT_SIGNATURE, "image_a")
        tensors_a, tensors_b = _stack_if_shaped(side_a, shape), _stack_if_shaped(side_b, shape)
        if tensors_a is not None and tensors_b is not None:
            return self.predict(model, {"image_a": tensors_a, "image_b": tensors_b}, DEFAULT_SIGNATURE, version)
        return self.predict(model, {"image_a_bytes": _encoded(side_a), "image_b_bytes": _encoded(side_b)},
                            "similarity_bytes", version)

    def embed(self, images, model: str = "siamese", version: int | None = None) -> dict:
        """Siamese embeddings: {"embedding": [N, D], "weighted_embedding": [N, D]} (alpha * embedding)."""
        return self._tensor_or_bytes(images, model, version, "embed", "images", "embed_bytes")

    def detect(self, images, model: str = "detector", version: int | None = None) -> dict:
        """p_fake of each image: {"p_fake": [N]}; images of another size than the detector's
        patches are tiled on the server and also get "p_fake_max_patch"."""
        return self._tensor_or_bytes(images, model, version, DEFAULT_SIGNATURE, "images", "classify_bytes")

    def generate(self, n: int, model: str = "wgan", seed: int | None = None, version: int | None = None) -> np.ndarray:
        """n images from the WGAN generator, from standard normal noise drawn here with `seed`."""
        if n < 1:
            raise ForensicsError(f"generate needs n >= 1, got {n}")
        latent = self._input_shape(model, version, DEFAULT_SIGNATURE, "noise")[-1]
        noise = np.random.default_rng(seed).standard_normal((n, latent)).astype(np.float32)
        return self.predict(model, {"noise": noise}, DEFAULT_SIGNATURE, version)["images"]

    def translate(self, images, direction: str = "a_to_b", model: str = "cyclegan",
                  version: int | None = None) -> np.ndarray:
        """CycleGAN translation of float images [N, H, W, C] in the given direction."""
        if direction not in ("a_to_b", "b_to_a"):
            raise ForensicsError(f"direction must be 'a_to_b' or 'b_to_a', got {direction!r}")
        images = np.asarray(images, np.float32)
        if images.ndim == 3:
            images = images[None]
        return self.predict(model, {"images": images}, direction, version)["images"]

    def _input_shape(self, model, version, signature, name) -> tuple:
        signatures = self.signatures(model, version)
        if signature not in signatures or name not in signatures[signature]["inputs"]:
            raise ServingError("INVALID_ARGUMENT", f"model {model} has no signature {signature} "
                                                   f"with input {name}")
        return signatures[signature]["inputs"][name][1]

    def _tensor_or_bytes(self, images, model, version, signature, name, bytes_signature) -> dict:
        items = _images(images)
        tensors = _stack_if_shaped(items, self._input_shape(model, version, signature, name))
        if tensors is not None:
            return self.predict(model, {name: tensors}, signature, version)
        return self.predict(model, {"image_bytes": _encoded(items)}, bytes_signature, version)


def _signature_summary(definition: dict) -> dict:
    def spec(info):
        dims = info.get("tensor_shape", {}).get("dim", [])
        return info.get("dtype", "DT_INVALID"), tuple(int(d.get("size", -1)) for d in dims)

    return {"inputs": {k: spec(v) for k, v in definition.get("inputs", {}).items()},
            "outputs": {k: spec(v) for k, v in definition.get("outputs", {}).items()}}


# ---------------------------------------------------------------------------------------------
# Images


def _images(images) -> list:
    """Normalise the accepted image forms into a list of bytes or float arrays [H, W, C]."""
    if isinstance(images, (str, os.PathLike, bytes, bytearray)):
        return [_one_image(images)]
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            return [np.asarray(image, np.float32) for image in images]
        if images.ndim == 3 and images.shape[-1] not in (1, 3, 4):
            return [np.asarray(image, np.float32)[..., None] for image in images]  # [N, H, W]
        return [_one_image(images)]
    if isinstance(images, (list, tuple)):
        if not images:
            raise ForensicsError("no images given")
        return [_one_image(image) for image in images]
    raise ForensicsError(f"cannot use {type(images).__name__} as an image (paths, bytes or arrays)")


def _one_image(image):
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise ForensicsError(f"{path}: no such file")
        return path.read_bytes()
    if isinstance(image, (bytes, bytearray)):
        return bytes(image)
    array = np.asarray(image, np.float32)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise ForensicsError(f"an image array must be [H, W] or [H, W, C], got shape {array.shape}")
    return array


def _stack_if_shaped(items: list, shape: tuple):
    """A [N, ...] float batch when every item is an array of the signature's shape, else None."""
    wanted = tuple(shape[1:])
    if all(isinstance(item, np.ndarray) and item.shape == wanted for item in items):
        return np.stack(items).astype(np.float32)
    return None


def _encoded(items: list) -> np.ndarray:
    """Encoded bytes for each item; arrays become PNGs (16-bit gray keeps float precision)."""
    return np.array([item if isinstance(item, bytes) else protocol.encode_png(item) for item in items], dtype=object)


# ---------------------------------------------------------------------------------------------
# Transports


class _NoDelayConnection(http.client.HTTPConnection):
    """An HTTP connection with Nagle's algorithm off: small requests leave at once."""

    def connect(self):
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _RestTransport:
    """TF-Serving's REST API over keep-alive HTTP/1.1 connections (one per thread)."""

    def __init__(self, host: str, port: int, timeout: float):
        self.host, self.port, self.timeout = host, port, timeout
        self._local = threading.local()

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        """One call; returns the JSON answer or raises ServingError with the server's message."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in (0, 1):
            connection = getattr(self._local, "connection", None)
            if connection is None:
                connection = self._local.connection = _NoDelayConnection(self.host, self.port, timeout=self.timeout)
            try:
                try:
                    connection.request(method, path, body=data, headers=headers)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the server may have answered before reading everything (413): read it
                response = connection.getresponse()
                payload = response.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as error:
                self.close()  # a kept-alive connection the server closed: retry once on a new one
                if attempt:
                    raise ServingError("UNAVAILABLE", f"http://{self.host}:{self.port}: {error}") from None
            except socket.timeout:
                self.close()
                raise ServingError("DEADLINE_EXCEEDED",
                                   f"http://{self.host}:{self.port}{path}: no answer within {self.timeout} s") from None
            except OSError as error:
                self.close()
                raise ServingError("UNAVAILABLE", f"cannot reach http://{self.host}:{self.port} ({error})") from None
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        try:
            document = json.loads(payload) if payload else {}
        except ValueError:
            document = {"error": payload[:200].decode("utf-8", "replace")}
        if response.status != 200:
            message = document.get("error", f"HTTP {response.status}") if isinstance(document, dict) else str(document)
            raise ServingError(_HTTP_CODES.get(response.status, "UNKNOWN"), message)
        return document

    def _path(self, model: str, version) -> str:
        from urllib.parse import quote

        path = f"/v1/models/{quote(model, safe='')}"
        return path + (f"/versions/{int(version)}" if version is not None else "")

    def predict(self, model, inputs, signature_name, version, outputs) -> dict:
        answer = self.request("POST", self._path(model, version) + ":predict",
                              protocol.columnar_request(inputs, signature_name))
        if outputs is None:  # a signature the metadata does not list; the server has answered anyway
            names = sorted(answer["outputs"]) if isinstance(answer.get("outputs"), dict) else ["outputs"]
            return protocol.outputs_from_json(answer, names)
        values = protocol.outputs_from_json(answer, sorted(outputs))
        # JSON numbers carry no precision: give them the signature's dtype, as gRPC does.
        return {name: value.astype(_NUMPY_DTYPES[outputs[name][0]]) if outputs[name][0] in _NUMPY_DTYPES else value
                for name, value in values.items()}

    def status(self, model, version) -> dict:
        return self.request("GET", self._path(model, version))

    def metadata(self, model, version) -> dict:
        return self.request("GET", self._path(model, version) + "/metadata")


class _GrpcTransport:
    """PredictionService / ModelService stubs of tensorflow_serving.apis."""

    def __init__(self, host: str, port: int, timeout: float):
        try:
            import grpc
            from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc
        except ImportError:
            raise ForensicsError("gRPC needs tensorflow-serving-api and grpcio: "
                                 "pip install keras_forensics[serving], or use protocol='rest'") from None
        self.grpc, self.timeout, self.target = grpc, timeout, f"{host}:{port}"
        self._channel = grpc.insecure_channel(self.target, options=[("grpc.max_receive_message_length", -1),
                                                                    ("grpc.max_send_message_length", -1)])
        self._prediction = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def _call(self, method, request):
        try:
            return method(request, timeout=self.timeout)
        except self.grpc.RpcError as error:
            code = error.code().name if error.code() is not None else "UNKNOWN"
            if code == "UNAVAILABLE":
                raise ServingError(code, f"{self.target}: {error.details()}") from None
            raise ServingError(code, error.details() or str(error)) from None

    @staticmethod
    def _spec(model_spec, model, version, signature_name=""):
        model_spec.name = model
        if version is not None:
            model_spec.version.value = int(version)
        if signature_name:
            model_spec.signature_name = signature_name

    def predict(self, model, inputs, signature_name, version, outputs) -> dict:
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        self._spec(request.model_spec, model, version, signature_name)
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
        response = self._call(self._prediction.Predict, request)
        return {key: tf.make_ndarray(proto) for key, proto in response.outputs.items()}

    def status(self, model, version) -> dict:
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest()
        self._spec(request.model_spec, model, version)
        response = self._call(self._models.GetModelStatus, request)
        return json_format.MessageToDict(response, always_print_fields_with_no_presence=True)

    def metadata(self, model, version) -> dict:
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._spec(request.model_spec, model, version)
        response = self._call(self._prediction.GetModelMetadata, request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        options = dict(always_print_fields_with_no_presence=True, preserving_proto_field_name=True)
        return {"model_spec": json_format.MessageToDict(response.model_spec, **options),
                "metadata": {"signature_def": json_format.MessageToDict(signature_map, **options)}}


# ---------------------------------------------------------------------------------------------
# Command line


def _client(host, protocol, rest_port, grpc_port, timeout) -> ServingClient:
    return ServingClient(host, rest_port=rest_port, grpc_port=grpc_port, protocol=protocol, timeout=timeout)


def _print_json(document) -> None:
    print(json.dumps(document, indent=2))


def similarity(image_a: str, image_b: str, host: str = "localhost", protocol: str = "grpc",
               rest_port: int = 8501, grpc_port: int = 8500, timeout: float = 30.0, model: str = "siamese"):
    """Distance, p_same and same (p_same > 0.5) of two image files, from the served Siamese model."""
    with _client(host, protocol, rest_port, grpc_port, timeout) as client:
        result = client.similarity(image_a, image_b, model=model)
    p_same = float(result["p_same"][0])
    return {"distance": float(result["distance"][0]), "p_same": p_same, "same": p_same > 0.5}


def embed(*images: str, host: str = "localhost", protocol: str = "grpc", rest_port: int = 8501,
          grpc_port: int = 8500, timeout: float = 30.0, model: str = "siamese"):
    """Print each image's weighted embedding (alpha * embedding) as JSON."""
    with _client(host, protocol, rest_port, grpc_port, timeout) as client:
        result = client.embed(list(images), model=model)
    _print_json({str(path): vector.tolist() for path, vector in zip(images, result["weighted_embedding"])})


def detect(*images: str, host: str = "localhost", protocol: str = "grpc", rest_port: int = 8501,
           grpc_port: int = 8500, timeout: float = 30.0, model: str = "detector"):
    """Print p_fake of each image file as JSON."""
    with _client(host, protocol, rest_port, grpc_port, timeout) as client:
        result = client.detect(list(images), model=model)
    _print_json([{"file": str(path), **{k: float(v[i]) for k, v in result.items()}}
                 for i, path in enumerate(images)])


def generate(n: int = 1, seed: int | None = None, out: str = "generated", host: str = "localhost",
             protocol: str = "grpc", rest_port: int = 8501, grpc_port: int = 8500, timeout: float = 30.0,
             model: str = "wgan"):
    """Generate n images with the served WGAN and write them as 8-bit PNGs to `out`.

    The generator's output range is mapped to [0, 1] from [-1, 1] when it has negative values.
    """
    from PIL import Image

    with _client(host, protocol, rest_port, grpc_port, timeout) as client:
        images = client.generate(n, model=model, seed=seed)
    if images.min() < 0:
        images = (images + 1.0) / 2.0
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(np.clip(images, 0, 1)):
        pixels = np.round(image * 255).astype(np.uint8)
        Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(folder / f"{index:04d}.png")
    return str(folder)


def status(model: str, host: str = "localhost", protocol: str = "grpc", rest_port: int = 8501,
           grpc_port: int = 8500, timeout: float = 30.0, version: int | None = None):
    """Print the model's GetModelStatus as JSON."""
    with _client(host, protocol, rest_port, grpc_port, timeout) as client:
        _print_json(client.status(model, version))


def metadata(model: str, host: str = "localhost", protocol: str = "grpc", rest_port: int = 8501,
             grpc_port: int = 8500, timeout: float = 30.0, version: int | None = None):
    """Print the model's GetModelMetadata (its signatures) as JSON."""
    with _client(host, protocol, rest_port, grpc_port, timeout) as client:
        _print_json(client.metadata(model, version))


COMMANDS = {"similarity": similarity, "embed": embed, "detect": detect, "generate": generate,
            "status": status, "metadata": metadata}


def main(argv=None):
    from keras_forensics.errors import run_cli

    run_cli(COMMANDS, name="python -m keras_forensics.serving.client", argv=argv)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
