"""Versioned SavedModels on disk, loaded and swapped while serving (the local server's core).

Follows TF-Serving's model layout and policies: each model has a base path holding numeric version
folders (`<base_path>/<version>/saved_model.pb`); the `model_version_policy` of a
ModelServerConfig picks which versions to serve (`latest { num_versions: N }`, default 1;
`all {}`; `specific { versions: ... }`); a thread polls the base paths every
`file_system_poll_wait_seconds` and loads new versions before it unloads the old ones (TF-Serving's
availability-preserving policy), so a version dropped in is served without a restart and requests
never find a model missing. A new version is warmed up with its assets.extra warm-up requests
before it is marked AVAILABLE, as TF-Serving does.

Requests that name no version get the newest AVAILABLE one.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from keras_forensics.errors import ForensicsError
from keras_forensics.serving.batching import Batcher, BatchingOptions
from keras_forensics.serving.protocol import (CODE_NAMES, DEFAULT_SIGNATURE, ServingError, input_mismatch_message,
                                              invalid)

logger = logging.getLogger(__name__)

_VERSION = re.compile(r"^\d+$")

#: TF-Serving replays at most this many warm-up records (tensorflow_serving/servables/tensorflow/util.h).
MAX_WARMUP_RECORDS = 1000


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """One entry of a ModelServerConfig's model_config_list."""

    name: str
    base_path: Path
    policy: str = "latest"  # "latest", "all" or "specific"
    num_versions: int = 1
    versions: tuple[int, ...] = ()
    labels: tuple[tuple[str, int], ...] = ()

    def aspired(self, on_disk: list[int]) -> list[int]:
        """The versions this policy serves among those on disk."""
        if self.policy == "all":
            return sorted(on_disk)
        if self.policy == "specific":
            return sorted(set(on_disk) & set(self.versions))
        return sorted(on_disk)[-self.num_versions:] if on_disk else []


def read_model_config(path) -> list[ModelSource]:
    """Parse a TF-Serving model config file (ModelServerConfig text proto).

    Base paths: an absolute path is used as is; a relative one is resolved from the config file's
    folder. TF-Serving itself requires absolute paths, and the shipped models.config uses the
    container's /models/<name>: when such a path does not exist here, the folder of the same name
    beside the config file is used instead (logged), so one file serves the Docker image and the
    local server.
    """
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    path = Path(path)
    if not path.is_file():
        raise ForensicsError(f"--model_config_file {path}: no such file")
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(path.read_text(), config)
    except text_format.ParseError as error:
        raise ForensicsError(f"{path}: not a valid ModelServerConfig text proto ({error})") from None
    if config.WhichOneof("config") != "model_config_list":
        raise ForensicsError(f"{path}: only model_config_list configs are supported")
    sources, names = [], set()
    for entry in config.model_config_list.config:
        if not entry.name or entry.name in names:
            raise ForensicsError(f"{path}: every model needs a unique name (got {entry.name!r} twice or empty)")
        if entry.model_platform not in ("", "tensorflow"):
            raise ForensicsError(f"{path}: model {entry.name}: platform {entry.model_platform!r} is not served")
        names.add(entry.name)
        sources.append(_source_of(entry, _resolve_base_path(entry.base_path, path.parent, entry.name)))
    return sources


def _resolve_base_path(base_path: str, config_dir: Path, name: str) -> Path:
    if not base_path:
        raise ForensicsError(f"model {name}: base_path is empty")
    candidate = Path(base_path)
    if not candidate.is_absolute():
        return (config_dir / candidate).resolve()
    if candidate.exists():
        return candidate
    beside = (config_dir / candidate.name).resolve()
    logger.warning("model %s: base_path %s does not exist here; watching %s beside the config file",
                   name, candidate, beside)
    return beside


def _source_of(entry, base_path: Path) -> ModelSource:
    policy = entry.model_version_policy
    which = policy.WhichOneof("policy_choice") or "latest"
    labels = tuple(sorted(entry.version_labels.items()))
    if which == "specific":
        return ModelSource(entry.name, base_path, "specific", versions=tuple(policy.specific.versions),
                           labels=labels)
    if which == "all":
        return ModelSource(entry.name, base_path, "all", labels=labels)
    num_versions = policy.latest.num_versions if which == "latest" and policy.latest.num_versions else 1
    return ModelSource(entry.name, base_path, "latest", num_versions=num_versions, labels=labels)


