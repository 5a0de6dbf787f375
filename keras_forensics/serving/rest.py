"""The dev server's REST API (tensorflow_serving/g3doc/api_rest.md) over a `ServingApp`.

`GET /v1/models/{m}[/versions/{v}|/labels/{l}]` (GetModelStatus as JSON), `GET .../metadata`
(GetModelMetadata), `POST .../{m}[/versions/{v}|/labels/{l}]:predict` with "instances" (row) or
"inputs" (columnar) bodies and {"b64": ...} binary values; errors are `{"error": "..."}` with
TF-Serving's HTTP statuses; an oversized body gets 413 without being read.

Slow clients cannot stall the server: a request's body is read in full, under one deadline
(--rest_api_timeout_in_ms for the whole body, not per read; 408 when it passes), before the
request takes one of the --rest_api_num_threads processing slots, and one client address has at
most --max_uploads_per_client bodies in flight (429 above). A client that sends its body a byte
at a time holds a connection thread until its deadline, never a slot.
"""

from __future__ import annotations

import collections
import contextlib
import http.server
import json
import logging
import re
import socket
import socketserver
import threading
import time
import urllib.parse

from keras_forensics.serving import protocol
from keras_forensics.serving.app import ServingApp
from keras_forensics.serving.protocol import ServingError, invalid

logger = logging.getLogger(__name__)

_PREDICT_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?:(classify|regress|predict)", re.IGNORECASE)
_STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:/versions/(\d+)|/labels/([^/:]+))?(?:/(metadata))?", re.IGNORECASE)
_CONTENT_LENGTH = re.compile(r"[0-9]{1,20}")  # what RFC 9110 allows: digits only (no sign, no "_")

#: Request bodies one client address may send at once (`--max_uploads_per_client`).
DEFAULT_MAX_UPLOADS_PER_CLIENT = 8


class RestServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class UploadLimit:
    """At most `per_client` request bodies in flight from one client address at a time.

    Bodies are read before a request takes a processing slot, so that slow senders hold no slot;
    this bounds what one address can hold instead (threads, and memory: at most `per_client` x
    --max_request_bytes).
    """

    def __init__(self, per_client: int = DEFAULT_MAX_UPLOADS_PER_CLIENT):
        self.per_client = per_client
        self._lock = threading.Lock()
        self._active: collections.Counter = collections.Counter()

    @contextlib.contextmanager
    def upload(self, address: str):
        """Count one body from `address` while it is read; RESOURCE_EXHAUSTED (429) above the limit."""
        with self._lock:
            if self._active[address] >= self.per_client:
                raise ServingError("RESOURCE_EXHAUSTED", f"{address} is already sending {self.per_client} request "
                                                         "bodies; this server's --max_uploads_per_client is "
                                                         f"{self.per_client}")
            self._active[address] += 1
        try:
            yield
        finally:
            with self._lock:
                self._active[address] -= 1
                if not self._active[address]:
                    del self._active[address]


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
            # The body first, under its own deadline; only then a processing slot.
            body = self._read_body() if method in ("POST", "PUT") else b""
            with self.server.options["slots"]:
                status, body = self._dispatch(method, body)
        except ServingError as error:
            status, body = error.http_status, protocol.error_body(error.message)
        except Exception as error:  # noqa: BLE001 -- never let a request take the server down
            logger.exception("REST request %s %s failed", method, self.path)
            status, body = 500, protocol.error_body(f"{type(error).__name__}: {error}")
        self._reply(status, body)

    def _reply(self, status: int, body: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except OSError as error:  # the client left (a body cut short): nobody to tell
            logger.debug("%s left before its %d answer (%s)", self.address_string(), status, error)
            self.close_connection = True
            self._linger = False

    def _read_body(self) -> bytes:
        """The request body, whole, within --rest_api_timeout_in_ms of now (408 after that)."""
        deadline = time.monotonic() + self.server.options["timeout"]
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked" or length is None:
            self.close_connection = True
            raise invalid("a request body needs a Content-Length header")
        if not _CONTENT_LENGTH.fullmatch(length.strip()):
            self.close_connection = True  # the body's end is unknown: the connection cannot be reused
            self._linger = True
            raise invalid(f"bad Content-Length {length!r} (a whole number of bytes)")
        length = int(length)
        limit = self.server.options["max_request_bytes"]
        if length > limit:
            self.close_connection = True  # the body is not read; the connection cannot be reused
            self._linger = True
            raise _TooLarge(f"request body of {length} bytes exceeds this server's --max_request_bytes {limit}")
        try:
            with self.server.options["uploads"].upload(self.client_address[0]):
                return self._read_until(length, deadline)
        except ServingError:
            self.close_connection = True  # what is left of the body is unread
            self._linger = True
            raise

    def _read_until(self, length: int, deadline: float) -> bytes:
        """`length` bytes of body, or _Timeout once `deadline` passes (the socket's own timeout
        applies per read: a client sending a byte a second would never meet it)."""
        chunks, remaining = [], length
        try:
            while remaining:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                self.connection.settimeout(left)
                chunk = self.rfile.read1(min(remaining, 1 << 16))
                if not chunk:
                    raise invalid(f"the request body ended after {length - remaining} of its {length} bytes")
                chunks.append(chunk)
                remaining -= len(chunk)
        except TimeoutError:
            raise _Timeout(f"the request body ({length} bytes) did not arrive within this server's "
                           f"--rest_api_timeout_in_ms {round(self.server.options['timeout'] * 1000)}") from None
        finally:
            self.connection.settimeout(self.timeout)
        return b"".join(chunks)

    def _dispatch(self, method: str, body: bytes):
        app: ServingApp = self.server.app
        path = urllib.parse.urlsplit(self.path).path
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


class _Timeout(ServingError):
    def __init__(self, message: str):
        super().__init__("DEADLINE_EXCEEDED", message)

    @property
    def http_status(self) -> int:
        return 408  # Request Timeout: the client, not the model, was too slow


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
