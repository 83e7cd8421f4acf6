"""Request limits of the local server, checked on the declared shapes before anything is built.

A `PredictRequest` declares each input's dtype and shape in its `TensorProto`; the content
(`tensor_content` or a typed `*_val` field) may be tiny while the declared shape is huge (a
single `float_val` is broadcast to the whole shape). `check_request` therefore reads only the
declared dtypes and shapes and the content's length, and answers in microseconds:

- INVALID_ARGUMENT: missing or extra inputs, a dtype or fixed dimension that differs from the
  signature, a batch (first) dimension that differs between inputs, a batch or source count
  (any other unknown dimension, K) of 0, or content that does not fill the declared shape;
- RESOURCE_EXHAUSTED: a batch above `max_batch_size`, K above `max_sources`, or declared bytes
  (all inputs together, as decoded arrays) above `max_request_bytes`.

Content rule: `tensor_content` must hold exactly the declared bytes; a typed field must hold
exactly one value per element, or a single value, which is broadcast over the declared shape
(TensorFlow's `make_ndarray` rule; the shape is within the limits by then). Zero values or
between 1 and N-1 values (which TensorFlow would pad with the last one) are refused.

`Admission` bounds the requests decoded and running at once, and lets a waiting request go when
its RPC is cancelled or its deadline passes, before it is started.
"""
from __future__ import annotations

import collections
import dataclasses
import math
import os
import threading
from typing import Deque, Dict, Mapping, Optional, Sequence, Tuple

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework.tensor_pb2 import TensorProto

MAX_MESSAGE_BYTES = 512 * 1024 * 1024
"""The largest gRPC message the server and the client accept (TF-Serving uses no smaller)."""
REQUEST_COPIES = 4
"""Copies of a request's bytes alive while it runs: parsed proto, decoded arrays, input tensors,
outputs (the wire bytes are counted with the pending requests)."""
DEFAULT_MAX_SOURCES = 16
DEFAULT_MAX_CONCURRENT = 4
DEFAULT_MAX_PENDING = 128
DEFAULT_RUN_BYTES = 16 * 1024 * 1024
_MAX_DEFAULT_BATCH = 1024
_MIB = 1024 * 1024

# The TensorProto field holding typed values of each dtype, and how many entries make one element.
_VALUE_FIELDS = {
    tf.float32: ("float_val", 1), tf.float64: ("double_val", 1), tf.int64: ("int64_val", 1),
    tf.float16: ("half_val", 1), tf.bfloat16: ("half_val", 1), tf.bool: ("bool_val", 1),
    tf.uint32: ("uint32_val", 1), tf.uint64: ("uint64_val", 1),
    tf.complex64: ("scomplex_val", 2), tf.complex128: ("dcomplex_val", 2),
    **{dtype: ("int_val", 1) for dtype in (tf.int32, tf.int16, tf.int8, tf.uint8, tf.uint16)},
}


NAME_LIMIT = 64
"""Names taken from a request (model, signature, inputs) are cut to this many characters in messages."""


def cut(name, limit: int = NAME_LIMIT) -> str:
    """`name` (any text from a request) cut to `limit` characters, saying how long it was."""
    name = str(name)
    return name if len(name) <= limit else f"{name[:limit]}...({len(name)} chars)"


class RequestError(Exception):
    """A request the server answers with gRPC status `code` (a `grpc.StatusCode`)."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


def describe(dtype: tf.DType, shape) -> str:
    """`float32 [?, ?, 64, 64, 3]` for a dtype and a (partly unknown) shape."""
    dims = ", ".join("?" if dim is None else str(dim) for dim in tf.TensorShape(shape).as_list())
    return f"{dtype.name} [{dims}]"


def machine_memory_bytes() -> int:
    """Physical memory, or the cgroup's memory limit when that is lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path, encoding="ascii") as stream:
                text = stream.read().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


