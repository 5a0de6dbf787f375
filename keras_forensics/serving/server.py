"""A local TensorFlow-Serving-compatible model server, for development and tests.

Production serving is the official TensorFlow Serving (docker/). Its `tensorflow_model_server`
binary is on neither PyPI nor Debian, so this module serves the same saved_models layout with the
same protocol, and the same client code works against both:

The rooms: `app` (request handling shared by both protocols), `rest`, `grpc_service`, and this
module (`ModelServer`, which binds both over one ModelManager, and the `serve` command).

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
--max_request_bytes, --max_image_pixels, --max_request_pixels, --max_uploads_per_client, and
--max_batch_size / --batch_timeout_micros / --num_batch_threads overriding the batching
parameters file.

Every request is answered: malformed JSON (nested too deeply included), a bad Content-Length,
unknown models, versions or signatures, wrong dtypes or shapes and undecodable images get 400/404
with a message; an oversized body gets 413 without being read; a body that does not arrive within
--rest_api_timeout_in_ms gets 408, and a client address already sending --max_uploads_per_client
bodies 429 (slow senders hold no processing slot: see serving.rest); an unexpected failure gets
500 and the server carries on.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from concurrent import futures
from pathlib import Path


from keras_forensics.errors import ForensicsError
from keras_forensics.serving.app import (DEFAULT_MAX_IMAGE_PIXELS, DEFAULT_MAX_REQUEST_BYTES,
                                         DEFAULT_MAX_REQUEST_PIXELS, ServingApp)
from keras_forensics.serving.grpc_service import servicers
from keras_forensics.serving.rest import DEFAULT_MAX_UPLOADS_PER_CLIENT, RestHandler, RestServer, UploadLimit
from keras_forensics.serving.batching import BatchingOptions, read_batching_parameters
from keras_forensics.serving.model_manager import ModelManager, ModelSource, read_model_config

logger = logging.getLogger(__name__)


class ModelServer:
    """The gRPC and REST front ends over one ModelManager.

    Args:
        manager: the models.
        host: the address to bind (default loopback only).
        port: gRPC port (0: any free port; see `.port` after `start`).
        rest_api_port: REST port (0: any free port; None: no REST).
        max_request_bytes: largest request body / gRPC message accepted.
        rest_api_timeout_in_ms: the REST API's socket timeout, the deadline for receiving a whole
            request body, and the request's timeout.
        rest_api_num_threads: REST requests processed at once (more wait for a slot; a request
            takes its slot once its body is in).
        grpc_max_threads: gRPC requests processed at once.
        max_image_pixels: largest encoded image accepted by *_bytes inputs.
        max_request_pixels: most pixels of all the encoded images of one request together.
        max_uploads_per_client: REST request bodies one client address may send at once.
    """

    def __init__(self, manager: ModelManager, host: str = "127.0.0.1", port: int | None = 8500,
                 rest_api_port: int | None = None, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
                 rest_api_timeout_in_ms: int = 30000, rest_api_num_threads: int | None = None,
                 grpc_max_threads: int | None = None, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                 max_request_pixels: int = DEFAULT_MAX_REQUEST_PIXELS,
                 max_uploads_per_client: int = DEFAULT_MAX_UPLOADS_PER_CLIENT):
        threads = 4 * (os.cpu_count() or 1)  # TF-Serving's default for both thread flags
        self.manager, self.host = manager, host
        self.app = ServingApp(manager, max_image_pixels, max_request_pixels)
        self.max_uploads_per_client = max_uploads_per_client
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
        prediction, model = servicers(self.app)
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
            server = RestServer((self.host, self.rest_api_port), RestHandler)
        except OSError as error:
            raise ForensicsError(f"cannot listen on {self.host}:{self.rest_api_port} for REST ({error})") from None
        server.app = self.app
        server.options = {"timeout": self.rest_timeout, "max_request_bytes": self.max_request_bytes,
                          "slots": threading.BoundedSemaphore(self.rest_threads),
                          "uploads": UploadLimit(self.max_uploads_per_client)}
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
          max_request_pixels: int = DEFAULT_MAX_REQUEST_PIXELS,
          max_uploads_per_client: int = DEFAULT_MAX_UPLOADS_PER_CLIENT, ready_file: str | None = None):
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
                         rest_api_num_threads, grpc_max_threads, max_image_pixels, max_request_pixels,
                         max_uploads_per_client)
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