def versions_on_disk(base_path: Path) -> dict[int, Path]:
    """Complete version folders (numeric names holding saved_model.pb) under a base path."""
    try:
        children = list(Path(base_path).iterdir())
    except OSError:
        return {}
    return {int(child.name): child for child in children
            if _VERSION.match(child.name) and (child / "saved_model.pb").is_file()}


@dataclasses.dataclass
class Signature:
    """One signature of a loaded version: its function and its input/output specs.

    `inputs` / `outputs` map names to (NumPy dtype, shape with -1 for unknown dimensions).
    """

    name: str
    function: Callable
    inputs: dict
    outputs: dict
    batcher: Batcher | None = None

    @property
    def batchable(self) -> bool:
        """Every input and output has an unknown first (batch) dimension."""
        return all(len(shape) >= 1 and shape[0] == -1
                   for _, shape in list(self.inputs.values()) + list(self.outputs.values()))

    def validate(self, inputs: dict) -> int:
        """Check names, dtypes and shapes against the signature; returns the batch size (or -1)."""
        if set(inputs) != set(self.inputs):
            raise invalid(input_mismatch_message(set(inputs), set(self.inputs)))
        batch = set()
        for key, array in inputs.items():
            dtype, shape = self.inputs[key]
            if (dtype.kind == "O") != (array.dtype.kind in "OS") or (dtype.kind != "O" and array.dtype != dtype):
                raise invalid(f"input '{key}' of signature '{self.name}' expects {_dtype_name(dtype)}, "
                              f"got {_dtype_name(array.dtype)}")
            if len(array.shape) != len(shape) or any(w != -1 and w != g for w, g in zip(shape, array.shape)):
                raise invalid(f"input '{key}' of signature '{self.name}' has shape {list(array.shape)}, "
                              f"the signature expects {list(shape)} (-1: any size)")
            if array.ndim:
                batch.add(array.shape[0])
        if self.batchable and len(batch) > 1:
            raise invalid(f"the inputs of signature '{self.name}' have different batch sizes {sorted(batch)}")
        return batch.pop() if len(batch) == 1 else -1

    def run(self, inputs: dict) -> dict:
        """Run the function directly (no batching) on validated inputs."""
        import tensorflow as tf

        tensors = {key: tf.constant(value, dtype=tf.string if self.inputs[key][0].kind == "O"
                                    else tf.as_dtype(self.inputs[key][0]))
                   for key, value in inputs.items()}
        try:
            outputs = self.function(**tensors)
        except tf.errors.OpError as error:
            raise ServingError(_tf_code_name(error), _op_error_message(error.message)) from None
        return {key: value.numpy() for key, value in outputs.items()}

    def __call__(self, inputs: dict, timeout: float | None = None) -> dict:
        """Validate and run, through the batcher when there is one."""
        size = self.validate(inputs)
        if self.batcher is not None and size > 0:
            return self.batcher.submit(inputs, size, timeout)
        return self.run(inputs)


def _dtype_name(dtype) -> str:
    return "string" if np.dtype(dtype).kind in "OS" else np.dtype(dtype).name


def _op_error_message(message: str) -> str:
    """The cause in a TF op error, without the graph trace around it (the client needs the cause)."""
    noise = ("Graph execution error", "Detected at node", "<stack traces unavailable>", "[[", "File ")
    lines = [line.strip() for line in message.splitlines()]
    kept = [line for line in lines if line and not line.startswith(noise)]
    return " ".join(kept[:3]) or lines[0]


def _tf_code_name(error) -> str:
    code = error.error_code
    return CODE_NAMES[code] if 0 < code < len(CODE_NAMES) else "INTERNAL"


@dataclasses.dataclass
class Servable:
    """One loaded version of a model."""

    name: str
    version: int
    path: Path
    loaded: object  # the tf.saved_model.load result; keeps the variables alive
    signatures: dict
    signature_defs: dict  # name -> SignatureDef proto, for GetModelMetadata

    def signature(self, name: str) -> Signature:
        name = name or DEFAULT_SIGNATURE
        if name not in self.signatures:
            raise invalid(f'Serving signature name: "{name}" not found in signature def')
        return self.signatures[name]

    def close(self) -> None:
        for signature in self.signatures.values():
            if signature.batcher is not None:
                signature.batcher.close()