@dataclasses.dataclass(frozen=True)
class RequestLimits:
    """What one Predict request may declare, and how many run at once.

    Every field left None is sized by `resolve` from the machine's memory.

    Attributes:
        max_batch_size: the largest batch (first dimension); None: what `max_request_bytes`
            allows for one-source examples of the model, at most 1024 (and at most the batching
            parameters' `max_batch_size` when batching is on).
        max_sources: the largest K: an unknown dimension 1 of an input named `source*`
            (`source_images`, `source_poses`); other unknown dimensions (the keypoint arrays of
            a `photos` signature) are bounded by `max_request_bytes` only.
        max_request_bytes: declared bytes of all inputs together; None: half the machine's
            memory shared by `max_pending_requests` wire messages and `REQUEST_COPIES` copies of
            each running request, between 1 MiB and 512 MiB (the gRPC message limit).
        max_concurrent_requests: requests decoded and running at once; the others wait (until
            their deadline). None: 4, or enough to fill every batch thread when batching is on.
        max_pending_requests: RPCs accepted at once (running or waiting); more get
            RESOURCE_EXHAUSTED from gRPC at once.
        run_bytes: a request runs the model on slices of its batch holding about this many
            input bytes (at least one example), so its working memory does not grow with its
            batch and a cancelled request stops between slices.
    """

    max_batch_size: Optional[int] = None
    max_sources: int = DEFAULT_MAX_SOURCES
    max_request_bytes: Optional[int] = None
    max_concurrent_requests: Optional[int] = None
    max_pending_requests: int = DEFAULT_MAX_PENDING
    run_bytes: int = DEFAULT_RUN_BYTES

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is not None and value < 1:
                raise ValueError(f"request limit {field.name} must be a positive integer, got {value}")

    def resolve(self, batching=None, memory_bytes: Optional[int] = None) -> "RequestLimits":
        """These limits with every None sized to the machine (and to `batching`, the
        `BatchingParameters` or None)."""
        concurrent = self.max_concurrent_requests
        if concurrent is None:
            concurrent = DEFAULT_MAX_CONCURRENT
            if batching is not None:
                concurrent = max(concurrent, batching.max_batch_size * batching.num_batch_threads)
        request_bytes = self.max_request_bytes
        if request_bytes is None:
            budget = (memory_bytes or machine_memory_bytes()) // 2
            share = budget // (self.max_pending_requests + REQUEST_COPIES * concurrent)
            request_bytes = int(min(max(share, _MIB), MAX_MESSAGE_BYTES - _MIB))
        return dataclasses.replace(self, max_concurrent_requests=concurrent, max_request_bytes=request_bytes)

    def batch_limit(self, specs: Mapping[str, tf.TensorSpec], batching=None) -> int:
        """The largest batch a signature with input `specs` accepts under these resolved limits."""
        if self.max_batch_size is not None:
            limit = self.max_batch_size
        else:
            one = sum(_declared_bytes(spec.dtype, [1 if dim is None else dim for dim in spec.shape.as_list()])
                      for spec in specs.values())
            limit = max(1, min(_MAX_DEFAULT_BATCH, self.max_request_bytes // max(one, 1)))
        if batching is not None:
            limit = min(limit, batching.max_batch_size)
        return limit


def _dims_text(dims: Sequence[int]) -> str:
    return "[" + ", ".join(str(dim) for dim in dims) + "]"


def _declared_bytes(dtype: tf.DType, dims: Sequence[int]) -> int:
    return math.prod(dims) * (dtype.size if dtype != tf.string else 1)


def _declared(proto) -> Tuple[Optional[tf.DType], Optional[list]]:
    try:
        dtype = tf.as_dtype(proto.dtype)
    except TypeError:
        dtype = None
    if proto.tensor_shape.unknown_rank or any(dim.size < 0 for dim in proto.tensor_shape.dim):
        return dtype, None
    return dtype, [dim.size for dim in proto.tensor_shape.dim]


def _check_content(proto, name: str, dtype: tf.DType, dims: Sequence[int]) -> None:
    elements = math.prod(dims)
    content_bytes = len(proto.tensor_content)  # a transient copy of the bytes (read once)
    if content_bytes:
        expected = elements * dtype.size
        if content_bytes != expected:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input {name!r} declares {describe(dtype, dims)} ({expected} bytes) but its tensor_content "
                f"holds {content_bytes} bytes",
            )
        return
    field, per_element = _VALUE_FIELDS.get(dtype, ("string_val", 1) if dtype == tf.string else (None, 1))
    if field is None:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"input {name!r} has unsupported dtype {dtype.name}")
    count = len(getattr(proto, field)) // per_element
    if count != elements and not (count == 1 and elements > 0):
        raise RequestError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"input {name!r} declares {describe(dtype, dims)} ({elements} values) but holds {count} values in "
            f"{field}; send all of them (tensor_content) or a single value to broadcast",
        )


