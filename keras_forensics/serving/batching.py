"""Server-side request batching, configured like TF-Serving's `--batching_parameters_file`.

Concurrent requests to one signature of one model version are queued and run together: a batch
is closed when it holds `max_batch_size` items or `batch_timeout_micros` after its first request
arrived, whichever comes first, and `num_batch_threads` threads run batches. This is the scheme of
TF-Serving's shared batch scheduler (tensorflow_serving/batching/README.md), so the same
batching.config tunes both servers.

`BatchingParameters` is TF-Serving's message (tensorflow_serving/servables/tensorflow/
session_bundle_config.proto). The tensorflow-serving-api wheel does not ship that proto, so its
descriptor is declared here with the upstream field names and numbers (fields 1-7), and a
batching.config is parsed exactly as tensorflow_model_server parses it: protobuf text format,
unknown fields rejected.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from keras_forensics.errors import ForensicsError
from keras_forensics.serving.protocol import ServingError

logger = logging.getLogger(__name__)

#: (number, name, type) of BatchingParameters' fields in session_bundle_config.proto.
_BATCHING_FIELDS = (
    (1, "max_batch_size", ".google.protobuf.Int64Value"),
    (2, "batch_timeout_micros", ".google.protobuf.Int64Value"),
    (3, "max_enqueued_batches", ".google.protobuf.Int64Value"),
    (4, "num_batch_threads", ".google.protobuf.Int64Value"),
    (5, "thread_pool_name", ".google.protobuf.StringValue"),
    (6, "allowed_batch_sizes", "repeated int64"),
    (7, "pad_variable_length_inputs", "bool"),
)


@functools.lru_cache(maxsize=1)
def batching_parameters_class():
    """The `tensorflow.serving.BatchingParameters` message class (see the module docstring)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    file = descriptor_pb2.FileDescriptorProto(
        name="keras_forensics/serving/session_bundle_config_batching.proto",
        package="tensorflow.serving", syntax="proto3", dependency=["google/protobuf/wrappers.proto"])
    message = file.message_type.add(name="BatchingParameters")
    field_type = descriptor_pb2.FieldDescriptorProto
    for number, name, kind in _BATCHING_FIELDS:
        field = message.field.add(name=name, number=number, label=field_type.LABEL_OPTIONAL)
        if kind.startswith(".google"):
            field.type, field.type_name = field_type.TYPE_MESSAGE, kind
        elif kind == "repeated int64":
            field.type, field.label = field_type.TYPE_INT64, field_type.LABEL_REPEATED
        else:
            field.type = field_type.TYPE_BOOL
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))


@dataclasses.dataclass(frozen=True)
class BatchingOptions:
    """What the batcher uses of BatchingParameters (defaults: TF-Serving's, except the thread count).

    Attributes:
        max_batch_size: largest number of batch items run together.
        batch_timeout_micros: longest wait for a batch to fill after its first request.
        max_enqueued_batches: queue length, in batches; beyond it requests fail with
            RESOURCE_EXHAUSTED (HTTP 429) instead of waiting without bound.
        num_batch_threads: threads running batches.
    """

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = 1

    def __post_init__(self):
        if self.max_batch_size < 1 or self.num_batch_threads < 1 or self.max_enqueued_batches < 1:
            raise ForensicsError("max_batch_size, num_batch_threads and max_enqueued_batches must be positive")
        if self.batch_timeout_micros < 0:
            raise ForensicsError("batch_timeout_micros must not be negative")


def read_batching_parameters(path) -> BatchingOptions:
    """Parse a TF-Serving batching parameters file (text proto) into BatchingOptions."""
    from google.protobuf import text_format

    path = Path(path)
    if not path.is_file():
        raise ForensicsError(f"--batching_parameters_file {path}: no such file")
    message = batching_parameters_class()()
    try:
        text_format.Parse(path.read_text(), message)
    except text_format.ParseError as error:
        raise ForensicsError(f"{path}: not a valid BatchingParameters text proto ({error})") from None
    values = {name: getattr(message, name).value for _, name, kind in _BATCHING_FIELDS
              if kind.endswith("Int64Value") and message.HasField(name)}
    return BatchingOptions(**values)


