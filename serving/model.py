"""One loaded version of a SavedModel as the local server runs it.

`ServedModel` loads `MODEL_DIR/NAME/VERSION/` (tag `serve`), keeps its signatures and their
SignatureDefs (for GetModelMetadata), checks requests against them under the server's
`RequestLimits` and runs them, directly or through a `Batcher`. A request runs the model on
slices of its batch (about `RequestLimits.run_bytes` of inputs each), so its working memory does
not grow with its batch size and a request whose RPC ends is abandoned between slices.
"""
from __future__ import annotations

import collections
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
        self._loaded = tf.saved_model.load(path, tags=["serve"])
        self.signatures = dict(self._loaded.signatures)
        if not self.signatures:
            raise ValueError(f"{path} has no signatures to serve")
        self.input_specs = {key: fn.structured_input_signature[1] for key, fn in self.signatures.items()}
        meta_graph = next(graph for graph in proto.meta_graphs if "serve" in graph.meta_info_def.tags)
        self.signature_defs = {
            key: value for key, value in meta_graph.signature_def.items() if key in self.signatures
        }
        self.max_batch_sizes = {key: self.limits.batch_limit(specs, batching) for key, specs in self.input_specs.items()}
        self._runners = {key: self._runner(key) for key in self.signatures}
        self._batchers = {}
        if batching is not None:
            self._batchers = {key: Batcher(batching, self._runners[key]) for key in self.signatures}

    def _runner(self, signature_name: str) -> Callable:
        function = self.signatures[signature_name]
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
                outputs = function(**{name: tf.constant(value) for name, value in chunk.items()})
                parts.append({name: value.numpy() for name, value in outputs.items()})
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

    def close(self) -> None:
        for batcher in self._batchers.values():
            batcher.stop()