def check_request(inputs: Mapping[str, TensorProto], specs: Mapping[str, tf.TensorSpec],
                  limits: RequestLimits, max_batch_size: int, where: str,
                  batching_max_batch_size: Optional[int] = None) -> Dict[str, list]:
    """The declared shape of every input after checking it against the signature and the limits.

    Args:
        inputs: the request's TensorProtos by name (nothing is decoded).
        specs: the signature's input TensorSpecs by name.
        limits: resolved `RequestLimits`.
        max_batch_size: the largest batch this signature accepts (`RequestLimits.batch_limit`).
        where: `signature 'serving_default' of model 'face'`, for messages.
        batching_max_batch_size: with batching on, a larger batch is INVALID_ARGUMENT with
            TF-Serving's message (`Task size 9 is larger than maximum input batch size 8`).

    Raises:
        RequestError: INVALID_ARGUMENT or RESOURCE_EXHAUSTED (see the module docstring).
    """
    expected = ", ".join(f"{name}: {describe(spec.dtype, spec.shape)}" for name, spec in sorted(specs.items()))
    missing, extra = sorted(set(specs) - set(inputs)), sorted(set(inputs) - set(specs))
    if missing or extra:
        shown = [cut(name) for name in extra[:8]] + ([f"... {len(extra) - 8} more"] if len(extra) > 8 else [])
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"{where} takes inputs {{{expected}}}; request lacks {missing} and has unexpected {shown}")
    shapes: Dict[str, list] = {}
    for name, spec in sorted(specs.items()):
        dtype, dims = _declared(inputs[name])
        if dtype != spec.dtype or dims is None or not spec.shape.is_compatible_with(dims):
            got_dtype = dtype.name if dtype is not None else f"dtype enum {inputs[name].dtype}"
            got = f"{got_dtype} {'[unknown rank]' if dims is None else _dims_text(dims)}"
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"input {name!r} of {where} must be {describe(spec.dtype, spec.shape)}, got {got}")
        shapes[name] = dims
    batched = {name: dims[0] for name, dims in shapes.items() if specs[name].shape.rank and specs[name].shape[0] is None}
    if len(set(batched.values())) > 1:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"every input of {where} must share its first (batch) dimension, got "
                           f"{ {name: shapes[name] for name in sorted(batched)} }")
    for name, dims in sorted(shapes.items()):
        for axis, (dim, fixed) in enumerate(zip(dims, specs[name].shape.as_list())):
            if fixed is not None:
                continue
            sources = axis == 1 and name.startswith("source")  # K: axis 1 of source_images, source_poses
            what = "batch size" if axis == 0 else f"dimension {axis} (sources K)" if sources else f"dimension {axis}"
            if dim < 1:
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"input {name!r} of {where} has {what} {dim}, must be >= 1: {_dims_text(dims)}")
            if axis == 0 and batching_max_batch_size is not None and dim > batching_max_batch_size:
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"Task size {dim} is larger than maximum input batch size "
                                   f"{batching_max_batch_size} (input {name!r} of {where})")
            limit = max_batch_size if axis == 0 else limits.max_sources if sources else None
            if limit is not None and dim > limit:  # other unknown dimensions: bounded by the bytes below
                option = "--max-batch-size" if axis == 0 else "--max-sources"
                raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                   f"input {name!r} of {where} has {what} {dim}, above this server's limit "
                                   f"{limit} ({option})")
    total = sum(_declared_bytes(specs[name].dtype, dims) for name, dims in shapes.items())
    if total > limits.max_request_bytes:
        raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                           f"request to {where} declares {total} bytes of inputs "
                           f"{ {name: dims for name, dims in sorted(shapes.items())} }, above this server's "
                           f"limit of {limits.max_request_bytes} bytes (--max-request-bytes)")
    for name, dims in sorted(shapes.items()):
        _check_content(inputs[name], name, specs[name].dtype, dims)
    return shapes


