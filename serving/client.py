"""A gRPC client of TF-Serving's PredictionService for the exported generator.

    with Client("localhost:8500", "face", timeout=10.0) as client:
        images = client.generate(source_images, source_poses, target_pose)

It wraps the official `tensorflow_serving.apis` stub, checks shapes before sending, honours
the timeout on every call and turns transport errors into the exceptions below. It talks to
`tensorflow_model_server` and to the local stand-in (`tfrf serve`) alike, in plain text or
over TLS (`tls_ca`: the PEM certificate(s) to trust, e.g. the server's self-signed one;
`tls_cert`/`tls_key`: a client certificate for servers that require one, mutual TLS).

A target `http://HOST:8501` or `https://HOST:8501` talks TF-Serving's REST API instead
(`predict`, `generate` and `metadata`; JSON in the columnar format), with the same checks,
timeouts and exceptions.
"""
from __future__ import annotations

import base64
import json
import socket
import ssl
import urllib.error
import urllib.request
from typing import Dict, Optional, Sequence, Union

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

from tfrf.closeable import Closeable

DEFAULT_SIGNATURE = "serving_default"
MAX_MESSAGE_BYTES = 512 * 1024 * 1024


class ServingError(RuntimeError):
    """A failed call to the model server; `code` is the gRPC status code when there is one."""

    def __init__(self, message: str, code: Optional[grpc.StatusCode] = None):
        super().__init__(message)
        self.code = code


class ServerUnavailableError(ServingError):
    """Nothing answers at the target (wrong address, server down)."""


class ServingTimeoutError(ServingError, TimeoutError):
    """The server did not answer within the timeout."""


class InvalidRequestError(ServingError, ValueError):
    """The server (or the client's own check) rejected the request's tensors."""


class ModelNotFoundError(ServingError, LookupError):
    """The server does not serve that model, version or signature."""


class ServerBusyError(ServingError):
    """The server refused the request for its size or load (RESOURCE_EXHAUSTED): a batch, K or
    byte count above its limits, or too many requests at once."""


_ERRORS = {
    grpc.StatusCode.UNAVAILABLE: ServerUnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: ServingTimeoutError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequestError,
    grpc.StatusCode.NOT_FOUND: ModelNotFoundError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ServerBusyError,
}


# TF-Serving's HTTP status codes back to the gRPC status they stand for.
_HTTP_STATUS = {400: grpc.StatusCode.INVALID_ARGUMENT, 404: grpc.StatusCode.NOT_FOUND,
                429: grpc.StatusCode.RESOURCE_EXHAUSTED, 499: grpc.StatusCode.CANCELLED,
                501: grpc.StatusCode.UNIMPLEMENTED, 503: grpc.StatusCode.UNAVAILABLE,
                504: grpc.StatusCode.DEADLINE_EXCEEDED}


def _pem(certificates: Union[str, bytes], what: str = "TLS CA certificate") -> bytes:
    if isinstance(certificates, bytes):
        return certificates
    try:
        with open(certificates, "rb") as stream:
            return stream.read()
    except OSError as error:
        raise FileNotFoundError(f"cannot read the {what} file {certificates}: {error.strerror}") from None


def _shape_text(shape) -> str:
    return "[" + ", ".join("?" if dim is None or dim < 0 else str(dim) for dim in shape) + "]"


