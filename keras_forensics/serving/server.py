"""A local TensorFlow-Serving-compatible model server, for development and tests.

Production serving is the official TensorFlow Serving (docker/). Its `tensorflow_model_server`
binary is on neither PyPI nor Debian, so this module serves the same saved_models layout with the
same protocol, and the same client code works against both:

* REST (tensorflow_serving/g3doc/api_rest.md): `GET /v1/models/{m}[/versions/{v}|/labels/{l}]`
  (GetModelStatus as JSON), `GET .../metadata` (GetModelMetadata), `POST .../{m}[/versions/{v}|
  /labels/{l}]:predict` with "instances" (row) or "inputs" (columnar) bodies and {"b64": ...}
  binary values; errors are `{"error": "..."}` with TF-Serving's HTTP statuses.
* gRPC: PredictionService.Predict and GetModelMetadata, ModelService.GetModelStatus, through the
  servicer classes generated in tensorflow_serving.apis.

Flags carry tensorflow_model_server's names (--port, --rest_api_port, --model_config_file,
--model_name, --model_base_path, --enable_batching, --batching_parameters_file,
--file_system_poll_wait_seconds, ...), so a command line moves between the two. Additions of this
server: --host (default 127.0.0.1: nothing is exposed beyond this machine unless asked),
--max_request_bytes, --max_image_pixels, and --max_batch_size / --batch_timeout_micros /
--num_batch_threads overriding the batching parameters file.

Every request is answered: malformed JSON, unknown models, versions or signatures, wrong dtypes
or shapes and undecodable images get 400/404 with a message; an oversized body gets 413 without
being read; an unexpected failure gets 500 and the server carries on.
"""

from __future__ import annotations

import http.server
import io
import json
import logging
import os
import re
import signal
import socket
import socketserver
import threading
import time
import urllib.parse
import warnings
from concurrent import futures
from pathlib import Path


from keras_forensics.errors import ForensicsError
from keras_forensics.serving import protocol
from keras_forensics.serving.batching import BatchingOptions, read_batching_parameters
from keras_forensics.serving.model_manager import ModelManager, ModelSource, read_model_config
from keras_forensics.serving.protocol import ServingError, invalid

logger = logging.getLogger(__name__)

DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024
#: Encoded images are refused above this many pixels before they are decoded (decompression bombs).
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000

_PREDICT_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?:(classify|regress|predict)", re.IGNORECASE)
_STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:/versions/(\d+)|/labels/([^/:]+))?(?:/(metadata))?", re.IGNORECASE)


class ServingApp:
    """The protocol-independent request handling shared by the REST and gRPC front ends."""

    def __init__(self, manager: ModelManager, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS):
        self.manager = manager
        self.max_image_pixels = max_image_pixels

    def lookup(self, name: str, version=None, label=None, signature_name: str = protocol.DEFAULT_SIGNATURE):
        """The servable version and signature a request names (NOT_FOUND / INVALID_ARGUMENT)."""
        servable = self.manager.servable(name, version, label)
        return servable, servable.signature(signature_name)

    def run(self, signature, inputs: dict, timeout=None) -> dict:
        """Validate and run one request (through the batcher when batching is on)."""
        check_image_sizes(inputs, self.max_image_pixels)
        return signature(inputs, timeout)

    def status_proto(self, name: str, version=None, label=None):
        """GetModelStatusResponse for one model (every known version, or the one asked for)."""
        from tensorflow_serving.apis import get_model_status_pb2, status_pb2

        response = get_model_status_pb2.GetModelStatusResponse()
        for status in self.manager.status(name, version, label):
            response.model_version_status.add(
                version=status.version,
                state=get_model_status_pb2.ModelVersionStatus.State.Value(status.state),
                status=status_pb2.StatusProto(error_code=protocol.CODE_NAMES.index(status.error_code),
                                              error_message=status.error_message))
        return response

    def metadata_proto(self, name: str, version=None, label=None, fields=("signature_def",)):
        """GetModelMetadataResponse: the version's SignatureDefs, packed as TF-Serving packs them."""
        from tensorflow_serving.apis import get_model_metadata_pb2, model_pb2

        if not fields:
            raise invalid("GetModelMetadataRequest must specify at least one metadata_field")
        for field in fields:
            if field != "signature_def":
                raise invalid(f"Metadata field {field} is not supported")
        servable = self.manager.servable(name, version, label)
        response = get_model_metadata_pb2.GetModelMetadataResponse(
            model_spec=model_pb2.ModelSpec(name=name))
        response.model_spec.version.value = servable.version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, definition in servable.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(definition)
        response.metadata["signature_def"].Pack(signature_map)
        return response