def decode_inputs(inputs: Mapping[str, TensorProto], shapes: Mapping[str, list]) -> Dict[str, np.ndarray]:
    """The checked inputs as numpy arrays (tensor_content is used in place, not copied).

    Raises:
        RequestError: RESOURCE_EXHAUSTED when memory runs out (MemoryError).
    """
    arrays = {}
    try:
        for name, dims in shapes.items():
            proto = inputs[name]
            content = proto.tensor_content
            if content:
                arrays[name] = np.frombuffer(content, dtype=tf.as_dtype(proto.dtype).as_numpy_dtype).reshape(dims)
            else:
                arrays[name] = tf.make_ndarray(proto)  # exact values or one broadcast value (checked)
    except MemoryError as error:
        raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                           f"out of memory decoding the request's inputs: {error}") from None
    return arrays


class Admission:
    """At most `capacity` requests hold a slot at once, handed out first come, first served; a
    waiting request gives up when its RPC ends (client cancel, deadline), so it is never started.

    Args:
        capacity: slots.
        poll_seconds: how often a waiting request looks at its RPC.
    """

    def __init__(self, capacity: int, poll_seconds: float = 0.05):
        self.capacity = capacity
        self.peak = 0  # the most slots ever held at once
        self._held = 0
        self._waiters: Deque[threading.Event] = collections.deque()
        self._lock = threading.Lock()
        self._poll_seconds = poll_seconds

    def acquire(self, context=None) -> None:
        """Takes a slot; RequestError DEADLINE_EXCEEDED or CANCELLED when the RPC ends first."""
        with self._lock:
            if self._held < self.capacity and not self._waiters:
                self._take()
                return
            turn = threading.Event()  # set by release() when the slot passes to this request
            self._waiters.append(turn)
        while True:
            wait = self._poll_seconds
            if context is not None and context.time_remaining() is not None:
                wait = max(0.0, min(wait, context.time_remaining()))
            if turn.wait(wait):
                return
            if context is None:
                continue
            try:
                ensure_active(context, "waiting for a free slot")
            except RequestError:
                with self._lock:
                    if turn.is_set():  # the slot arrived just now: pass it on
                        self._release()
                    else:
                        self._waiters.remove(turn)
                raise

    def release(self) -> None:
        with self._lock:
            self._release()

    def _take(self) -> None:
        self._held += 1
        self.peak = max(self.peak, self._held)

    def _release(self) -> None:
        """Hands the slot to the longest-waiting request, else frees it; called under the lock."""
        self._held -= 1
        if self._waiters:
            self._take()
            self._waiters.popleft().set()


def ensure_active(context, stage: str) -> None:
    """RequestError DEADLINE_EXCEEDED / CANCELLED when the RPC behind `context` has ended."""
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        raise RequestError(grpc.StatusCode.DEADLINE_EXCEEDED, f"the request's deadline passed while {stage}")
    if not context.is_active():
        raise RequestError(grpc.StatusCode.CANCELLED, f"the request was cancelled while {stage}")
