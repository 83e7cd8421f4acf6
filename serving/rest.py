"""TF-Serving's REST API on the local server (the stdlib's `http.server.ThreadingHTTPServer`).

    POST /v1/models/NAME[/versions/N]:predict   {"signature_name": ..., "instances": [...]} or {"inputs": ...}
    GET  /v1/models/NAME[/versions/N]            model status ({"model_version_status": [...]})
    GET  /v1/models/NAME[/versions/N]/metadata   signatures
    GET  /monitoring/prometheus/metrics          Prometheus metrics (`tfrf.serving.metrics`)

As TF-Serving defines them (https://www.tensorflow.org/tfx/serving/api_rest): the row format
(`instances`, a list of examples, each an object of named inputs or, for a one-input signature,
a bare value) answers `{"predictions": [...]}`; the columnar format (`inputs`) answers
`{"outputs": ...}`; a string value may be `{"b64": "..."}` (string outputs whose name ends in
`_bytes` come back so); errors are `{"error": "..."}` with TF-Serving's HTTP code for the gRPC
status (INVALID_ARGUMENT 400, NOT_FOUND 404, RESOURCE_EXHAUSTED 429, UNIMPLEMENTED 501, ...).

The request limits are those of gRPC: a body needs a Content-Length of at most
`max_body_bytes` (`REST_TEXT_FACTOR` × `--max-request-bytes`, JSON text being longer than the
binary tensors), refused before a byte of it is read; every connection must deliver its
headers and body within `body_seconds` or it is dropped and its thread freed; at most
`max_connections` connections are served at once, at most half of them from one client
address (more are closed at once). The decoded inputs
then pass the same checks as a gRPC request (`Service.predict`).
"""
from __future__ import annotations

import collections
import json
import re
import select
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

import grpc
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

from tfrf.serving.limits import RequestError, cut
from tfrf.serving.repository import LOGGER
from tfrf.serving.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from tfrf.serving.rest_json import HTTP_CODES, invalid, predict_body, predict_request
from tfrf.serving.service import Service

REST_TEXT_FACTOR = 4
METRICS_PATH = "/monitoring/prometheus/metrics"
_PATH = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?(/metadata|:([a-z]+))?$")
def _model_spec(spec, name: str, version: Optional[int]) -> None:
    spec.name = name
    if version is not None:
        spec.version.value = version


class _HttpCall:
    """The gRPC-context methods `Service.predict` uses, for one HTTP request."""

    def __init__(self, connection):
        self._connection = connection
        self._callbacks = []

    def time_remaining(self):
        return None

    def is_active(self) -> bool:
        """False once the client closed its connection (plain sockets; TLS ones count as active)."""
        sock = self._connection
        if not isinstance(sock, socket.socket) or hasattr(sock, "version"):
            return True
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            return not readable or sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
        except (OSError, ValueError):
            return False

    def add_callback(self, callback) -> bool:
        self._callbacks.append(callback)
        return True

    def done(self) -> None:
        for callback in self._callbacks:
            callback()


class _Handler(BaseHTTPRequestHandler):
    server: "RestServer"
    protocol_version = "HTTP/1.0"  # one request per connection: nothing idles between requests
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        pass

    def send_error(self, code, message=None, explain=None):
        """The stdlib's own refusals (a malformed request line, an unsupported method, a
        request line over 64 KiB) as TF-Serving-style JSON, the request's text cut."""
        self.close_connection = True
        text = cut(message or self.responses.get(code, ("error",))[0], 200)
        try:
            self._send(code, json.dumps({"error": text}).encode("utf-8"))
        except OSError:
            pass

    def _send(self, code: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, value) -> None:
        self._send(code, json.dumps(value).encode("utf-8"))

    def _error(self, error: RequestError) -> None:
        self._json(HTTP_CODES.get(error.code.name, 500), {"error": str(error)})

    def _route(self, method: str):
        path = urllib.parse.urlsplit(self.path).path
        match = _PATH.match(path)
        if match is None:
            raise RequestError(grpc.StatusCode.NOT_FOUND, f"Malformed request: {method} {cut(path, 200)}")
        name, version, label, suffix, verb = match.groups()
        name = urllib.parse.unquote(name)
        if label is not None:
            raise RequestError(grpc.StatusCode.UNIMPLEMENTED, "version labels are not supported by the local server")
        if (method == "POST") != bool(verb) or (verb and verb != "predict"):
            if verb in ("classify", "regress"):
                raise RequestError(grpc.StatusCode.UNIMPLEMENTED, f"{verb} is not served by the local server")
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"Malformed request: {method} {cut(path, 200)}")
        return name, None if version is None else int(version), suffix

    def do_GET(self):
        self.server.body_arrived(self.connection)
        if urllib.parse.urlsplit(self.path).path == METRICS_PATH:
            self._send(200, self.server.service.metrics.exposition().encode("utf-8"), METRICS_CONTENT_TYPE)
            return
        try:
            name, version, suffix = self._route("GET")
            if suffix == "/metadata":
                request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
                _model_spec(request.model_spec, name, version)
                response = self.server.service.metadata(request, "REST")
                signatures = get_model_metadata_pb2.SignatureDefMap()
                response.metadata["signature_def"].Unpack(signatures)
                self._json(200, {"model_spec": {"name": response.model_spec.name, "signature_name": "",
                                                "version": str(response.model_spec.version.value)},
                                 "metadata": {"signature_def": json_format.MessageToDict(
                                     signatures, preserving_proto_field_name=True)}})
                return
            request = get_model_status_pb2.GetModelStatusRequest()
            _model_spec(request.model_spec, name, version)
            response = self.server.service.model_status(request, "REST")
            self._json(200, json_format.MessageToDict(response, preserving_proto_field_name=True,
                                                      including_default_value_fields=True))
        except RequestError as error:
            self._error(error)

    def do_POST(self):
        start = time.monotonic()
        service = self.server.service
        try:
            name, version, _ = self._route("POST")
            body = self._read_body()
            try:
                parsed = json.loads(body)
            except (ValueError, RecursionError) as error:
                raise invalid(f"the request body is not JSON: {cut(str(error), 200)}") from None
            del body
            model = service.repository.get(name, version)
            request = predict_request(parsed, model, name, version)
            row_format = "instances" in parsed
            del parsed
        except RequestError as error:
            service.metrics.request("", error.code.name, "predict", "REST", time.monotonic() - start)
            self._error(error)
            return
        call = _HttpCall(self.connection)
        try:
            response = service.predict(request, call, "REST")
            self._json(200, predict_body(response, row_format))
        except RequestError as error:
            self._error(error)
        finally:
            call.done()

    def _read_body(self) -> bytes:
        """The body, after checking its Content-Length against the limit (nothing read before)."""
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") or length is None or not length.strip().isdigit():
            raise invalid("a request body needs a Content-Length (chunked bodies are not accepted)")
        length, limit = int(length), self.server.max_body_bytes
        if length > limit:
            raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"the request body of {length} bytes is above this server's limit of {limit} bytes "
                               f"({REST_TEXT_FACTOR} x --max-request-bytes)")
        parts, received = [], 0
        while received < length:
            chunk = self.rfile.read(min(1 << 20, length - received))
            if not chunk:
                raise invalid(f"the connection closed after {received} of {length} body bytes")
            parts.append(chunk)
            received += len(chunk)
        self.server.body_arrived(self.connection)
        return b"".join(parts)