def load_servable(name: str, version: int, path: Path, batching: BatchingOptions | None = None,
                  warmup: bool = True, slots: threading.Semaphore | None = None) -> Servable:
    """Load one version folder: its signatures, their specs, batchers, and the warm-up replay.

    `slots` bounds the batches running at once across the batchers sharing it.
    """
    import tensorflow as tf

    from keras_forensics.serving.export import read_signature_defs

    loaded = tf.saved_model.load(str(path), tags=["serve"])
    definitions = read_signature_defs(path)
    signatures = {}
    for key, function in loaded.signatures.items():
        definition = definitions[key]
        signature = Signature(key, function, _specs(definition.inputs), _specs(definition.outputs))
        if batching is not None and signature.batchable:
            signature.batcher = Batcher(signature.run, batching, name=f"{name}:{version}:{key}", slots=slots)
        signatures[key] = signature
    servable = Servable(name, version, path, loaded, signatures, definitions)
    if warmup:
        try:
            replay_warmup(servable)
        except Exception:
            servable.close()
            raise
    return servable


def _specs(tensor_infos) -> dict:
    import tensorflow as tf

    specs = {}
    for key, info in tensor_infos.items():
        dtype = tf.dtypes.as_dtype(info.dtype)
        numpy_dtype = np.dtype(object) if dtype == tf.string else np.dtype(dtype.as_numpy_dtype)
        shape = () if info.tensor_shape.unknown_rank else tuple(int(d.size) for d in info.tensor_shape.dim)
        specs[key] = (numpy_dtype, shape)
    return specs


def replay_warmup(servable: Servable) -> int:
    """Run the version's assets.extra/tf_serving_warmup_requests; returns the number replayed."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    from keras_forensics.serving.export import WARMUP_FILE

    path = servable.path / WARMUP_FILE
    if not path.is_file():
        return 0
    count = 0
    for record in tf.data.TFRecordDataset(str(path)).take(MAX_WARMUP_RECORDS):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        if log.WhichOneof("log_type") != "predict_log":
            continue
        request = log.predict_log.request
        inputs = {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
        servable.signature(request.model_spec.signature_name).run(inputs)
        count += 1
    return count


@dataclasses.dataclass
class VersionStatus:
    """A version's state as GetModelStatus reports it (ModelVersionStatus.State names)."""

    version: int
    state: str
    error_code: str = "OK"
    error_message: str = ""


