"""Serving: export to TF-Serving SavedModels, a TF-Serving client, and a local compatible server.

* `signatures`: the `tf.Module`s whose named signatures are exported (`tools/export.py`).
* `client`: `ServingClient`, one API over TF-Serving's REST and gRPC protocols.
* `server`: `python -m keras_forensics serve`, a development server speaking the same protocol.
* `model_manager`, `batching`, `protocol`: the server's parts (versions on disk, request
  batching, the wire formats shared by client and server).

Production serving is the official TensorFlow Serving image (docker/); the local server exists for
development and tests. Importing this package is cheap: TensorFlow is imported by the modules that
need it.
"""