class _Task:
    __slots__ = ("inputs", "size", "enqueued", "done", "outputs", "error", "abandoned")

    def __init__(self, inputs: dict, size: int):
        self.inputs, self.size = inputs, size
        self.enqueued = time.monotonic()
        self.done = threading.Event()
        self.outputs = self.error = None
        self.abandoned = False


class Batcher:
    """Runs `run(inputs) -> outputs` on batches of concurrent requests.

    Every input and output must have the batch as its first dimension. A batch that fails is
    retried request by request, so one bad request (an undecodable image, say) fails alone.

    Args:
        run: the function of a batch of named NumPy inputs, returning named NumPy outputs.
        options: the batching parameters.
        name: for thread names and logs.
        slots: a semaphore shared by the batchers of a server, bounding how many batches run at
            once across all models and signatures to `num_batch_threads` (TF-Serving's shared
            batch scheduler likewise runs every queue's batches on one thread pool).
    """

    def __init__(self, run: Callable[[dict], dict], options: BatchingOptions, name: str = "batcher",
                 slots: threading.Semaphore | None = None):
        self.run, self.options, self.name = run, options, name
        self._slots = slots or threading.BoundedSemaphore(options.num_batch_threads)
        self._queue: queue.Queue = queue.Queue(maxsize=options.max_enqueued_batches * options.max_batch_size)
        self._closed = False
        self._counter_lock = threading.Lock()
        self.batches = self.requests = 0  # runs, and requests answered by them (for tests and benchmarks)
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
                         for i in range(options.num_batch_threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, inputs: dict, size: int, timeout: float | None = None) -> dict:
        """Queue one request of `size` batch items and wait for its outputs."""
        if self._closed:
            raise ServingError("UNAVAILABLE", f"{self.name} is unloading; retry")
        task = _Task(inputs, size)
        try:
            self._queue.put_nowait(task)
        except queue.Full:
            raise ServingError("RESOURCE_EXHAUSTED", f"the batch queue of {self.name} is full; retry later") from None
        if not task.done.wait(timeout):
            task.abandoned = True
            raise ServingError("DEADLINE_EXCEEDED", f"no answer from {self.name} within {timeout:.3g} s")
        if task.error is not None:
            raise task.error
        return task.outputs

    def close(self) -> None:
        """Finish the queued requests, then stop the threads."""
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)

    def _work(self) -> None:
        carried = None
        while True:
            first = carried or self._queue.get()
            carried = None
            if first is None:
                return
            if first.abandoned:
                continue
            batch, total = [first], first.size
            deadline = first.enqueued + self.options.batch_timeout_micros / 1e6
            while total < self.options.max_batch_size:
                remaining = deadline - time.monotonic()
                try:
                    task = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if task is None:
                    self._queue.put(None)  # leave the stop signal for this thread's next round
                    break
                if task.abandoned:
                    continue
                if total + task.size > self.options.max_batch_size:
                    carried = task
                    break
                batch.append(task)
                total += task.size
            with self._slots:
                self._run_batch(batch)
            with self._counter_lock:
                self.batches += 1
                self.requests += len(batch)

    def _run_batch(self, batch: list) -> None:
        try:
            if len(batch) == 1:
                batch[0].outputs = self.run(batch[0].inputs)
            else:
                outputs = self.run({key: np.concatenate([t.inputs[key] for t in batch])
                                    for key in batch[0].inputs})
                self._split(batch, outputs)
        except Exception as error:  # noqa: BLE001 -- every error goes back to the requests
            if len(batch) == 1:
                batch[0].error = error
            else:
                for task in batch:  # isolate the request that failed
                    self._run_batch([task])
                return
        for task in batch:
            task.done.set()

    @staticmethod
    def _split(batch: list, outputs: dict) -> None:
        total = sum(task.size for task in batch)
        for name, value in outputs.items():
            if np.ndim(value) == 0 or np.shape(value)[0] != total:
                raise ServingError("INTERNAL", f"output '{name}' of a batch of {total} has shape "
                                               f"{np.shape(value)}; it cannot be split per request")
        start = 0
        for task in batch:
            task.outputs = {name: value[start:start + task.size] for name, value in outputs.items()}
            start += task.size
