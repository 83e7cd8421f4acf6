"""A local stand-in for TF-Serving's gRPC PredictionService, in plain TensorFlow.

For trying the client and for tests, NOT a production server: use the
`tensorflow/serving:2.15.1` image for that (see serving/README.md). It implements `Predict` and
`GetModelMetadata` of `tensorflow.serving.PredictionService` with TF-Serving's semantics:

- `MODEL_DIR` is either one model's base path (`MODEL_DIR/VERSION/`, the model named after the
  directory) or a directory of models (`MODEL_DIR/NAME/VERSION/`);
- the latest integer version of each model is served (TF-Serving's default version policy);
  directories are polled every `poll_seconds`, a newer version replaces the served one, and
  non-integer names (the exporter's temporary directories) are ignored;
- requests are checked against the signature (names, dtypes, shapes) and answered
  INVALID_ARGUMENT with a message naming the tensor and the expected shape; unknown models,
  versions and signatures get NOT_FOUND;
- optional batching with TF-Serving's `BatchingParameters` (`tfrf.serving.batching`).
"""
from __future__ import annotations

import os
import re
import threading
from concurrent import futures
from typing import Dict, Optional

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

from tfrf.serving.batching import Batcher, BatchingError, BatchingParameters

DEFAULT_SIGNATURE = "serving_default"
MAX_MESSAGE_BYTES = 512 * 1024 * 1024
_VERSION = re.compile(r"^\d+$")


