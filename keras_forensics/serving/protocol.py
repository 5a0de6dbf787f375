"""TF-Serving's wire formats, shared by the client and the local server (NumPy only, no TensorFlow).

* Error codes: TF-Serving answers with gRPC status codes, and its REST API maps them to HTTP
  statuses with one fixed table (`HTTP_STATUS`, from tensorflow_serving/model_servers/http_server.cc).
  Every REST error body is `{"error": "<message>"}`.
* The REST predict JSON (tensorflow_serving/g3doc/api_rest.md): a request holds either
  "instances" (row format: one entry per batch item; one object of named inputs per item when the
  signature has several inputs) or "inputs" (columnar: one value, or an object of named values),
  plus an optional "signature_name". The answer is "predictions" (row) or "outputs" (columnar);
  with one output tensor its name is omitted. Binary strings travel as `{"b64": "<base64>"}`,
  and outputs whose name ends in `_bytes` are sent that way.
* Images sent to the `*_bytes` signatures: `encode_png` (16-bit gray keeps float precision).
"""

from __future__ import annotations

import base64
import binascii
import io
import json

import numpy as np

from keras_forensics.errors import ForensicsError

#: gRPC status code name -> HTTP status, as TF-Serving's REST server maps them.
HTTP_STATUS = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}

#: gRPC / TensorFlow status code names, indexed by their number (TF op errors use the same codes).
CODE_NAMES = ("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
              "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
              "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED")

DEFAULT_SIGNATURE = "serving_default"
ROW, COLUMNAR = "instances", "inputs"


class ServingError(ForensicsError):
    """An error answered by a model server (or found before sending a request to one).

    Attributes:
        code: the gRPC status code name ("INVALID_ARGUMENT", "NOT_FOUND", ...).
        message: the server's message, verbatim.
        http_status: the HTTP status TF-Serving's REST API uses for `code`.
    """

    def __init__(self, code: str, message: str):
        self.code = code if code in HTTP_STATUS else "UNKNOWN"
        self.message = message
        super().__init__(f"{self.code}: {message}")

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]


def invalid(message: str) -> ServingError:
    return ServingError("INVALID_ARGUMENT", message)


def error_body(message: str) -> bytes:
    """TF-Serving's REST error JSON."""
    return json.dumps({"error": message}).encode()


# ---------------------------------------------------------------------------------------------
# Request side


def encode_value(array: np.ndarray):
    """A NumPy array -> its JSON form; bytes become {"b64": ...} objects."""
    array = np.asarray(array)
    if array.dtype.kind in "OSV":
        return _map_nested(array.tolist(), _b64_object)
    return array.tolist()


def _b64_object(item):
    if isinstance(item, str):
        item = item.encode()
    return {"b64": base64.b64encode(bytes(item)).decode("ascii")}


def _map_nested(value, function):
    if isinstance(value, list):
        return [_map_nested(item, function) for item in value]
    return function(value)


def columnar_request(inputs: dict, signature_name: str = DEFAULT_SIGNATURE) -> dict:
    """The "inputs" (columnar) predict request for named NumPy inputs."""
    return {"signature_name": signature_name, "inputs": {k: encode_value(v) for k, v in inputs.items()}}


def parse_json_body(body: bytes) -> dict:
    """Body bytes -> the request object, or INVALID_ARGUMENT naming what is wrong."""
    try:
        request = json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise invalid(f"JSON Parse error: {error}") from None
    except RecursionError:  # [[[[... nested past Python's recursion limit: the client's mistake
        raise invalid("JSON Parse error: nested too deeply") from None
    if not isinstance(request, dict):
        raise invalid(f"JSON Value: {_excerpt(request)} Is not object")
    return request


def _excerpt(value, limit: int = 80) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit] + "..."


def request_signature_name(request: dict) -> str:
    name = request.get("signature_name", DEFAULT_SIGNATURE)
    if not isinstance(name, str):
        raise invalid("'signature_name' must be a string")
    return name or DEFAULT_SIGNATURE


def inputs_from_json(request: dict, specs: dict) -> tuple[dict, str]:
    """A parsed predict request -> ({input name: NumPy array}, format).

    Args:
        request: the JSON object.
        specs: input name -> NumPy dtype the signature expects (object for strings).

    Returns:
        the inputs and the request's format, ROW ("instances") or COLUMNAR ("inputs").
    """
    has_rows, has_columns = ROW in request, COLUMNAR in request
    if has_rows and has_columns:
        raise invalid("Not formatted correctly expecting only one of 'inputs' or 'instances' keys exists")
    if not (has_rows or has_columns):
        raise invalid("Missing 'inputs' or 'instances' key")
    names = sorted(specs)
    if has_rows:
        rows = request[ROW]
        if not isinstance(rows, list) or not rows:
            raise invalid("Expecting 'instances' to be an list/array with at least one element")
        named = all(_is_named(row) for row in rows)
        if named:
            for index, row in enumerate(rows):
                _check_names(set(row), names, f"item {index} of 'instances'")
            columns = {name: [row[name] for row in rows] for name in names}
        elif len(names) == 1:
            columns = {names[0]: rows}
        else:
            raise invalid(f"Expecting each item of 'instances' to be an object with the named inputs "
                          f"{names}, got {_excerpt(rows[0])}")
        return {name: _to_array(value, specs[name], name) for name, value in columns.items()}, ROW
    columns = request[COLUMNAR]
    if _is_named(columns):
        _check_names(set(columns), names, "'inputs'")
    elif len(names) == 1:
        columns = {names[0]: columns}
    else:
        raise invalid(f"'inputs' must be an object with the named inputs {names}")
    return {name: _to_array(columns[name], specs[name], name) for name in names}, COLUMNAR