class Client(Closeable):
    """Calls one model on a TF-Serving (or `tfrf serve`) gRPC endpoint.

    Args:
        target: `host:port` of the gRPC endpoint (TF-Serving's default port is 8500), or
            `http://host:port` / `https://host:port` of the REST endpoint (8501).
        model_name: the served model's name (`MODEL_DIR/NAME`).
        timeout: seconds allowed for each call, connection included.
        version: a specific model version; None for the latest the server serves.
        signature_name: the signature `generate` calls.
        tls_ca: connect over TLS trusting this PEM file (or PEM bytes) of root certificates;
            None: plain text (gRPC) or the system's roots (an https:// target). The target's
            host must match the certificate's names.
        tls_cert, tls_key: PEM files of a client certificate and its key (mutual TLS).
    """

    def __init__(self, target: str, model_name: str, timeout: float = 10.0, version: Optional[int] = None,
                 signature_name: str = DEFAULT_SIGNATURE, tls_ca: Optional[Union[str, bytes]] = None,
                 tls_cert: Optional[str] = None, tls_key: Optional[str] = None):
        if timeout <= 0:
            raise ValueError(f"timeout must be positive seconds, got {timeout}")
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("a client certificate needs both tls_cert and tls_key")
        self.target, self.model_name, self.timeout = target, model_name, float(timeout)
        self.version, self.signature_name = version, signature_name
        self._signatures: Optional[Dict[str, Dict[str, Dict[str, tuple]]]] = None
        self._channel = self._stub = self._ssl = None
        self.rest = target.startswith(("http://", "https://"))
        if self.rest:
            self._base = target.rstrip("/") + f"/v1/models/{model_name}" + (
                f"/versions/{int(version)}" if version is not None else "")
            if target.startswith("https://"):
                self._ssl = ssl.create_default_context(cadata=_pem(tls_ca).decode("ascii") if tls_ca else None)
                if tls_cert is not None:
                    self._ssl.load_cert_chain(tls_cert, tls_key)
            return
        options = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
        if tls_ca is None and tls_cert is None:
            self._channel = grpc.insecure_channel(target, options=options)
        else:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_pem(tls_ca) if tls_ca else None,
                private_key=_pem(tls_key, "TLS client key") if tls_key else None,
                certificate_chain=_pem(tls_cert, "TLS client certificate") if tls_cert else None)
            self._channel = grpc.secure_channel(target, credentials, options=options)
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

    def _model_spec(self, spec, signature_name: Optional[str] = None) -> None:
        spec.name = self.model_name
        if self.version is not None:
            spec.version.value = int(self.version)
        if signature_name is not None:
            spec.signature_name = signature_name

    def _call(self, method, request, what: str):
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as error:
            code = error.code() if hasattr(error, "code") else None
            details = error.details() if hasattr(error, "details") else str(error)
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                message = f"{what} on {self.target} got no answer within the timeout of {self.timeout:g} s"
            elif code == grpc.StatusCode.UNAVAILABLE:
                message = f"no model server answers at {self.target} ({what}): {details}"
            else:
                message = f"{what} on {self.target} failed with {code.name if code else 'an error'}: {details}"
            raise _ERRORS.get(code, ServingError)(message, code) from None

    def _http(self, suffix: str, body: Optional[dict], what: str) -> dict:
        """One REST call (GET without a body, POST with one): the JSON answer, or the
        exception for its HTTP status."""
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(self._base + suffix, data=data,
                                         headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._ssl) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            try:
                details = json.loads(error.read()).get("error", "")
            except ValueError:
                details = error.reason
            code = _HTTP_STATUS.get(error.code)
            message = f"{what} on {self.target} failed with HTTP {error.code}: {details}"
            raise _ERRORS.get(code, ServingError)(message, code) from None
        except (socket.timeout, TimeoutError):
            raise ServingTimeoutError(f"{what} on {self.target} got no answer within the timeout of "
                                      f"{self.timeout:g} s", grpc.StatusCode.DEADLINE_EXCEEDED) from None
        except (urllib.error.URLError, ConnectionError) as error:
            reason = getattr(error, "reason", error)
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise ServingTimeoutError(f"{what} on {self.target} got no answer within the timeout of "
                                          f"{self.timeout:g} s", grpc.StatusCode.DEADLINE_EXCEEDED) from None
            raise ServerUnavailableError(f"no model server answers at {self.target} ({what}): {reason}",
                                         grpc.StatusCode.UNAVAILABLE) from None

    def metadata(self) -> Dict[str, Dict[str, Dict[str, tuple]]]:
        """The model's signatures: `{signature: {"inputs"|"outputs": {name: (dtype, shape)}}}`
        with dtype a numpy dtype name and shape a tuple (None for an unknown dimension)."""
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        if self.rest:
            answer = self._http("/metadata", None, f"GET metadata of {self.model_name}")
            json_format.ParseDict(answer["metadata"]["signature_def"], signature_map, ignore_unknown_fields=True)
        else:
            request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
            self._model_spec(request.model_spec)
            response = self._call(self._stub.GetModelMetadata, request, f"GetModelMetadata({self.model_name})")
            response.metadata["signature_def"].Unpack(signature_map)

        def tensors(infos):
            return {
                name: (
                    tf.as_dtype(info.dtype).name,
                    tuple(None if dim.size < 0 else dim.size for dim in info.tensor_shape.dim),
                )
                for name, info in infos.items()
            }

        signatures = {
            key: {"inputs": tensors(value.inputs), "outputs": tensors(value.outputs)}
            for key, value in signature_map.signature_def.items()
        }
        self._signatures = signatures
        return signatures

    def predict(self, inputs: Dict[str, np.ndarray], signature_name: Optional[str] = None,
                output_keys: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
        """One Predict call: named input arrays -> named output arrays (over REST, string
        inputs go as {"b64": ...} and outputs take the signature's dtypes)."""
        signature_name = signature_name or self.signature_name
        if self.rest:
            return self._rest_predict(inputs, signature_name, output_keys)
        request = predict_pb2.PredictRequest()
        self._model_spec(request.model_spec, signature_name)
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(np.ascontiguousarray(value)))
        request.output_filter.extend(output_keys or [])
        response = self._call(self._stub.Predict, request, f"Predict({self.model_name}/{signature_name})")
        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}

    def _rest_predict(self, inputs, signature_name, output_keys) -> Dict[str, np.ndarray]:
        def value(array):
            array = np.asarray(array)
            if array.dtype.kind in "SO":
                return np.vectorize(lambda item: {"b64": base64.b64encode(item).decode("ascii")},
                                    otypes=[object])(array).tolist()
            return array.tolist()

        body = {"signature_name": signature_name, "inputs": {name: value(array) for name, array in inputs.items()}}
        outputs = self._http(":predict", body, f"Predict({self.model_name}/{signature_name})")["outputs"]
        if self._signatures is None:
            self.metadata()
        expected = self._signatures.get(signature_name, {}).get("outputs", {})
        if not isinstance(outputs, dict) or set(outputs) - set(expected):
            outputs = {next(iter(expected)) if len(expected) == 1 else "output": outputs}
        wanted = list(output_keys or outputs)
        return {name: np.asarray(outputs[name], dtype=expected[name][0] if name in expected and
                                 expected[name][0] != "string" else None) for name in wanted}

    def check_generator_inputs(self, source_images, source_poses, target_pose) -> Dict[str, np.ndarray]:
        """float32 copies of the three inputs, after checking their shapes against each other
        and against the served signature (fetched once); raises InvalidRequestError."""
        arrays = {
            "source_images": np.asarray(source_images, dtype=np.float32),
            "source_poses": np.asarray(source_poses, dtype=np.float32),
            "target_pose": np.asarray(target_pose, dtype=np.float32),
        }
        images, poses, target = (arrays[key].shape for key in ("source_images", "source_poses", "target_pose"))
        problems = []
        if len(images) != 5 or images[-1] != 3:
            problems.append(f"source_images must be [B, K, H, W, 3], got {list(images)}")
        elif images[1] < 1:
            problems.append(f"source_images must hold K >= 1 sources, got {list(images)}")
        if len(poses) != 5 or (len(images) == 5 and poses[:4] != images[:4]):
            problems.append(f"source_poses must be [B, K, H, W, Cp] with B, K, H, W of source_images "
                            f"{list(images)}, got {list(poses)}")
        if len(target) != 4 or (len(images) == 5 and (target[0],) + target[1:3] != (images[0],) + images[2:4]):
            problems.append(f"target_pose must be [B, H, W, Cp] with B, H, W of source_images "
                            f"{list(images)}, got {list(target)}")
        if not problems and len(poses) == 5 and poses[-1] != target[-1]:
            problems.append(f"source_poses {list(poses)} and target_pose {list(target)} differ in Cp")
        if problems:
            raise InvalidRequestError("; ".join(problems))
        if self._signatures is None:
            self.metadata()
        signature = self._signatures.get(self.signature_name)
        if signature is None:
            raise ModelNotFoundError(
                f"model {self.model_name!r} has no signature {self.signature_name!r}; it has {sorted(self._signatures)}"
            )
        for name, value in arrays.items():
            dtype, expected = signature["inputs"].get(name, (None, None))
            if expected is None:
                raise InvalidRequestError(f"signature {self.signature_name!r} takes no input {name!r}")
            if len(expected) != value.ndim or any(e is not None and e != v for e, v in zip(expected, value.shape)):
                raise InvalidRequestError(
                    f"{name} must be {dtype} {_shape_text(expected)} for model {self.model_name!r}, "
                    f"got {_shape_text(value.shape)}"
                )
        return arrays

    def generate(self, source_images, source_poses, target_pose) -> np.ndarray:
        """Target images float32 `[B, H, W, 3]` in [-1, 1].

        Args:
            source_images: `[B, K, H, W, 3]` in [-1, 1].
            source_poses: `[B, K, H, W, Cp]` pose maps.
            target_pose: `[B, H, W, Cp]`.
        """
        inputs = self.check_generator_inputs(source_images, source_poses, target_pose)
        return self.predict(inputs, output_keys=["image"])["image"]

    def photos(self, source_images, source_poses, target_pose) -> Dict[str, np.ndarray]:
        """The `photos` signature: photos and raw poses in, `{"image": uint8 [B, H, W, 3],
        "coverage": float32 [B, H, W, K + 1]}` out (see serving/README.md).

        Args:
            source_images: `[B][K]` encoded JPEG or PNG photos: bytes, or paths of files.
            source_poses: float32 `[B, K, ...]`, each photo's raw pose in its own pixels.
            target_pose: float32 `[B, ...]`, in output pixels.
        """
        rows = [[item if isinstance(item, bytes) else _pem(item, "photo") for item in row] for row in source_images]
        if not rows or len({len(row) for row in rows}) != 1 or not rows[0]:
            raise InvalidRequestError("source_images must be [B][K] photos with the same K >= 1 in every row")
        photos = np.empty((len(rows), len(rows[0])), dtype=object)
        photos[:] = rows
        inputs = {"source_images": photos, "source_poses": np.asarray(source_poses, np.float32),
                  "target_pose": np.asarray(target_pose, np.float32)}
        return self.predict(inputs, signature_name="photos")

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