class RequestError(Exception):
    """A request the server answers with gRPC status `code` (a `grpc.StatusCode`)."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


def _versions(base_path: str):
    if not os.path.isdir(base_path):
        return []
    return sorted(int(name) for name in os.listdir(base_path) if _VERSION.match(name)
                  and os.path.isfile(os.path.join(base_path, name, "saved_model.pb")))


def _describe(dtype: tf.DType, shape) -> str:
    dims = ", ".join("?" if dim is None else str(dim) for dim in tf.TensorShape(shape).as_list())
    return f"{dtype.name} [{dims}]"


class ServedModel:
    """One loaded version of a SavedModel: its signatures and their batchers.

    Args:
        name: the model name clients ask for.
        version: the integer version.
        path: the version directory.
        batching: batch concurrent requests per signature, or None.
    """

    def __init__(self, name: str, version: int, path: str, batching: Optional[BatchingParameters] = None):
        self.name, self.version, self.path = name, version, path
        self._loaded = tf.saved_model.load(path, tags=["serve"])
        self.signatures = dict(self._loaded.signatures)
        self.input_specs = {key: fn.structured_input_signature[1] for key, fn in self.signatures.items()}
        proto = saved_model_pb2.SavedModel()
        with open(os.path.join(path, "saved_model.pb"), "rb") as stream:
            proto.ParseFromString(stream.read())
        meta_graph = next(graph for graph in proto.meta_graphs if "serve" in graph.meta_info_def.tags)
        self.signature_defs = {
            key: value for key, value in meta_graph.signature_def.items() if key in self.signatures
        }
        self._batchers = {}
        if batching is not None:
            self._batchers = {key: Batcher(batching, self._runner(key)) for key in self.signatures}

    def _runner(self, signature_name: str):
        function = self.signatures[signature_name]

        def run(inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
            outputs = function(**{name: tf.constant(value) for name, value in inputs.items()})
            return {name: value.numpy() for name, value in outputs.items()}

        return run

    def check_inputs(self, signature_name: str, inputs: Dict[str, np.ndarray]) -> None:
        """Raises RequestError(INVALID_ARGUMENT) naming the tensor and its expected dtype and shape."""
        specs = self.input_specs[signature_name]
        expected = ", ".join(f"{name}: {_describe(spec.dtype, spec.shape)}" for name, spec in sorted(specs.items()))
        missing, extra = sorted(set(specs) - set(inputs)), sorted(set(inputs) - set(specs))
        if missing or extra:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"signature {signature_name!r} of model {self.name!r} takes inputs {{{expected}}}; "
                f"request lacks {missing} and has unexpected {extra}",
            )
        for name, spec in specs.items():
            value = inputs[name]
            if tf.as_dtype(value.dtype) != spec.dtype or not spec.shape.is_compatible_with(value.shape):
                raise RequestError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"input {name!r} of signature {signature_name!r} must be {_describe(spec.dtype, spec.shape)}, "
                    f"got {_describe(tf.as_dtype(value.dtype), value.shape)}",
                )

    def run(self, signature_name: str, inputs: Dict[str, np.ndarray], context=None) -> Dict[str, np.ndarray]:
        """Runs a checked request, through the batcher when batching is on; a request whose
        RPC ends (deadline, cancel) before its batch starts is withdrawn from the queue."""
        try:
            if signature_name in self._batchers:
                future = self._batchers[signature_name].submit(inputs)
                if context is not None:
                    context.add_callback(future.cancel)
                return future.result()
            return self._runner(signature_name)(inputs)
        except futures.CancelledError:
            raise RequestError(grpc.StatusCode.CANCELLED, "the request ended before its batch ran") from None
        except BatchingError as error:
            raise RequestError(getattr(grpc.StatusCode, error.code), str(error)) from None
        except tf.errors.InvalidArgumentError as error:
            message = error.message.split("\n")[-1] if error.message else str(error)
            assertion = re.search(r"assertion failed: \[(.+?)\] \[Condition", error.message or "")
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, assertion.group(1) if assertion else message) from None

    def close(self) -> None:
        for batcher in self._batchers.values():
            batcher.stop()


class ModelRepository:
    """The models under MODEL_DIR, each at its latest version, reloaded when a newer one lands.

    Args:
        model_dir: one model's base path (holding integer version directories) or a directory
            of such base paths.
        model_name: the name of the single model when `model_dir` is a base path (default:
            the directory's name).
        batching: batching parameters for every model, or None.
    """

    def __init__(self, model_dir: str, model_name: Optional[str] = None,
                 batching: Optional[BatchingParameters] = None):
        if not os.path.isdir(model_dir):
            raise FileNotFoundError(f"model directory {model_dir} does not exist")
        self.batching = batching
        self._lock = threading.Lock()
        self._models: Dict[str, ServedModel] = {}
        if any(_VERSION.match(name) for name in os.listdir(model_dir)):
            name = model_name or os.path.basename(os.path.normpath(model_dir))
            self.base_paths = {name: model_dir}
        else:
            self.base_paths = {
                name: os.path.join(model_dir, name)
                for name in sorted(os.listdir(model_dir))
                if os.path.isdir(os.path.join(model_dir, name)) and not name.startswith(".")
            }
        if not self.base_paths:
            raise ValueError(f"{model_dir} holds no model: expected MODEL_DIR/VERSION/ or MODEL_DIR/NAME/VERSION/")

    def refresh(self) -> Dict[str, int]:
        """Loads every model whose latest version is newer than the served one; returns the
        served version per model."""
        for name, base_path in self.base_paths.items():
            versions = _versions(base_path)
            current = self._models.get(name)
            if versions and (current is None or versions[-1] > current.version):
                model = ServedModel(name, versions[-1], os.path.join(base_path, str(versions[-1])), self.batching)
                with self._lock:
                    self._models[name] = model
                if current is not None:
                    current.close()
        with self._lock:
            return {name: model.version for name, model in self._models.items()}

    def get(self, name: str, version: Optional[int] = None) -> ServedModel:
        """The served model; RequestError(NOT_FOUND) for an unknown name or version."""
        with self._lock:
            model = self._models.get(name)
        if model is None:
            known = sorted(self.base_paths)
            raise RequestError(
                grpc.StatusCode.NOT_FOUND,
                f"Servable not found for request: Latest({name}); this server serves {known}",
            )
        if version is not None and version != model.version:
            raise RequestError(
                grpc.StatusCode.NOT_FOUND,
                f"Servable not found for request: Specific({name}, {version}); served version is {model.version}",
            )
        return model

    def close(self) -> None:
        with self._lock:
            models, self._models = list(self._models.values()), {}
        for model in models:
            model.close()


def _resolve(repository: ModelRepository, model_spec):
    version = model_spec.version.value if model_spec.HasField("version") else None
    if model_spec.version_label:
        raise RequestError(grpc.StatusCode.UNIMPLEMENTED, "version labels are not supported by the local server")
    model = repository.get(model_spec.name, version)
    signature_name = model_spec.signature_name or DEFAULT_SIGNATURE
    return model, signature_name


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """`Predict` and `GetModelMetadata` over a `ModelRepository` (Classify, Regress and
    MultiInference answer UNIMPLEMENTED)."""

    def __init__(self, repository: ModelRepository):
        self.repository = repository

    def Predict(self, request, context):
        try:
            model, signature_name = _resolve(self.repository, request.model_spec)
            if signature_name not in model.signatures:
                raise RequestError(
                    grpc.StatusCode.NOT_FOUND,
                    f"signature {signature_name!r} not found in model {model.name!r}; it has {sorted(model.signatures)}",
                )
            try:
                inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
            except (ValueError, TypeError) as error:
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"malformed input tensor: {error}") from None
            model.check_inputs(signature_name, inputs)
            outputs = model.run(signature_name, inputs, context)
            wanted = list(request.output_filter) or list(outputs)
            unknown = sorted(set(wanted) - set(outputs))
            if unknown:
                raise RequestError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"output_filter names {unknown}, but signature {signature_name!r} outputs {sorted(outputs)}",
                )
        except RequestError as error:
            context.abort(error.code, str(error))
        response = predict_pb2.PredictResponse()
        response.model_spec.name = model.name
        response.model_spec.version.value = model.version
        response.model_spec.signature_name = signature_name
        for name in wanted:
            response.outputs[name].CopyFrom(tf.make_tensor_proto(outputs[name]))
        return response

    def GetModelMetadata(self, request, context):
        try:
            if list(request.metadata_field) != ["signature_def"]:
                raise RequestError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"metadata_field must be exactly ['signature_def'], got {list(request.metadata_field)}",
                )
            model, _ = _resolve(self.repository, request.model_spec)
        except RequestError as error:
            context.abort(error.code, str(error))
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature_def in model.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(signature_def)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = model.name
        response.model_spec.version.value = model.version
        response.metadata["signature_def"].Pack(signature_map)
        return response


class LocalModelServer:
    """Serves MODEL_DIR over gRPC on `host:port` (loopback by default) until stopped.

    Args:
        model_dir: see `ModelRepository`.
        host: the address to bind; 127.0.0.1 keeps it local.
        port: the TCP port; 0 picks a free one (see `port` after `start`).
        model_name: the model's name when `model_dir` is one model's base path.
        batching: TF-Serving batching parameters, or None to run each request alone.
        poll_seconds: how often to look for new versions; 0 turns polling off.
        max_workers: gRPC handler threads (concurrent requests in flight).

    Use as a context manager, or `start()` / `stop()`.
    """

    def __init__(self, model_dir: str, host: str = "127.0.0.1", port: int = 0, model_name: Optional[str] = None,
                 batching: Optional[BatchingParameters] = None, poll_seconds: float = 1.0, max_workers: int = 32):
        self.repository = ModelRepository(model_dir, model_name, batching)
        self.host, self.port = host, port
        self.poll_seconds = poll_seconds
        self.max_workers = max_workers
        self._server = None
        self._stop_polling = threading.Event()
        self._poller = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> "LocalModelServer":
        """Loads the models and starts serving; `port` then holds the bound port."""
        served = self.repository.refresh()
        if not served:
            raise ValueError(f"no model version to serve in {sorted(self.repository.base_paths.values())}")
        options = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=self.max_workers), options=options)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(self.repository), self._server
        )
        bound = self._server.add_insecure_port(f"{self.host}:{self.port}")
        if not bound:
            raise OSError(f"cannot bind {self.host}:{self.port}")
        self.port = bound
        self._server.start()
        if self.poll_seconds > 0:
            self._poller = threading.Thread(target=self._poll, name="tfrf-serve-poll", daemon=True)
            self._poller.start()
        return self

    def _poll(self) -> None:
        while not self._stop_polling.wait(self.poll_seconds):
            try:
                self.repository.refresh()
            except Exception as error:  # a bad new version must not take the server down
                print(f"tfrf serve: could not load a new version: {type(error).__name__}: {error}")

    def wait(self) -> None:
        """Blocks until the server stops."""
        self._server.wait_for_termination()

    def stop(self, grace: Optional[float] = 1.0) -> None:
        """Stops serving (in-flight requests get `grace` seconds) and releases the models."""
        self._stop_polling.set()
        stopped = self._server.stop(grace) if self._server is not None else None
        self._server = None
        if self._poller is not None:
            self._poller.join(timeout=max(self.poll_seconds, 1.0) + 5)
        self.repository.close()  # fails requests still queued in a batcher (CANCELLED)
        if stopped is not None:
            stopped.wait()

    def __enter__(self) -> "LocalModelServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