def _is_named(value) -> bool:
    """An object of named inputs (a {"b64": ...} object is a value, not a name map)."""
    return isinstance(value, dict) and set(value) != {"b64"}


def _check_names(sent: set, names: list, where: str) -> None:
    if sent != set(names):
        raise invalid(input_mismatch_message(sent, set(names)) + f" (in {where})")


def input_mismatch_message(sent: set, wanted: set) -> str:
    """TF-Serving's message for a request whose input names differ from the signature's."""
    def names(values):
        return "{" + ",".join(sorted(values)) + "}"

    return (f"input size does not match signature: {len(sent)}!={len(wanted)} "
            f"len({names(sent)}) != len({names(wanted)}). Sent extra: {names(sent - wanted)}. "
            f"Missing but required: {names(wanted - sent)}.")


def _to_array(value, dtype, name: str) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype.kind == "O":
        strings = _map_nested(value, lambda item: _to_bytes(item, name))
        array = _nested_array(strings, name, dtype=object)
        return array
    array = _nested_array(value, name)
    if array.dtype.kind not in ("b" if dtype.kind == "b" else "iuf"):
        raise invalid(f"input '{name}': expected {dtype.name} numbers, got {_excerpt(value)}")
    return array.astype(dtype)


def _nested_array(value, name: str, dtype=None) -> np.ndarray:
    try:
        array = np.array(value, dtype=dtype)
    except (ValueError, TypeError) as error:
        raise invalid(f"input '{name}': not a rectangular array of values ({error})") from None
    if dtype is object and array.ndim and any(isinstance(item, list) for item in array.reshape(-1)):
        raise invalid(f"input '{name}': not a rectangular array of strings")
    return array


def _to_bytes(item, name: str) -> bytes:
    if isinstance(item, dict):
        if set(item) != {"b64"} or not isinstance(item["b64"], str):
            raise invalid(f"input '{name}': expected a string or a {{\"b64\": ...}} object, got {_excerpt(item)}")
        return decode_b64(item["b64"], name)
    if isinstance(item, str):
        return item.encode()
    raise invalid(f"input '{name}': expected a string or a {{\"b64\": ...}} object, got {_excerpt(item)}")


def decode_b64(text: str, name: str = "value") -> bytes:
    """Standard or URL-safe base64 (TF-Serving accepts both), strictly validated."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        pass
    try:
        return base64.b64decode(text.encode("ascii"), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise invalid(f"input '{name}': unable to base64 decode") from None


# ---------------------------------------------------------------------------------------------
# Response side


def outputs_to_json(outputs: dict, request_format: str) -> dict:
    """Named NumPy outputs -> {"predictions": ...} (row format) or {"outputs": ...} (columnar)."""
    encoded = {name: _output_value(name, value) for name, value in outputs.items()}
    if request_format == COLUMNAR:
        return {"outputs": next(iter(encoded.values())) if len(encoded) == 1 else encoded}
    sizes = {name: (np.shape(value)[0] if np.ndim(value) else None) for name, value in outputs.items()}
    batch = {size for size in sizes.values()}
    if len(batch) != 1 or None in batch:
        raise ServingError("INVALID_ARGUMENT",
                           f"the outputs have inconsistent batch sizes {sizes}; use the columnar 'inputs' format")
    if len(encoded) == 1:
        return {"predictions": next(iter(encoded.values()))}
    count = batch.pop()
    return {"predictions": [{name: encoded[name][index] for name in encoded} for index in range(count)]}


def _output_value(name: str, value):
    value = np.asarray(value)
    if value.dtype.kind in "OS":
        if name.endswith("_bytes"):
            return encode_value(value)
        return _map_nested(value.tolist(), lambda item: item.decode("utf-8", "replace")
                           if isinstance(item, bytes) else item)
    return value.tolist()


def outputs_from_json(response: dict, output_names: list[str]) -> dict:
    """A columnar predict answer -> {output name: NumPy array} (the client side of `outputs_to_json`)."""
    if "outputs" not in response:
        raise ServingError("UNKNOWN", f"the server's answer has no 'outputs': {_excerpt(response)}")
    outputs = response["outputs"]
    if not (isinstance(outputs, dict) and set(outputs) == set(output_names)):
        if len(output_names) != 1:
            raise ServingError("UNKNOWN", f"the server's answer does not name the outputs {output_names}")
        outputs = {output_names[0]: outputs}
    return {name: _decode_output(value) for name, value in outputs.items()}


def _decode_output(value):
    if isinstance(value, dict) and set(value) == {"b64"}:
        return np.array(decode_b64(value["b64"]), dtype=object)
    if isinstance(value, list) and value and isinstance(value[0], (dict, list)) and _has_b64(value):
        return np.array(_map_nested(value, lambda item: decode_b64(item["b64"])), dtype=object)
    return np.asarray(value)


def _has_b64(value) -> bool:
    while isinstance(value, list) and value:
        value = value[0]
    return isinstance(value, dict) and "b64" in value


# ---------------------------------------------------------------------------------------------
# Images on the wire


def encode_png(image: np.ndarray) -> bytes:
    """A float image in [0, 1] ([H, W] or [H, W, 1|3]) -> PNG bytes: 16-bit gray or 8-bit RGB."""
    from PIL import Image

    image = np.clip(np.asarray(image, np.float32), 0.0, 1.0)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        picture = Image.fromarray(np.round(image * 65535).astype(np.uint16))
    elif image.ndim == 3 and image.shape[-1] == 3:
        picture = Image.fromarray(np.round(image * 255).astype(np.uint8))
    else:
        raise ForensicsError(f"cannot encode an image of shape {image.shape} (gray or RGB)")
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()
