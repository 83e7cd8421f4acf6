"""A local stand-in for TF-Serving's gRPC PredictionService, in plain TensorFlow.

For trying the client and for tests, NOT a production server: use the
`tensorflow/serving:2.15.1` image for that (see serving/README.md). It implements `Predict` and
`GetModelMetadata` of `tensorflow.serving.PredictionService` with TF-Serving's semantics:

- the models and versions of `ModelRepository` (`tfrf.serving.repository`): each model's
  highest loadable version, polled every `poll_seconds`; a version that fails to load is logged
  once and never blocks another model or the start-up;
- requests are checked on their declared shapes against the signature and the server's
  `RequestLimits` (`tfrf.serving.limits`) before anything is decoded: INVALID_ARGUMENT naming
  the tensor and the expected shape, RESOURCE_EXHAUSTED over a limit; unknown models, versions
  and signatures get NOT_FOUND;
- at most `max_concurrent_requests` requests are decoded and run at once; a request whose RPC
  was cancelled or whose deadline passed is not started (and leaves a pending batch);
- optional batching with TF-Serving's `BatchingParameters` (`tfrf.serving.batching`);
- one server per port (no SO_REUSEPORT): a port in use is a `PortInUseError`;
- optional TLS (`tls_cert`, `tls_key`: PEM files).
"""
from __future__ import annotations

import errno
import socket
import threading
from concurrent import futures
from typing import Optional

import grpc
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

from tfrf.serving.batching import BatchingParameters
from tfrf.serving.limits import (MAX_MESSAGE_BYTES, Admission, RequestError, RequestLimits, decode_inputs,
                                 ensure_active)
from tfrf.serving.model import Counters, ServedModel
from tfrf.serving.repository import LOGGER, ModelRepository

DEFAULT_SIGNATURE = "serving_default"
__all__ = ["DEFAULT_SIGNATURE", "LocalModelServer", "ModelRepository", "PortInUseError", "PredictionServicer",
           "RequestError", "ServedModel"]


class PortInUseError(OSError):
    """The server's port is taken (by another `tfrf serve`, a model server or any program)."""


def ensure_port_free(host: str, port: int) -> None:
    """Raises PortInUseError when `host:port` cannot be bound (port 0 is always free)."""
    if port == 0:
        return
    try:
        addresses = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise ValueError(f"cannot resolve --host {host}: {error.strerror}") from None
    for family, kind, protocol, _, address in addresses:
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closing socket (TIME_WAIT) is fine
            try:
                probe.bind(address)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    raise PortInUseError(f"port {port} on {host} is in use by another program (another tfrf serve "
                                         f"or model server?); stop it or choose another --port") from None
                raise PortInUseError(f"cannot bind {host}:{port}: {error.strerror}") from None


def _resolve(repository: ModelRepository, model_spec):
    version = model_spec.version.value if model_spec.HasField("version") else None
    if model_spec.version_label:
        raise RequestError(grpc.StatusCode.UNIMPLEMENTED, "version labels are not supported by the local server")
    model = repository.get(model_spec.name, version)
    signature_name = model_spec.signature_name or DEFAULT_SIGNATURE
    return model, signature_name


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """`Predict` and `GetModelMetadata` over a `ModelRepository` (Classify, Regress and
    MultiInference answer UNIMPLEMENTED).

    `counters` (the repository's) counts `requests`, `started` (admitted and decoded),
    `completed`, `not_started` (the RPC ended while waiting for a slot), `abandoned` (ended
    between slices of its batch) and every refusal by status name (`invalid_argument`, ...).
    """

    def __init__(self, repository: ModelRepository, admission: Admission):
        self.repository = repository
        self.admission = admission
        self.counters: Counters = repository.counters

    def Predict(self, request, context):
        self.counters.add("requests")
        admitted = False
        try:
            model, signature_name = _resolve(self.repository, request.model_spec)
            if signature_name not in model.signatures:
                raise RequestError(
                    grpc.StatusCode.NOT_FOUND,
                    f"signature {signature_name!r} not found in model {model.name!r}; it has {sorted(model.signatures)}",
                )
            shapes = model.check_request(signature_name, request.inputs)
            outputs_available = sorted(model.signature_defs[signature_name].outputs)
            wanted = list(request.output_filter) or outputs_available
            unknown = sorted(set(wanted) - set(outputs_available))
            if unknown:
                raise RequestError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"output_filter names {unknown}, but signature {signature_name!r} outputs {outputs_available}",
                )
            self._admit(context)
            admitted = True
            self.counters.add("started")
            outputs = model.run(signature_name, decode_inputs(request.inputs, shapes), context)
            response = predict_pb2.PredictResponse()
            response.model_spec.name = model.name
            response.model_spec.version.value = model.version
            response.model_spec.signature_name = signature_name
            try:
                for name in wanted:
                    response.outputs[name].CopyFrom(tf.make_tensor_proto(outputs[name]))
            except MemoryError:
                raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, "out of memory writing the response") from None
            self.counters.add("completed")
            return response
        except RequestError as error:
            self.counters.add(error.code.name.lower())
            context.abort(error.code, str(error))
        finally:
            if admitted:
                self.admission.release()

    def _admit(self, context) -> None:
        """Takes an admission slot for a request whose RPC is still on; RequestError
        (DEADLINE_EXCEEDED, CANCELLED) and nothing held when it ended before or while waiting."""
        try:
            ensure_active(context, "waiting for a free slot")
            self.admission.acquire(context)
        except RequestError:
            self.counters.add("not_started")
            raise
        try:
            ensure_active(context, "waiting for a free slot")
        except RequestError:
            self.admission.release()
            self.counters.add("not_started")
            raise

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


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as stream:
            return stream.read()
    except OSError as error:
        raise FileNotFoundError(f"cannot read the {what} {path}: {error.strerror}") from None


