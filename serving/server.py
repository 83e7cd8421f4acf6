"""A local stand-in for TF-Serving's model server (gRPC and REST), in plain TensorFlow.

For trying the client and for tests, NOT a production server: use the
`tensorflow/serving:2.15.1` image for that (see serving/README.md). It implements `Predict` and
`GetModelMetadata` of `tensorflow.serving.PredictionService` and `GetModelStatus` of
`ModelService` over gRPC (`tfrf.serving.service`), and TF-Serving's REST API with Prometheus
metrics on a second port (`tfrf.serving.rest`), with TF-Serving's semantics:

- the models and versions of `ModelRepository` (`tfrf.serving.repository`): each model's
  highest loadable version, polled every `poll_seconds`; a version that fails to load is logged
  once and never blocks another model or the start-up;
- requests are checked on their declared shapes against the signature and the server's
  `RequestLimits` (`tfrf.serving.limits`) before anything is decoded: INVALID_ARGUMENT naming
  the tensor and the expected shape, RESOURCE_EXHAUSTED over a limit; unknown models, versions
  and signatures get NOT_FOUND;
- at most `max_concurrent_requests` requests are decoded and run at once; a request whose RPC
  was cancelled or whose deadline passed is not started (and leaves a pending batch); one client
  holds at most `peer_share` calls, and a request must arrive within `body_seconds`;
- optional batching with TF-Serving's `BatchingParameters` (`tfrf.serving.batching`);
- one server per port (no SO_REUSEPORT): a port in use is a `PortInUseError`;
- optional TLS (`tls_cert`, `tls_key`: PEM files) on both ports, and mutual TLS
  (`tls_client_ca`: clients must present a certificate signed by it).
"""
from __future__ import annotations

import errno
import ipaddress
import socket
import ssl
import threading
from concurrent import futures
from typing import Optional

import grpc

from tfrf.serving.batching import BatchingParameters
from tfrf.serving.limits import MAX_MESSAGE_BYTES, Admission, RequestError, RequestLimits
from tfrf.serving.metrics import Metrics
from tfrf.serving.model import ServedModel
from tfrf.serving.repository import LOGGER, ModelRepository
from tfrf.serving.rest import REST_TEXT_FACTOR, RestServer
from tfrf.serving.service import DEFAULT_BODY_SECONDS, DEFAULT_SIGNATURE, Service, grpc_handlers

__all__ = ["DEFAULT_SIGNATURE", "LocalModelServer", "ModelRepository", "PortInUseError", "RequestError",
           "ServedModel", "insecure_bind_warning"]
STARTUP_SETTLE_SECONDS = 0.25


class PortInUseError(OSError):
    """The server's port is taken (by another `tfrf serve`, a model server or any program)."""


def ensure_port_free(host: str, port: int, option: str = "--port") -> None:
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
                                         f"or model server?); stop it or choose another {option}") from None
                raise PortInUseError(f"cannot bind {host}:{port}: {error.strerror}") from None


