"""TF-Serving's REST JSON <-> Predict protos (`tfrf.serving.rest`).

Request: the row format (`instances`: a list of examples, each an object of named inputs or,
for a one-input signature, a bare value) or the columnar format (`inputs`: an object of named
inputs, or a bare value for a one-input signature); values are typed by the signature's dtypes,
and a string value may be `{"b64": "..."}`. Response: `{"predictions": [...]}` for the row
format, `{"outputs": ...}` for the columnar one; string outputs whose name ends in `_bytes` come
back as `{"b64": ...}`.
"""
from __future__ import annotations

import base64
from typing import Optional

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from tfrf.serving.limits import RequestError, cut

DEFAULT_SIGNATURE = "serving_default"
HTTP_CODES = {
    "OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400, "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400, "ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501, "INTERNAL": 500,
    "UNAVAILABLE": 503, "DATA_LOSS": 500, "UNAUTHENTICATED": 401,
}
"""TF-Serving's HTTP status for each gRPC status (model_servers/http_server.cc)."""


def invalid(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _strings(value, name: str):
    """A nested list of str / {"b64": ...} as (flat list of bytes, shape); rectangular only."""
    if isinstance(value, dict):
        if set(value) != {"b64"} or not isinstance(value["b64"], str):
            raise invalid(f"input {cut(name)!r}: a string value must be a string or {{\"b64\": \"...\"}}")
        try:
            return [base64.b64decode(value["b64"], validate=True)], []
        except ValueError:
            raise invalid(f"input {cut(name)!r}: invalid base64 in a \"b64\" value") from None
    if isinstance(value, str):
        return [value.encode("utf-8")], []
    if not isinstance(value, list):
        raise invalid(f"input {cut(name)!r} is a string tensor; got a {type(value).__name__}")
    flat, shape = [], None
    for item in value:
        values, inner = _strings(item, name)
        if shape is not None and inner != shape:
            raise invalid(f"input {cut(name)!r}: nested lists of different lengths")
        shape = inner
        flat += values
    return flat, [len(value)] + (shape or [])


def to_array(value, dtype: tf.DType, name: str) -> np.ndarray:
    """One JSON value as an array of the signature's dtype; RequestError INVALID_ARGUMENT."""
    if dtype == tf.string:
        flat, shape = _strings(value, name)
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
        return array.reshape(shape)
    try:
        return np.asarray(value, dtype=dtype.as_numpy_dtype)
    except (TypeError, ValueError, OverflowError) as error:
        raise invalid(f"input {cut(name)!r} is not a rectangular {dtype.name} array: "
                       f"{cut(str(error).splitlines()[0] if str(error) else type(error).__name__, 200)}") from None


def _named(value, specs, what: str):
    if isinstance(value, dict) and not set(value) <= {"b64"}:
        return value
    if len(specs) != 1:
        raise invalid(f"{what} must name the signature's inputs {sorted(specs)} (an object per example)")
    return {next(iter(specs)): value}


def predict_request(body: dict, model, model_name: str, version: Optional[int]) -> predict_pb2.PredictRequest:
    """A PredictRequest from TF-Serving's JSON (row or columnar), typed by `model`'s signature."""
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object")
    signature_name = body.get("signature_name", DEFAULT_SIGNATURE)
    if not isinstance(signature_name, str):
        raise invalid("signature_name must be a string")
    if ("instances" in body) == ("inputs" in body):
        raise invalid("the request must hold exactly one of 'instances' (row format) and 'inputs' (columnar)")
    if signature_name not in model.signatures:
        raise RequestError(grpc.StatusCode.NOT_FOUND, f"signature {cut(signature_name)!r} not found in model "
                                                      f"{model.name!r}; it has {sorted(model.signatures)}")
    specs = model.input_specs[signature_name]
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise invalid("'instances' must be a non-empty list of examples")
        rows = [_named(instance, specs, "each instance") for instance in instances]
        names = set(rows[0])
        if any(set(row) != names for row in rows):
            raise invalid("every instance must name the same inputs")
        columns = {name: [row[name] for row in rows] for name in names}
    else:
        columns = _named(body["inputs"], specs, "'inputs'")
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = version
    for name, value in columns.items():
        spec = specs.get(name)
        dtype = spec.dtype if spec is not None else tf.float32  # an unknown name is refused by the checks
        request.inputs[name].CopyFrom(tf.make_tensor_proto(to_array(value, dtype, name)))
    return request


def _json_value(array: np.ndarray, name: str):
    if array.dtype == object:
        encode = (lambda item: {"b64": base64.b64encode(item).decode("ascii")}) if name.endswith("_bytes") else \
            (lambda item: item.decode("utf-8", "replace"))
        return np.vectorize(encode, otypes=[object])(array).tolist() if array.size else array.tolist()
    return array.tolist()


def predict_body(response: predict_pb2.PredictResponse, row_format: bool) -> dict:
    outputs = {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
    if row_format:
        values = {name: _json_value(array, name) for name, array in outputs.items()}
        if len(values) == 1:
            return {"predictions": next(iter(values.values()))}
        size = len(next(iter(values.values())))
        return {"predictions": [{name: value[index] for name, value in values.items()} for index in range(size)]}
    values = {name: _json_value(array, name) for name, array in outputs.items()}
    return {"outputs": next(iter(values.values())) if len(values) == 1 else values}
