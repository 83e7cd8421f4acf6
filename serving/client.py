"""A gRPC client of TF-Serving's PredictionService for the exported generator.

    with Client("localhost:8500", "face", timeout=10.0) as client:
        images = client.generate(source_images, source_poses, target_pose)

It wraps the official `tensorflow_serving.apis` stub, checks shapes before sending, honours
the timeout on every call and turns transport errors into the exceptions below. It talks to
`tensorflow_model_server` and to the local stand-in (`tfrf serve`) alike, in plain text or
over TLS (`tls_ca`: the PEM certificate(s) to trust, e.g. the server's self-signed one).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Union

import grpc
import numpy as np
import tensorflow as tf
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


def _pem(certificates: Union[str, bytes]) -> bytes:
    if isinstance(certificates, bytes):
        return certificates
    try:
        with open(certificates, "rb") as stream:
            return stream.read()
    except OSError as error:
        raise FileNotFoundError(f"cannot read the TLS CA certificate file {certificates}: {error.strerror}") from None


def _shape_text(shape) -> str:
    return "[" + ", ".join("?" if dim is None or dim < 0 else str(dim) for dim in shape) + "]"


class Client(Closeable):
    """Calls one model on a TF-Serving (or `tfrf serve`) gRPC endpoint.

    Args:
        target: `host:port` of the gRPC endpoint (TF-Serving's default port is 8500).
        model_name: the served model's name (`MODEL_DIR/NAME`).
        timeout: seconds allowed for each call, connection included.
        version: a specific model version; None for the latest the server serves.
        signature_name: the signature `generate` calls.
        tls_ca: connect over TLS trusting this PEM file (or PEM bytes) of root certificates;
            None: plain text. The target's host must match the certificate's names.
    """

    def __init__(self, target: str, model_name: str, timeout: float = 10.0, version: Optional[int] = None,
                 signature_name: str = DEFAULT_SIGNATURE, tls_ca: Optional[Union[str, bytes]] = None):
        if timeout <= 0:
            raise ValueError(f"timeout must be positive seconds, got {timeout}")
        self.target, self.model_name, self.timeout = target, model_name, float(timeout)
        self.version, self.signature_name = version, signature_name
        options = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
        if tls_ca is None:
            self._channel = grpc.insecure_channel(target, options=options)
        else:
            credentials = grpc.ssl_channel_credentials(root_certificates=_pem(tls_ca))
            self._channel = grpc.secure_channel(target, credentials, options=options)
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._signatures: Optional[Dict[str, Dict[str, Dict[str, tuple]]]] = None

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

    def metadata(self) -> Dict[str, Dict[str, Dict[str, tuple]]]:
        """The model's signatures: `{signature: {"inputs"|"outputs": {name: (dtype, shape)}}}`
        with dtype a numpy dtype name and shape a tuple (None for an unknown dimension)."""
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._model_spec(request.model_spec)
        response = self._call(self._stub.GetModelMetadata, request, f"GetModelMetadata({self.model_name})")
        signature_map = get_model_metadata_pb2.SignatureDefMap()
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
        """One Predict call: named input arrays -> named output arrays."""
        signature_name = signature_name or self.signature_name
        request = predict_pb2.PredictRequest()
        self._model_spec(request.model_spec, signature_name)
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(np.ascontiguousarray(value)))
        request.output_filter.extend(output_keys or [])
        response = self._call(self._stub.Predict, request, f"Predict({self.model_name}/{signature_name})")
        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}

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

    def close(self) -> None:
        self._channel.close()
