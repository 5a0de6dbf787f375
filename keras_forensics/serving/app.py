"""The protocol-independent part of the dev server: look up a servable, validate, run, describe.

`ServingApp` is what the REST (serving.rest) and gRPC (serving.grpc_service) front ends share:
one request path, so both protocols answer the same way.
"""

from __future__ import annotations

import io
import warnings

from keras_forensics.serving import protocol
from keras_forensics.serving.model_manager import ModelManager
from keras_forensics.serving.protocol import invalid

DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024
#: Encoded images are refused above this many pixels before they are decoded (decompression bombs).
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000
#: ... and a request whose encoded images have more pixels than this in all (64 images of 40 Mpx
#: each would pass the per-image limit and decode to 10 GB of float32).
DEFAULT_MAX_REQUEST_PIXELS = 100_000_000


class ServingApp:
    """The protocol-independent request handling shared by the REST and gRPC front ends."""

    def __init__(self, manager: ModelManager, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                 max_request_pixels: int = DEFAULT_MAX_REQUEST_PIXELS):
        self.manager = manager
        self.max_image_pixels = max_image_pixels
        self.max_request_pixels = max_request_pixels

    def lookup(self, name: str, version=None, label=None, signature_name: str = protocol.DEFAULT_SIGNATURE):
        """The servable version and signature a request names (NOT_FOUND / INVALID_ARGUMENT)."""
        servable = self.manager.servable(name, version, label)
        return servable, servable.signature(signature_name)

    def run(self, signature, inputs: dict, timeout=None) -> dict:
        """Validate and run one request (through the batcher when batching is on)."""
        check_image_sizes(inputs, self.max_image_pixels, self.max_request_pixels)
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


def check_image_sizes(inputs: dict, max_pixels: int, max_request_pixels: int | None = None) -> None:
    """Refuse encoded images (inputs named *_bytes) above `max_pixels` each, or above
    `max_request_pixels` all together, reading headers only."""
    from PIL import Image

    total = 0
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
            total += width * height
            if max_request_pixels is not None and total > max_request_pixels:
                raise invalid(f"the request's images add up to {total:,} pixels by image {index} of input "
                              f"'{key}', more than this server's --max_request_pixels {max_request_pixels}")