def check_image_sizes(inputs: dict, max_pixels: int) -> None:
    """Refuse encoded images (inputs named *_bytes) above `max_pixels`, reading headers only."""
    from PIL import Image

    for key, array in inputs.items():
        if not key.endswith("_bytes") or array.dtype.kind != "O":
            continue
        for index, item in enumerate(array.reshape(-1)):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    with Image.open(io.BytesIO(item)) as image:
                        width, height = image.size
            except Image.DecompressionBombError:  # Pillow's own limit, far above ours
                raise invalid(f"image {index} of input '{key}' has more pixels than this server's "
                              f"--max_image_pixels {max_pixels}") from None
            except Exception:  # noqa: BLE001 -- undecodable: the graph's decoder gives the message
                continue
            if width * height > max_pixels:
                raise invalid(f"image {index} of input '{key}' has {width}x{height} pixels, more than "
                              f"this server's --max_image_pixels {max_pixels}")


# ---------------------------------------------------------------------------------------------
# REST


class _RestServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class RestHandler(http.server.BaseHTTPRequestHandler):
    """TF-Serving's REST API (one instance per connection; HTTP/1.1 keep-alive)."""

    protocol_version = "HTTP/1.1"
    server_version = "keras_forensics-serving"
    # Headers and body leave in two writes; with Nagle's algorithm the second waits for the
    # client's delayed ACK (~40 ms on Linux) on every keep-alive request.
    disable_nagle_algorithm = True

    def setup(self):
        self.timeout = self.server.options["timeout"]
        super().setup()

    def finish(self):
        """After refusing an unread body, close gently so the client reads the answer.

        Closing a socket with unread data resets the connection, and the client would see a broken
        pipe instead of the 413. As web servers do (a "lingering close"), stop writing, then read
        and discard what the client still sends, for at most a second.
        """
        try:
            super().finish()
            if getattr(self, "_linger", False):
                self.connection.shutdown(socket.SHUT_WR)
                self.connection.settimeout(0.2)
                deadline = time.monotonic() + 1.0
                while time.monotonic() < deadline and self.connection.recv(1 << 16):
                    pass
        except OSError:
            pass

    def log_message(self, format, *args):  # noqa: A002 -- the base class's signature
        logger.debug("%s %s", self.address_string(), format % args)

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_PUT(self):
        self._handle("PUT")

    def do_DELETE(self):
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        try:
            with self.server.options["slots"]:
                status, body = self._dispatch(method)
        except ServingError as error:
            status, body = error.http_status, protocol.error_body(error.message)
        except Exception as error:  # noqa: BLE001 -- never let a request take the server down
            logger.exception("REST request %s %s failed", method, self.path)
            status, body = 500, protocol.error_body(f"{type(error).__name__}: {error}")
        self._reply(status, body)

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked" or length is None:
            self.close_connection = True
            raise invalid("a request body needs a Content-Length header")
        try:
            length = int(length)
        except ValueError:
            self.close_connection = True
            raise invalid(f"bad Content-Length {length!r}") from None
        limit = self.server.options["max_request_bytes"]
        if length > limit:
            self.close_connection = True  # the body is not read; the connection cannot be reused
            self._linger = True
            raise _TooLarge(f"request body of {length} bytes exceeds this server's --max_request_bytes {limit}")
        return self.rfile.read(length)

    def _dispatch(self, method: str):
        app: ServingApp = self.server.app
        path = urllib.parse.urlsplit(self.path).path
        body = self._read_body() if method in ("POST", "PUT") else b""
        malformed = invalid(f"Malformed request: {method} {path}")
        if not path.lower().startswith("/v1/"):
            raise ServingError("NOT_FOUND", f"Not found: {method} {path} (the API lives under /v1/)")
        if method == "POST":
            match = _PREDICT_PATH.fullmatch(path)
            if not match:
                raise malformed
            name, version, label, verb = match.groups()
            name = urllib.parse.unquote(name)
            label = urllib.parse.unquote(label) if label else None
            if verb.lower() != "predict":
                raise ServingError("UNIMPLEMENTED", f"{verb} is not served by this development server; use predict")
            return 200, self._predict(app, name, _version(version), label, body)
        if method == "GET":
            match = _STATUS_PATH.fullmatch(path)
            if not match:
                raise malformed
            name, version, label, metadata = match.groups()
            if not name:
                raise invalid("Missing model name in request.")
            name = urllib.parse.unquote(name)
            label = urllib.parse.unquote(label) if label else None
            from google.protobuf import json_format

            if metadata:
                response = app.metadata_proto(name, _version(version), label)
                return 200, _metadata_json(response)
            response = app.status_proto(name, _version(version), label)
            text = json_format.MessageToJson(response, always_print_fields_with_no_presence=True)
            return 200, text.encode()
        raise malformed

    def _predict(self, app: ServingApp, name, version, label, body: bytes) -> bytes:
        request = protocol.parse_json_body(body)
        signature_name = protocol.request_signature_name(request)
        _, signature = app.lookup(name, version, label, signature_name)
        specs = {key: dtype for key, (dtype, _) in signature.inputs.items()}
        inputs, request_format = protocol.inputs_from_json(request, specs)
        outputs = app.run(signature, inputs, timeout=self.server.options["timeout"])
        return json.dumps(protocol.outputs_to_json(outputs, request_format)).encode()


