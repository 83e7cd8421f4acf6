"""One loaded version of a SavedModel as the local server runs it.

`ServedModel` loads `MODEL_DIR/NAME/VERSION/` (tag `serve`), keeps its signatures and their
SignatureDefs (for GetModelMetadata), checks requests against them under the server's
`RequestLimits` and runs them, directly or through a `Batcher`.

It loads the SavedModel into its own `tf.Graph` and `tf.compat.v1.Session` (as TF-Serving's
SavedModelBundle does), not with `tf.saved_model.load`: the eager loader keeps every loaded
function in the process-wide context, so each reload kept ~64 MiB for good (30 reloads of the
tiny test model: 693 -> 2,627 MiB RSS); a closed session and its graph are freed
(`tfrf.serving.repository.release_memory`; 30 reloads: 641 -> 672 MiB). `close()` releases the session once the requests running on it have finished. A request runs the model on
slices of its batch (about `RequestLimits.run_bytes` of inputs each), so its working memory does
not grow with its batch size and a request whose RPC ends is abandoned between slices.
"""
from __future__ import annotations

import collections
import gc
import os
import re
import threading
import time
from concurrent import futures
from typing import Callable, Dict, Mapping, Optional

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorflow.core.protobuf import saved_model_pb2

from tfrf.serving.batching import Batcher, BatchingError, BatchingParameters
from tfrf.serving.limits import RequestError, RequestLimits, check_request, ensure_active

_NOISE = re.compile(r"^(Graph execution error:|Detected at node |<stack traces unavailable>|\[\[)")


def graph_error_message(message: str) -> str:
    """The user-facing part of a TensorFlow run-time error: the graph's own assertion text when
    there is one, else the message without TensorFlow's node names and trace lines."""
    assertion = re.search(r"assertion failed: \[(.+?)\] \[Condition", message)
    if assertion:
        return assertion.group(1)
    lines = [line.strip() for line in message.splitlines()]
    kept = [re.sub(r"\s*\[\[\{\{node .*$|\s*\[Op:\S+\]$", "", line) for line in lines if line and not _NOISE.match(line)]
    return "; ".join(line for line in kept if line) or message