class RestServer(ThreadingHTTPServer):
    """The REST endpoint of a `Service` on `host:port` (0: a free port, see `port`).

    Args:
        service: what answers.
        max_body_bytes: the largest request body.
        body_seconds: the time a connection has to deliver its headers and body.
        max_connections: connections served at once.
        ssl_context: a server-side `ssl.SSLContext` (TLS, optionally requiring client certificates).
    """

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, host: str, port: int, service: Service, max_body_bytes: int, body_seconds: float,
                 max_connections: int, ssl_context=None):
        self.address_family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
        self.service, self.max_body_bytes = service, max_body_bytes
        self.body_seconds, self.max_connections = body_seconds, max_connections
        self.ssl_context = ssl_context
        self.request_queue_size = max(64, max_connections)
        self._active = 0
        self._hosts = collections.Counter()  # connections per client address
        self.host_share = max(1, max_connections // 2)
        self._idle = threading.Condition()
        self._local = threading.local()
        self.counters = service.counters
        super().__init__((host.strip("[]"), port), _Handler)
        self.port = self.server_address[1]

    def process_request(self, request, client_address):
        host = client_address[0]
        with self._idle:
            if self._active >= self.max_connections or self._hosts[host] >= self.host_share:
                self.counters.add("rest_refused")
                self.shutdown_request(request)
                return
            self._active += 1
            self._hosts[host] += 1
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._done(host)
            raise

    def _done(self, host: str) -> None:
        with self._idle:
            self._active -= 1
            self._hosts[host] -= 1
            if self._hosts[host] <= 0:
                del self._hosts[host]
            self._idle.notify_all()

    def finish_request(self, request, client_address):
        """In the connection's thread: a deadline for headers and body, TLS, then the handler."""
        holder = [request]  # the socket to shut down: the TLS one once wrapped
        timer = threading.Timer(self.body_seconds, self._drop, args=(holder,))
        timer.daemon = True
        self._local.timer = timer
        timer.start()
        connection = request
        try:
            request.settimeout(None)  # while the request arrives, only the deadline's timer applies
            if self.ssl_context is not None:
                connection = holder[0] = self.ssl_context.wrap_socket(request, server_side=True)
            self.RequestHandlerClass(connection, client_address, self)
        except OSError:  # a dropped connection, a failed handshake (no or untrusted client certificate)
            self.counters.add("rest_dropped")
        finally:
            timer.cancel()
            if connection is not request:
                connection.close()

    def _drop(self, holder) -> None:
        self.counters.add("rest_body_timeout")
        try:
            holder[0].shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def body_arrived(self, connection) -> None:
        """Called by the handler once the request is read: the connection's deadline is off, and
        writing the answer to a client that does not read times out after `body_seconds`."""
        timer = getattr(self._local, "timer", None)
        if timer is not None:
            timer.cancel()
        connection.settimeout(self.body_seconds)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._done(client_address[0])

    def handle_error(self, request, client_address):
        self.counters.add("rest_errors")
        LOGGER.warning("REST request from %s failed", client_address[0], exc_info=True)

    def drain(self, grace: Optional[float]) -> None:
        """Stops accepting, lets the connections in flight finish within `grace` seconds, closes."""
        self.shutdown()
        deadline = None if grace is None else time.monotonic() + grace
        with self._idle:
            while self._active and (deadline is None or time.monotonic() < deadline):
                self._idle.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        self.server_close()