class LocalModelServer:
    """Serves MODEL_DIR over gRPC on `host:port` (loopback by default) until stopped.

    Args:
        model_dir: see `ModelRepository`.
        host: the address to bind; 127.0.0.1 keeps it local.
        port: the TCP port; 0 picks a free one (see `port` after `start`).
        model_name: the model's name when `model_dir` is one model's base path.
        batching: TF-Serving batching parameters, or None to run each request alone.
        poll_seconds: how often to look for new versions; 0 turns polling off.
        max_workers: gRPC handler threads; default `limits.max_pending_requests`.
        limits: `RequestLimits` (sized to the machine and the model by default).
        tls_cert, tls_key: PEM certificate chain and private key: serve over TLS.

    Use as a context manager, or `start()` / `stop()`.
    """

    def __init__(self, model_dir: str, host: str = "127.0.0.1", port: int = 0, model_name: Optional[str] = None,
                 batching: Optional[BatchingParameters] = None, poll_seconds: float = 1.0,
                 max_workers: Optional[int] = None, limits: Optional[RequestLimits] = None,
                 tls_cert: Optional[str] = None, tls_key: Optional[str] = None):
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("TLS needs both --tls-cert and --tls-key (PEM files)")
        self.credentials = None
        if tls_cert is not None:
            self.credentials = grpc.ssl_server_credentials(
                [(_read(tls_key, "TLS private key"), _read(tls_cert, "TLS certificate"))])
        self.repository = ModelRepository(model_dir, model_name, batching, limits)
        self.limits = self.repository.limits
        self.host, self.port = host, port
        self.poll_seconds = poll_seconds
        self.max_workers = max_workers or self.limits.max_pending_requests
        self.servicer = PredictionServicer(self.repository, Admission(self.limits.max_concurrent_requests))
        self._server = None
        self._stop_polling = threading.Event()
        self._poller = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def counters(self):
        """Request and run counts (see `PredictionServicer`), a dict."""
        return self.repository.counters.snapshot()

    def _bind(self) -> grpc.Server:
        ensure_port_free(self.host, self.port)
        receive = min(MAX_MESSAGE_BYTES, self.limits.max_request_bytes + 1024 * 1024)
        options = [("grpc.so_reuseport", 0),  # a second server on this port must fail, not share it
                   ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_receive_message_length", receive)]
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="tfrf-serve"),
                             options=options, maximum_concurrent_rpcs=self.limits.max_pending_requests)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(self.servicer, server)
        address = f"{self.host}:{self.port}"
        try:
            if self.credentials is not None:
                bound = server.add_secure_port(address, self.credentials)
            else:
                bound = server.add_insecure_port(address)
        except RuntimeError:
            bound = 0
        if not bound:
            raise PortInUseError(f"cannot bind {address}: the port is in use or the address is not local")
        self.port = bound
        return server

    def start(self) -> "LocalModelServer":
        """Binds the port (failing fast when it is taken), loads the models and starts serving;
        `port` then holds the bound port."""
        server = self._bind()
        served = self.repository.refresh()
        if not served:
            server.stop(None)
            failures = self.repository.failure_report() or "no integer version directories"
            raise ValueError(f"no loadable model version in {sorted(self.repository.base_paths.values())}: {failures}")
        self._server = server
        self._server.start()
        if self.poll_seconds > 0:
            self._poller = threading.Thread(target=self._poll, name="tfrf-serve-poll", daemon=True)
            self._poller.start()
        return self

    def _poll(self) -> None:
        while not self._stop_polling.wait(self.poll_seconds):
            try:
                self.repository.refresh()
            except Exception as error:  # refresh logs per model; this is a last resort
                LOGGER.warning("looking for new versions failed: %s: %s", type(error).__name__, error)

    def wait(self) -> None:
        """Blocks until the server stops."""
        self._server.wait_for_termination()

    def stop(self, grace: Optional[float] = 1.0) -> None:
        """Stops serving (in-flight requests get `grace` seconds) and releases the models."""
        self._stop_polling.set()
        stopped = self._server.stop(grace) if self._server is not None else None
        self._server = None
        if self._poller is not None:
            self._poller.join(timeout=max(self.poll_seconds, 1.0) + 60)
        self.repository.close()  # fails requests still queued in a batcher (CANCELLED)
        if stopped is not None:
            stopped.wait()

    def __enter__(self) -> "LocalModelServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