def is_loopback(host: str) -> bool:
    """Whether `host` names only this machine (127.0.0.0/8, ::1, localhost)."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def insecure_bind_warning(host: str, tls: bool) -> Optional[str]:
    """The one-line warning for serving a non-loopback address without TLS, else None."""
    if tls or is_loopback(host):
        return None
    return (f"tfrf serve: WARNING: --host {host} is reachable from other machines and TLS is off: anyone who can "
            f"reach it can call the models; add --tls-cert/--tls-key (and --tls-client-ca)")


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as stream:
            return stream.read()
    except OSError as error:
        raise FileNotFoundError(f"cannot read the {what} {path}: {error.strerror}") from None


class LocalModelServer:
    """Serves MODEL_DIR over gRPC on `host:port` and REST on `host:rest_port` (loopback by
    default) until stopped.

    Args:
        model_dir: see `ModelRepository`.
        host: the address to bind; 127.0.0.1 keeps it local.
        port: the gRPC port; 0 picks a free one (see `port` after `start`).
        model_name: the model's name when `model_dir` is one model's base path.
        batching: TF-Serving batching parameters, or None to run each request alone.
        poll_seconds: how often to look for new versions; 0 turns polling off.
        max_workers: gRPC handler threads; default `limits.max_pending_requests`.
        limits: `RequestLimits` (sized to the machine and the model by default).
        tls_cert, tls_key: PEM certificate chain and private key: serve over TLS (both ports).
        tls_client_ca: PEM CA certificate(s): require client certificates signed by it (mutual
            TLS, both ports); needs `tls_cert`.
        rest_port: the REST port (TF-Serving's API and Prometheus metrics); 0 picks a free one,
            None serves no REST.
        peer_share: calls one client connection may hold at once (default: an eighth of
            `max_pending_requests`, at least 4).
        body_seconds: the time a call has to deliver its request (headers and body).

    Use as a context manager, or `start()` / `stop()`.
    """

    def __init__(self, model_dir: str, host: str = "127.0.0.1", port: int = 0, model_name: Optional[str] = None,
                 batching: Optional[BatchingParameters] = None, poll_seconds: float = 1.0,
                 max_workers: Optional[int] = None, limits: Optional[RequestLimits] = None,
                 tls_cert: Optional[str] = None, tls_key: Optional[str] = None, tls_client_ca: Optional[str] = None,
                 rest_port: Optional[int] = None, peer_share: Optional[int] = None,
                 body_seconds: float = DEFAULT_BODY_SECONDS):
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("TLS needs both --tls-cert and --tls-key (PEM files)")
        if tls_client_ca is not None and tls_cert is None:
            raise ValueError("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")
        self.credentials = self.ssl_context = None
        if tls_cert is not None:
            key, chain = _read(tls_key, "TLS private key"), _read(tls_cert, "TLS certificate")
            client_ca = _read(tls_client_ca, "TLS client CA certificate") if tls_client_ca else None
            self.credentials = grpc.ssl_server_credentials([(key, chain)], root_certificates=client_ca,
                                                           require_client_auth=client_ca is not None)
            self.ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ssl_context.load_cert_chain(tls_cert, tls_key)
            if client_ca is not None:
                self.ssl_context.verify_mode = ssl.CERT_REQUIRED
                self.ssl_context.load_verify_locations(cadata=client_ca.decode("ascii"))
        self.mutual_tls = tls_client_ca is not None
        self.repository = ModelRepository(model_dir, model_name, batching, limits)
        self.limits = self.repository.limits
        self.metrics = Metrics(self.repository.served)
        self.repository.on_load = self.metrics.load_attempt
        self.host, self.port, self.rest_port = host, port, rest_port
        self.poll_seconds = poll_seconds
        self.max_workers = max_workers or self.limits.max_pending_requests
        self.peer_share = peer_share or max(4, self.limits.max_pending_requests // 8)
        self.body_seconds = body_seconds
        self.service = Service(self.repository, Admission(self.limits.max_concurrent_requests), self.metrics)
        self.peers = None
        self._server = self._rest = None
        self._rest_thread = None
        self._stop_polling = threading.Event()
        self._poller = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def rest_address(self) -> str:
        return f"{self.host}:{self.rest_port}"

    @property
    def counters(self):
        """Request and run counts (see `tfrf.serving.service`), a dict."""
        return self.repository.counters.snapshot()

    def _bind(self) -> grpc.Server:
        ensure_port_free(self.host, self.port)
        if self.rest_port:
            ensure_port_free(self.host, self.rest_port, "--rest-port")
        receive = min(MAX_MESSAGE_BYTES, self.limits.max_request_bytes + 1024 * 1024)
        options = [("grpc.so_reuseport", 0),  # a second server on this port must fail, not share it
                   ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_receive_message_length", receive)]
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="tfrf-serve"),
                             options=options, maximum_concurrent_rpcs=self.limits.max_pending_requests)
        handlers, self.peers = grpc_handlers(self.service, self.peer_share, self.body_seconds)
        server.add_generic_rpc_handlers(handlers)
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
        if self.rest_port is not None:
            try:
                self._rest = RestServer(self.host, self.rest_port, self.service,
                                        max_body_bytes=REST_TEXT_FACTOR * self.limits.max_request_bytes + 1024 * 1024,
                                        body_seconds=self.body_seconds,
                                        max_connections=self.limits.max_pending_requests, ssl_context=self.ssl_context)
            except OSError as error:
                server.stop(None)
                raise PortInUseError(f"cannot bind {self.host}:{self.rest_port} (--rest-port): "
                                     f"{error.strerror}") from None
            self.rest_port = self._rest.port
        return server

    def start(self) -> "LocalModelServer":
        """Binds the ports (failing fast when one is taken), loads the models (waiting for
        versions whose files are still being written) and starts serving; `port` and
        `rest_port` then hold the bound ports."""
        server = self._bind()
        served = self.repository.refresh()
        for _ in range(int(60 / STARTUP_SETTLE_SECONDS)):
            if not self.repository.deferred:
                break
            self._stop_polling.wait(STARTUP_SETTLE_SECONDS)
            served = self.repository.refresh()
        if not served:
            server.stop(None)
            if self._rest is not None:
                self._rest.server_close()
            failures = self.repository.failure_report() or "no integer version directories"
            raise ValueError(f"no loadable model version in {sorted(self.repository.base_paths.values())}: {failures}")
        self._server = server
        self._server.start()
        if self._rest is not None:
            self._rest_thread = threading.Thread(target=self._rest.serve_forever, kwargs={"poll_interval": 0.2},
                                                 name="tfrf-serve-rest", daemon=True)
            self._rest_thread.start()
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
        """Drains and stops: both ports stop accepting at once, requests in flight get `grace`
        seconds to finish (None: as long as they take), then the models are released."""
        self._stop_polling.set()
        stopped = self._server.stop(grace) if self._server is not None else None
        self._server = None
        if self._rest is not None:
            self._rest.drain(grace)
            self._rest = None
        if stopped is not None:
            stopped.wait()
        if self._poller is not None:
            self._poller.join(timeout=max(self.poll_seconds, 1.0) + 60)
        self.repository.close()  # fails requests still queued in a batcher (CANCELLED)

    def __enter__(self) -> "LocalModelServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