class _TooLarge(ServingError):
    def __init__(self, message: str):
        super().__init__("RESOURCE_EXHAUSTED", message)

    @property
    def http_status(self) -> int:
        return 413  # Payload Too Large: TF-Serving has no body limit, HTTP has a status for it


def _version(text):
    return int(text) if text else None


def _metadata_json(response) -> bytes:
    """GetModelMetadataResponse -> JSON as TF-Serving writes it (SignatureDefMap unpacked)."""
    from google.protobuf import json_format
    from tensorflow_serving.apis import get_model_metadata_pb2

    options = dict(always_print_fields_with_no_presence=True, preserving_proto_field_name=True)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    document = {"model_spec": json_format.MessageToDict(response.model_spec, **options),
                "metadata": {"signature_def": json_format.MessageToDict(signature_map, **options)}}
    return json.dumps(document, indent=1).encode()


# ---------------------------------------------------------------------------------------------
# gRPC


def _grpc_servicers(app: ServingApp):
    """PredictionService and ModelService servicers over `app` (tensorflow_serving.apis classes)."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import (model_service_pb2_grpc, predict_pb2,
                                         prediction_service_pb2_grpc)

    def answer(context, function, *args):
        try:
            return function(*args)
        except ServingError as error:
            context.abort(getattr(grpc.StatusCode, error.code), error.message)
        except Exception as error:  # noqa: BLE001 -- never let a request take the server down
            logger.exception("gRPC request failed")
            context.abort(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")

    def spec_of(model_spec):
        version = model_spec.version.value if model_spec.HasField("version") else None
        return model_spec.name, version, model_spec.version_label or None

    def predict(request, context):
        name, version, label = spec_of(request.model_spec)
        inputs = {}
        for key, proto in request.inputs.items():
            try:
                inputs[key] = tf.make_ndarray(proto)
            except (ValueError, TypeError) as error:
                raise invalid(f"input '{key}': malformed TensorProto ({error})") from None
        servable, signature = app.lookup(name, version, label, request.model_spec.signature_name)
        outputs = app.run(signature, inputs, timeout=context.time_remaining())
        wanted = list(request.output_filter) or list(outputs)
        unknown = sorted(set(wanted) - set(outputs))
        if unknown:
            raise invalid(f"output tensor alias not found in signature: {', '.join(unknown)}")
        response = predict_pb2.PredictResponse()
        response.model_spec.name = name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = signature.name
        for key in wanted:
            response.outputs[key].CopyFrom(tf.make_tensor_proto(outputs[key]))
        return response

    class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        """Predict and GetModelMetadata; Classify, Regress and MultiInference stay UNIMPLEMENTED."""

        def Predict(self, request, context):  # noqa: N802 -- gRPC method names
            return answer(context, predict, request, context)

        def GetModelMetadata(self, request, context):  # noqa: N802
            name, version, label = spec_of(request.model_spec)
            return answer(context, app.metadata_proto, name, version, label, list(request.metadata_field))

    class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
        """GetModelStatus; HandleReloadConfigRequest stays UNIMPLEMENTED."""

        def GetModelStatus(self, request, context):  # noqa: N802
            name, version, label = spec_of(request.model_spec)
            return answer(context, app.status_proto, name, version, label)

    return PredictionServicer(), ModelServicer()


# ---------------------------------------------------------------------------------------------
# The server


class ModelServer:
    """The gRPC and REST front ends over one ModelManager.

    Args:
        manager: the models.
        host: the address to bind (default loopback only).
        port: gRPC port (0: any free port; see `.port` after `start`).
        rest_api_port: REST port (0: any free port; None: no REST).
        max_request_bytes: largest request body / gRPC message accepted.
        rest_api_timeout_in_ms: socket and request timeout of the REST API.
        rest_api_num_threads: REST requests processed at once (more wait for a slot).
        grpc_max_threads: gRPC requests processed at once.
        max_image_pixels: largest encoded image accepted by *_bytes inputs.
    """

    def __init__(self, manager: ModelManager, host: str = "127.0.0.1", port: int | None = 8500,
                 rest_api_port: int | None = None, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
                 rest_api_timeout_in_ms: int = 30000, rest_api_num_threads: int | None = None,
                 grpc_max_threads: int | None = None, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS):
        threads = 4 * (os.cpu_count() or 1)  # TF-Serving's default for both thread flags
        self.manager, self.host = manager, host
        self.app = ServingApp(manager, max_image_pixels)
        self.port, self.rest_api_port = port, rest_api_port
        self.max_request_bytes = max_request_bytes
        self.rest_timeout = rest_api_timeout_in_ms / 1000.0
        self.rest_threads = rest_api_num_threads or threads
        self.grpc_threads = grpc_max_threads or threads
        self._grpc_server = self._rest_server = self._rest_thread = None

    def start(self) -> "ModelServer":
        """Load the models, bind the ports and start answering (returns at once)."""
        self.manager.start()
        if self.port is not None:
            self._start_grpc()
        if self.rest_api_port is not None:
            self._start_rest()
        return self

    def _start_grpc(self) -> None:
        import grpc
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        options = [("grpc.max_receive_message_length", self.max_request_bytes),
                   ("grpc.max_send_message_length", -1), ("grpc.so_reuseport", 0)]
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=self.grpc_threads,
                                                        thread_name_prefix="grpc"),
                             options=options, maximum_concurrent_rpcs=None)
        prediction, model = _grpc_servicers(self.app)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(prediction, server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(model, server)
        try:
            bound = server.add_insecure_port(f"{self.host}:{self.port}")
        except RuntimeError as error:
            raise ForensicsError(f"cannot listen on {self.host}:{self.port} for gRPC ({error})") from None
        if not bound:
            raise ForensicsError(f"cannot listen on {self.host}:{self.port} for gRPC")
        server.start()
        self._grpc_server, self.port = server, bound
        logger.info("gRPC on %s:%d", self.host, bound)

    def _start_rest(self) -> None:
        try:
            server = _RestServer((self.host, self.rest_api_port), RestHandler)
        except OSError as error:
            raise ForensicsError(f"cannot listen on {self.host}:{self.rest_api_port} for REST ({error})") from None
        server.app = self.app
        server.options = {"timeout": self.rest_timeout, "max_request_bytes": self.max_request_bytes,
                          "slots": threading.BoundedSemaphore(self.rest_threads)}
        self._rest_server, self.rest_api_port = server, server.server_address[1]
        self._rest_thread = threading.Thread(target=server.serve_forever, name="rest", daemon=True)
        self._rest_thread.start()
        logger.info("REST on http://%s:%d", self.host, self.rest_api_port)

    def stop(self) -> None:
        """Stop answering and unload the models."""
        if self._rest_server is not None:
            self._rest_server.shutdown()
            self._rest_server.server_close()
        if self._grpc_server is not None:
            self._grpc_server.stop(grace=1).wait()
        self.manager.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()


def _watch_config_file(manager: ModelManager, path: Path, seconds: float, stop: threading.Event) -> None:
    """--model_config_file_poll_wait_seconds: re-read the config file when it changes."""
    seen = path.stat().st_mtime_ns
    while not stop.wait(seconds):
        try:
            mtime = path.stat().st_mtime_ns
            if mtime != seen:
                seen = mtime
                manager.set_sources(read_model_config(path))
                logger.info("re-read %s: serving %s", path, ", ".join(manager.model_names))
        except Exception as error:  # noqa: BLE001 -- keep the last good config
            logger.error("cannot re-read %s (%s); keeping the previous models", path, error)


def batching_options(enable_batching: bool, batching_parameters_file=None, **overrides) -> BatchingOptions | None:
    """The batching options from the flags: None when batching is off."""
    if not enable_batching:
        if batching_parameters_file or any(v is not None for v in overrides.values()):
            logger.warning("batching flags given without --enable_batching: batching stays off")
        return None
    options = read_batching_parameters(batching_parameters_file) if batching_parameters_file else BatchingOptions()
    values = {key: int(value) for key, value in overrides.items() if value is not None}
    if values:
        import dataclasses

        options = dataclasses.replace(options, **values)
    return options


def serve(port: int = 8500, rest_api_port: int = 0, model_config_file: str | None = None,
          model_name: str = "default", model_base_path: str | None = None, enable_batching: bool = False,
          batching_parameters_file: str | None = None, max_batch_size: int | None = None,
          batch_timeout_micros: int | None = None, num_batch_threads: int | None = None,
          file_system_poll_wait_seconds: float = 1, model_config_file_poll_wait_seconds: float = 0,
          enable_model_warmup: bool = True, rest_api_num_threads: int | None = None,
          rest_api_timeout_in_ms: int = 30000, grpc_max_threads: int | None = None, host: str = "127.0.0.1",
          max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
          ready_file: str | None = None):
    """Serve SavedModels over TF-Serving's gRPC and REST protocols until interrupted.

    As tensorflow_model_server: --port (gRPC), --rest_api_port (0: no REST), and either
    --model_config_file (ModelServerConfig text proto) or --model_base_path with --model_name.
    --ready_file PATH writes {"port", "rest_api_port"} there once both listen (for scripts and tests).
    """
    if bool(model_config_file) == bool(model_base_path):
        raise ForensicsError("give either --model_config_file or --model_base_path (with --model_name)")
    if model_config_file:
        sources = read_model_config(model_config_file)
    else:
        base = Path(model_base_path)
        if not base.is_dir():
            raise ForensicsError(f"--model_base_path {base}: no such folder")
        sources = [ModelSource(model_name, base.resolve())]
    options = batching_options(enable_batching, batching_parameters_file, max_batch_size=max_batch_size,
                               batch_timeout_micros=batch_timeout_micros, num_batch_threads=num_batch_threads)
    manager = ModelManager(sources, file_system_poll_wait_seconds, options, enable_model_warmup)
    server = ModelServer(manager, host, port, rest_api_port or None, max_request_bytes, rest_api_timeout_in_ms,
                         rest_api_num_threads, grpc_max_threads, max_image_pixels)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server.start()
    try:
        if model_config_file and model_config_file_poll_wait_seconds > 0:
            threading.Thread(target=_watch_config_file, daemon=True, name="config-watch",
                             args=(manager, Path(model_config_file), model_config_file_poll_wait_seconds, stop)).start()
        models = ", ".join(f"{s.name} ({s.base_path})" for s in sources)
        rest = f", REST on http://{host}:{server.rest_api_port}" if server.rest_api_port else ""
        print(f"serving {models}: gRPC on {host}:{server.port}{rest}; "
              f"batching {'on' if options else 'off'}. Ctrl-C stops.", flush=True)
        if ready_file:
            Path(ready_file).write_text(json.dumps({"port": server.port, "rest_api_port": server.rest_api_port}))
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.stop()


def run_command(flags: dict, usage: str = "") -> None:
    """`python -m keras_forensics serve`: its flags arrive as keyword arguments, so `--help` and
    misspelt flags are handled here (one clear line for a flag `serve` does not know)."""
    import inspect

    if flags.pop("help", False):
        print(inspect.cleandoc(usage or serve.__doc__))
        return None
    known = set(inspect.signature(serve).parameters)
    unknown = sorted(set(flags) - known)
    if unknown:
        raise ForensicsError(f"unknown flag(s) {', '.join('--' + f for f in unknown)} "
                             f"(known: {', '.join('--' + f for f in sorted(known))})")
    return serve(**flags)