class ModelManager:
    """Loads, serves and swaps the versions of the configured models.

    Args:
        sources: the models (see `read_model_config`).
        poll_seconds: how often to look for new versions (0: only when `poll_once` is called).
        batching: batch concurrent requests with these options (None: no batching).
        warmup: replay each version's warm-up requests before serving it.
    """

    def __init__(self, sources: list[ModelSource], poll_seconds: float = 1.0,
                 batching: BatchingOptions | None = None, warmup: bool = True):
        self.poll_seconds = poll_seconds
        self.batching, self.warmup = batching, warmup
        self._slots = threading.BoundedSemaphore(batching.num_batch_threads) if batching else None
        self._sources = {source.name: source for source in sources}
        self._servables: dict[str, dict[int, Servable]] = {source.name: {} for source in sources}
        self._status: dict[str, dict[int, VersionStatus]] = {source.name: {} for source in sources}
        self._failed: dict[tuple, tuple] = {}  # (name, version) -> the folder identity that failed
        self._identity: dict[tuple, tuple] = {}  # (name, version) -> the folder identity loaded
        self._warned_empty: set[str] = set()
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Load what is on disk now, then keep polling in a background thread."""
        self.poll_once()
        if self.poll_seconds > 0:
            self._thread = threading.Thread(target=self._poll_forever, name="model-manager", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            for versions in self._servables.values():
                for servable in versions.values():
                    servable.close()

    def set_sources(self, sources: list[ModelSource]) -> None:
        """Replace the configured models (a re-read model config file); removed models are unloaded."""
        with self._poll_lock, self._lock:
            removed = set(self._sources) - {source.name for source in sources}
            for name in removed:
                for servable in self._servables.pop(name, {}).values():
                    servable.close()
                self._status.pop(name, None)
            self._sources = {source.name: source for source in sources}
            for name in self._sources:
                self._servables.setdefault(name, {})
                self._status.setdefault(name, {})
        self.poll_once()

    def _poll_forever(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001 -- the poller must outlive any one bad folder
                logger.exception("polling the model folders failed")

    def poll_once(self) -> None:
        """Load newly aspired versions, then unload versions no longer aspired."""
        with self._poll_lock:
            for source in list(self._sources.values()):
                self._sync(source)

    def _sync(self, source: ModelSource) -> None:
        on_disk = versions_on_disk(source.base_path)
        aspired = source.aspired(list(on_disk))
        if not on_disk and source.name not in self._warned_empty:
            self._warned_empty.add(source.name)  # once: the poller would repeat it every second
            logger.warning("no versions of model %s under %s yet (waiting for <version>/saved_model.pb)",
                           source.name, source.base_path)
        if on_disk:
            self._warned_empty.discard(source.name)
        for version in aspired:
            path = on_disk[version]
            identity = _identity(path)
            key = (source.name, version)
            if self._identity.get(key) == identity or self._failed.get(key) == identity:
                continue
            self._set_status(source.name, VersionStatus(version, "LOADING"))
            started = time.perf_counter()
            try:
                servable = load_servable(source.name, version, path, self.batching, self.warmup, self._slots)
            except Exception as error:  # noqa: BLE001 -- a broken version must not stop the server
                self._failed[key] = identity
                message = f"{type(error).__name__}: {error}".splitlines()[0]
                logger.error("model %s version %d failed to load: %s", source.name, version, message)
                self._set_status(source.name, VersionStatus(version, "END", "UNKNOWN", message))
                continue
            with self._lock:
                previous = self._servables[source.name].get(version)
                self._servables[source.name][version] = servable
                self._status[source.name][version] = VersionStatus(version, "AVAILABLE")
            if previous is not None:
                previous.close()
            self._identity[key] = identity
            self._failed.pop(key, None)
            logger.info("serving model %s version %d (%s) after %.1f s", source.name, version, path,
                        time.perf_counter() - started)
        for version in [v for v in self._servables.get(source.name, {}) if v not in aspired]:
            with self._lock:
                servable = self._servables[source.name].pop(version)
                self._status[source.name][version] = VersionStatus(version, "END")
            self._identity.pop((source.name, version), None)
            servable.close()
            logger.info("unloaded model %s version %d", source.name, version)

    def _set_status(self, name: str, status: VersionStatus) -> None:
        with self._lock:
            if name in self._status:
                self._status[name][status.version] = status

    # -- queries ----------------------------------------------------------------------------

    @property
    def model_names(self) -> list[str]:
        return sorted(self._sources)

    def servable(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The version a request asks for: a number, a label, or the newest available."""
        with self._lock:
            versions = self._servables.get(name)
            if versions is None:
                raise ServingError("NOT_FOUND", f"Servable not found for request: Latest({name})")
            version = self._labelled(name, label, version)
            if version is None:
                if not versions:
                    raise ServingError("NOT_FOUND", f"Servable not found for request: Latest({name})")
                return versions[max(versions)]
            if version not in versions:
                raise ServingError("NOT_FOUND", f"Servable not found for request: Specific({name}, {version})")
            return versions[version]

    def _labelled(self, name: str, label: str | None, version: int | None) -> int | None:
        """The version a label of the model config points to (or `version` when no label)."""
        if not label:
            return version
        labels = dict(self._sources[name].labels)
        if label not in labels:
            raise ServingError("NOT_FOUND", f"Unrecognized servable version label: {label}")
        return labels[label]

    def status(self, name: str, version: int | None = None, label: str | None = None) -> list[VersionStatus]:
        """GetModelStatus: every known version (or one), newest first."""
        with self._lock:
            if name not in self._status:
                raise ServingError("NOT_FOUND", f"Could not find any versions of model {name}")
            version = self._labelled(name, label, version)
            statuses = self._status[name]
            if version is not None:
                if version not in statuses:
                    raise ServingError("NOT_FOUND", f"Could not find version {version} of model {name}")
                return [statuses[version]]
            if not statuses:
                raise ServingError("NOT_FOUND", f"Could not find any versions of model {name}")
            return [statuses[v] for v in sorted(statuses, reverse=True)]


def _identity(path: Path) -> tuple:
    """A version folder's identity: a re-export (--overwrite) of the same number changes it."""
    stat = os.stat(path / "saved_model.pb")
    return (os.stat(path).st_ino, stat.st_ino, stat.st_mtime_ns)
