"""What the local server answers, for gRPC and REST alike: Predict, GetModelMetadata and
GetModelStatus over a `ModelRepository`, with admission, metrics and bounded names.

- `Service` holds the logic (RequestError out, nothing transport-specific);
- `grpc_handlers(service)` serves it as TF-Serving's `PredictionService` and `ModelService`.
  Every method is registered as stream-unary, so a call is taken by a handler before its
  message arrives: a client (one connection, `context.peer()`) holding more than
  `peer_share` calls at once gets RESOURCE_EXHAUSTED at once, and a call whose request
  message does not arrive within `body_seconds` is cancelled and its slot freed (the fault
  probe's 200 headers-only Predicts used to hold every slot for as long as they liked).

Names from a request (model, signature, input names) are cut to `NAME_LIMIT` characters in
every message (`cut`), and NOT_FOUND never lists the other models.
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Callable

import grpc
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, predict_pb2

from tfrf.serving.limits import Admission, RequestError, cut, decode_inputs, ensure_active
from tfrf.serving.metrics import Metrics

DEFAULT_SIGNATURE = "serving_default"
DEFAULT_BODY_SECONDS = 30.0
__all__ = ["DEFAULT_SIGNATURE", "PeerShare", "Service", "cut", "grpc_handlers"]


class PeerShare:
    """At most `share` calls held at once per peer (one client connection); thread-safe."""

    def __init__(self, share: int):
        self.share = share
        self._held = collections.Counter()
        self._lock = threading.Lock()
        self.refused = 0

    def acquire(self, peer: str) -> bool:
        with self._lock:
            if self._held[peer] >= self.share:
                self.refused += 1
                return False
            self._held[peer] += 1
            return True

    def held(self) -> int:
        """Calls held now, all peers together."""
        with self._lock:
            return sum(self._held.values())

    def release(self, peer: str) -> None:
        with self._lock:
            self._held[peer] -= 1
            if self._held[peer] <= 0:
                del self._held[peer]


class Service:
    """Predict, GetModelMetadata and GetModelStatus of a `ModelRepository`.

    Args:
        repository: the served models.
        admission: the running-request slots (`Admission`).
        metrics: where requests are counted (`tfrf.serving.metrics.Metrics`).
    """

    def __init__(self, repository, admission: Admission, metrics: Metrics):
        self.repository = repository
        self.admission = admission
        self.metrics = metrics
        self.counters = repository.counters

    def _resolve(self, model_spec):
        if model_spec.version_label:
            raise RequestError(grpc.StatusCode.UNIMPLEMENTED, "version labels are not supported by the local server")
        version = model_spec.version.value if model_spec.HasField("version") else None
        return self.repository.get(model_spec.name, version)

    def _timed(self, api: str, entrypoint: str, model_spec, work: Callable):
        """Runs `work(found)` (found: a list receiving the resolved model), counting the outcome."""
        start, found = time.monotonic(), []
        status = "OK"
        try:
            return work(found)
        except RequestError as error:
            status = error.code.name
            raise
        except Exception:
            status = "UNKNOWN"
            raise
        finally:
            model = found[0] if found else None
            signature_name = model_spec.signature_name or DEFAULT_SIGNATURE
            if model is None or signature_name not in model.signatures:
                signature_name = ""  # only served names become label values
            self.metrics.request(model.name if model else "", status, api, entrypoint, time.monotonic() - start,
                                 version=model.version if model else None, signature_name=signature_name)

    def predict(self, request, context, entrypoint: str = "GRPC"):
        """The PredictResponse, or RequestError; `context` has gRPC's `time_remaining`,
        `is_active` and `add_callback`."""
        return self._timed("predict", entrypoint, request.model_spec,
                           lambda found: self._predict(request, context, found))

    def _predict(self, request, context, found):
        self.counters.add("requests")
        admitted = False
        try:
            model = self._resolve(request.model_spec)
            found.append(model)
            signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
            if signature_name not in model.signatures:
                raise RequestError(grpc.StatusCode.NOT_FOUND,
                                   f"signature {cut(signature_name)!r} not found in model {model.name!r}; "
                                   f"it has {sorted(model.signatures)}")
            shapes = model.check_request(signature_name, request.inputs)
            outputs_available = sorted(model.signature_defs[signature_name].outputs)
            wanted = list(request.output_filter) or outputs_available
            unknown = sorted(set(wanted) - set(outputs_available))
            if unknown:
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"output_filter names {[cut(name) for name in unknown[:8]]}, but signature "
                                   f"{signature_name!r} outputs {outputs_available}")
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
            raise
        finally:
            if admitted:
                self.admission.release()

    def _admit(self, context) -> None:
        """Takes an admission slot for a request whose call is still on; RequestError
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

    def metadata(self, request, entrypoint: str = "GRPC"):
        def work(found):
            if list(request.metadata_field) != ["signature_def"]:
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"metadata_field must be exactly ['signature_def'], got "
                                   f"{[cut(field) for field in request.metadata_field[:8]]}")
            model = self._resolve(request.model_spec)
            found.append(model)
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            for key, signature_def in model.signature_defs.items():
                signature_map.signature_def[key].CopyFrom(signature_def)
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = model.name
            response.model_spec.version.value = model.version
            response.metadata["signature_def"].Pack(signature_map)
            return response

        return self._timed("get_model_metadata", entrypoint, request.model_spec, work)

    def model_status(self, request, entrypoint: str = "GRPC"):
        """GetModelStatusResponse: the served version, state AVAILABLE (the local server keeps
        no record of unloaded versions: any other version is NOT_FOUND)."""
        def work(found):
            model = self._resolve(request.model_spec)
            found.append(model)
            response = get_model_status_pb2.GetModelStatusResponse()
            status = response.model_version_status.add()
            status.version = model.version
            status.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
            status.status.error_code = 0
            return response

        return self._timed("get_model_status", entrypoint, request.model_spec, work)


