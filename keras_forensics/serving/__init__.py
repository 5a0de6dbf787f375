"""Serving: export to TF-Serving SavedModels, a TF-Serving client, and a local compatible server.

* `modules`: the `tf.Module`s whose named signatures are exported (one per model kind).
* `export`: writing and checking SavedModels (`tools/export.py`, trainers' `--export_base`).
* `client`: `ServingClient`, one API over TF-Serving's REST and gRPC protocols.
* `server`: `python -m keras_forensics serve`, a development server speaking the same protocol,
  built from `app` (request handling), `rest` and `grpc_service` (the two front ends).
* `model_manager`, `batching`, `protocol`: the server's parts (versions on disk, request
  batching, the wire formats shared by client and server).

`modules`, `export` and `protocol` sit low in the layer order (docs/ARCHITECTURE.md): trainers
export; the rest of this package serves what they wrote.

Production serving is the official TensorFlow Serving image (docker/); the local server exists for
development and tests. Importing this package is cheap: TensorFlow is imported by the modules that
need it.
"""