class Counters:
    """Thread-safe event counts (requests started, expired, abandoned, model runs...)."""

    def __init__(self):
        self._counts = collections.Counter()
        self._lock = threading.Lock()

    def add(self, key: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[key] += amount

    def snapshot(self) -> Dict[str, int]:
        with self._lock:
            return dict(self._counts)


def _spec(info) -> tf.TensorSpec:
    """The TensorSpec of a SignatureDef's TensorInfo (-1: an unknown dimension)."""
    shape = None if info.tensor_shape.unknown_rank else [None if dim.size < 0 else dim.size
                                                         for dim in info.tensor_shape.dim]
    return tf.TensorSpec(shape, tf.as_dtype(info.dtype))


class ServedModel:
    """One loaded version of a SavedModel: its signatures, limits and batchers.

    Args:
        name: the model name clients ask for.
        version: the integer version.
        path: the version directory.
        batching: batch concurrent requests per signature, or None.
        limits: resolved `RequestLimits` (`RequestLimits().resolve(batching)` by default).
        counters: where runs are counted (`runs`, `examples_run`); a new `Counters` by default.
    """

    def __init__(self, name: str, version: int, path: str, batching: Optional[BatchingParameters] = None,
                 limits: Optional[RequestLimits] = None, counters: Optional[Counters] = None):
        self.name, self.version, self.path = name, version, path
        self.batching = batching
        self.limits = (limits or RequestLimits()).resolve(batching)
        self.counters = counters or Counters()
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise FileNotFoundError(f"{path} holds no saved_model.pb")
        proto = saved_model_pb2.SavedModel()
        with open(os.path.join(path, "saved_model.pb"), "rb") as stream:
            try:
                proto.ParseFromString(stream.read())
            except DecodeError:
                raise ValueError(f"cannot parse {os.path.join(path, 'saved_model.pb')}: not a SavedModel") from None
        del proto
        self._users, self._closed = 0, False
        self._lock = threading.Lock()
        self._graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=self._graph)
        try:
            with self._graph.as_default():
                meta_graph = tf.compat.v1.saved_model.loader.load(self._session, ["serve"], path)
        except BaseException:
            self._session.close()
            self._session = self._graph = None
            gc.collect()  # a failed load frees what it took, like an unloaded version
            raise
        self.signature_defs = {key: value for key, value in meta_graph.signature_def.items()
                               if not key.startswith("__")}  # not __saved_model_init_op
        self.signatures = self.signature_defs
        if not self.signatures:
            self._session.close()
            raise ValueError(f"{path} has no signatures to serve")
        self.input_specs = {key: {name: _spec(info) for name, info in value.inputs.items()}
                            for key, value in self.signature_defs.items()}
        self.max_batch_sizes = {key: self.limits.batch_limit(specs, batching) for key, specs in self.input_specs.items()}
        self._runners = {key: self._runner(key) for key in self.signatures}
        self._batchers = {}
        if batching is not None:
            self._batchers = {key: Batcher(batching, self._runners[key]) for key in self.signatures}

    def _runner(self, signature_name: str) -> Callable:
        signature = self.signature_defs[signature_name]
        feeds = {name: info.name for name, info in signature.inputs.items()}
        fetches = {name: info.name for name, info in signature.outputs.items()}

        def function(**arrays):
            return self._session.run(fetches, {feeds[name]: value for name, value in arrays.items()})

        specs = self.input_specs[signature_name]
        sliceable = all(spec.shape.rank and spec.shape[0] is None for spec in specs.values())

        def run(inputs: Dict[str, np.ndarray], should_continue: Optional[Callable[[], None]] = None):
            size = next(iter(inputs.values())).shape[0] if sliceable else 1
            example_bytes = sum(value.nbytes for value in inputs.values()) // max(size, 1)
            step = max(1, self.limits.run_bytes // max(example_bytes, 1)) if sliceable else 1
            parts = []
            for start in range(0, size, step):
                if start and should_continue is not None:
                    should_continue()
                chunk = {name: value[start:start + step] if sliceable else value for name, value in inputs.items()}
                parts.append(function(**chunk))
                self.counters.add("runs")
                self.counters.add("examples_run", min(step, size - start))
            if len(parts) == 1:
                return parts[0]
            return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

        return run

    def check_request(self, signature_name: str, inputs: Mapping) -> Dict[str, list]:
        """The declared input shapes after checking the request's TensorProtos (nothing decoded)."""
        return check_request(inputs, self.input_specs[signature_name], self.limits,
                             self.max_batch_sizes[signature_name],
                             f"signature {signature_name!r} of model {self.name!r}",
                             self.batching.max_batch_size if self.batching is not None else None)

    def run(self, signature_name: str, inputs: Dict[str, np.ndarray], context=None) -> Dict[str, np.ndarray]:
        """Runs a checked request, through the batcher when batching is on.

        A request whose RPC ends (deadline, cancel) before its batch starts is withdrawn from
        the queue; a request run directly stops between slices of its batch.
        """
        with self._lock:
            if self._closed:
                raise RequestError(grpc.StatusCode.UNAVAILABLE,
                                   f"version {self.version} of model {self.name!r} was unloaded; try again")
            self._users += 1
        try:
            if signature_name in self._batchers:
                deadline = None
                if context is not None and context.time_remaining() is not None:
                    deadline = time.monotonic() + context.time_remaining()
                future = self._batchers[signature_name].submit(inputs, deadline=deadline)
                if context is not None:
                    context.add_callback(future.cancel)
                return future.result()
            should_continue = None
            if context is not None:
                def should_continue():
                    try:
                        ensure_active(context, "its batch ran in slices")
                    except RequestError:
                        self.counters.add("abandoned")
                        raise
            return self._runners[signature_name](inputs, should_continue)
        except futures.CancelledError:
            raise RequestError(grpc.StatusCode.CANCELLED, "the request ended before its batch ran") from None
        except BatchingError as error:
            raise RequestError(getattr(grpc.StatusCode, error.code), str(error)) from None
        except tf.errors.InvalidArgumentError as error:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, graph_error_message(error.message or str(error))) from None
        except (MemoryError, tf.errors.ResourceExhaustedError) as error:
            raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"out of memory running the request: {type(error).__name__}: {error}") from None
        finally:
            with self._lock:
                self._users -= 1
                last = self._closed and self._users == 0
            if last:
                self._release()

    def close(self) -> None:
        """Stops the batchers and frees the session once no request runs on it."""
        for batcher in self._batchers.values():
            batcher.stop()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            idle = self._users == 0
        if idle:
            self._release()

    def _release(self) -> None:
        self._session.close()
        self._session = self._graph = None
        gc.collect()  # the graph sits in reference cycles: free its memory now, not at some later collection