def _guarded(service: Service, behavior: Callable, request_type, peers: PeerShare, body_seconds: float):
    """A stream-unary handler: peer share, body deadline, then `behavior(request, context)`."""

    def handle(request_iterator, context):
        peer = context.peer()
        if not peers.acquire(peer):
            service.counters.add("peer_share_refused")
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"this client already holds {peers.share} calls (the share of one client); "
                          f"wait for one to finish")
        try:
            expired = []

            def expire():
                expired.append(True)
                context.cancel()

            timer = threading.Timer(body_seconds, expire)
            timer.daemon = True
            timer.start()
            try:
                request = next(request_iterator, None)
            except grpc.RpcError:
                request = None
            finally:
                timer.cancel()
            if request is None:
                timed_out = bool(expired)
                service.counters.add("body_timeout" if timed_out else "no_message")
                context.abort(grpc.StatusCode.CANCELLED if timed_out else grpc.StatusCode.INVALID_ARGUMENT,
                              f"the request message did not arrive within {body_seconds:g} s" if timed_out
                              else "the call ended without a request message")
            try:
                return behavior(request, context)
            except RequestError as error:
                context.abort(error.code, str(error))
        finally:
            peers.release(peer)

    return grpc.stream_unary_rpc_method_handler(handle, request_deserializer=request_type.FromString,
                                                response_serializer=lambda message: message.SerializeToString())


def grpc_handlers(service: Service, peer_share: int, body_seconds: float = DEFAULT_BODY_SECONDS):
    """(generic handlers, PeerShare) serving `PredictionService` (Predict, GetModelMetadata;
    Classify, Regress and MultiInference answer UNIMPLEMENTED) and `ModelService`
    (GetModelStatus; HandleReloadConfigRequest answers UNIMPLEMENTED)."""
    peers = PeerShare(peer_share)
    prediction = {
        "Predict": _guarded(service, lambda request, context: service.predict(request, context),
                            predict_pb2.PredictRequest, peers, body_seconds),
        "GetModelMetadata": _guarded(service, lambda request, context: service.metadata(request),
                                     get_model_metadata_pb2.GetModelMetadataRequest, peers, body_seconds),
    }
    status = {
        "GetModelStatus": _guarded(service, lambda request, context: service.model_status(request),
                                   get_model_status_pb2.GetModelStatusRequest, peers, body_seconds),
    }
    handlers = [grpc.method_handlers_generic_handler("tensorflow.serving.PredictionService", prediction),
                grpc.method_handlers_generic_handler("tensorflow.serving.ModelService", status)]
    return handlers, peers

