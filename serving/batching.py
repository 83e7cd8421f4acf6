"""Server-side request batching for the local server, with TF-Serving's parameters.

`BatchingParameters` reads the text-proto file TF-Serving takes with `--enable_batching
--batching_parameters_file=...` (`max_batch_size { value: 8 }` ...). `Batcher` merges
concurrent requests that share a signature and every dimension but the batch dimension
(e.g. the same K) into one call, like TF-Serving's shared batch scheduler:

- a batch runs when it holds `max_batch_size` examples or its oldest request has waited
  `batch_timeout_micros`;
- `allowed_batch_sizes`, when given, pads a batch up to the next allowed size (repeating its
  last example) and drops the padding from the outputs;
- a request larger than `max_batch_size` is rejected (INVALID_ARGUMENT), and more than
  `max_enqueued_batches` batches waiting makes new requests fail UNAVAILABLE;
- a queued request whose future was cancelled (its RPC ended) or whose deadline passed is
  dropped before its batch runs (DEADLINE_EXCEEDED); `batch_sizes` and `dropped` count what ran
  and what was dropped.
"""
from __future__ import annotations

import collections
import dataclasses
import re
import threading
import time
from concurrent.futures import Future, InvalidStateError
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

_SCALAR_FIELDS = ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads")
_WRAPPED = re.compile(r"^(\w+)\s*\{\s*value\s*:\s*(-?\d+)\s*\}$")
_REPEATED = re.compile(r"^(\w+)\s*:\s*(-?\d+)$")


class BatchingError(RuntimeError):
    """A request the batcher refuses; `code` is the gRPC status name to answer with."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
    """TF-Serving's `BatchingParameters` (the fields the local server honours)."""

    max_batch_size: int = 8
    batch_timeout_micros: int = 2000
    max_enqueued_batches: int = 16
    num_batch_threads: int = 2
    allowed_batch_sizes: Tuple[int, ...] = ()

    def __post_init__(self):
        for field in _SCALAR_FIELDS:
            if getattr(self, field) < (0 if field == "batch_timeout_micros" else 1):
                raise ValueError(f"batching parameter {field} must be positive, got {getattr(self, field)}")
        sizes = self.allowed_batch_sizes
        if sizes and (list(sizes) != sorted(set(sizes)) or sizes[-1] != self.max_batch_size):
            raise ValueError(
                f"allowed_batch_sizes must increase strictly and end with max_batch_size "
                f"{self.max_batch_size}, got {list(sizes)}"
            )

    @classmethod
    def from_text(cls, text: str, source: str = "<text>") -> "BatchingParameters":
        """Parses the text-proto format, e.g. `max_batch_size { value: 8 }` per line and
        `allowed_batch_sizes: 4` repeated; `#` starts a comment."""
        values: Dict[str, object] = {}
        allowed: List[int] = []
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            wrapped, repeated = _WRAPPED.match(line), _REPEATED.match(line)
            if wrapped and wrapped.group(1) in _SCALAR_FIELDS:
                values[wrapped.group(1)] = int(wrapped.group(2))
            elif repeated and repeated.group(1) == "allowed_batch_sizes":
                allowed.append(int(repeated.group(2)))
            else:
                raise ValueError(
                    f"{source} line {number}: expected `FIELD {{ value: N }}` with FIELD one of "
                    f"{list(_SCALAR_FIELDS)} or `allowed_batch_sizes: N`, got {line!r}"
                )
        return cls(allowed_batch_sizes=tuple(allowed), **values)

    @classmethod
    def from_file(cls, path: str) -> "BatchingParameters":
        with open(path, encoding="utf-8") as stream:
            return cls.from_text(stream.read(), source=path)


@dataclasses.dataclass
class _Task:
    inputs: Dict[str, np.ndarray]
    size: int
    future: Future
    enqueued: float
    deadline: Optional[float] = None

    def expired(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline


Runner = Callable[[Dict[str, np.ndarray]], Dict[str, np.ndarray]]


class Batcher:
    """Merges concurrent requests into batches and runs them on `num_batch_threads` threads.

    Args:
        parameters: the batching parameters.
        runner: the function run on a merged batch: inputs by name -> outputs by name, every
            array with the batch as its first dimension.
    """

    def __init__(self, parameters: BatchingParameters, runner: Runner):
        self.parameters = parameters
        self._runner = runner
        self._queues: Dict[tuple, List[_Task]] = {}
        self._condition = threading.Condition()
        self._stopped = False
        self.batch_sizes = collections.Counter()  # examples per model run (padding excluded) -> runs
        self.dropped = 0
        self._threads = [
            threading.Thread(target=self._work, name=f"tfrf-batcher-{index}", daemon=True)
            for index in range(parameters.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _key(inputs: Dict[str, np.ndarray]) -> tuple:
        return tuple(sorted((name, value.dtype.str, value.shape[1:]) for name, value in inputs.items()))

    def submit(self, inputs: Dict[str, np.ndarray], deadline: Optional[float] = None) -> Future:
        """Queues one request; its future gets the outputs of its own examples. Cancelling
        the future before its batch starts withdraws the request, and so does reaching
        `deadline` (a `time.monotonic()` value) first."""
        sizes = {value.shape[0] if value.ndim else None for value in inputs.values()}
        if len(sizes) != 1 or None in sizes:
            raise BatchingError(
                "INVALID_ARGUMENT",
                f"batching needs every input to share its first (batch) dimension, got "
                f"{ {name: list(value.shape) for name, value in inputs.items()} }",
            )
        size = sizes.pop()
        if size > self.parameters.max_batch_size:
            raise BatchingError(
                "INVALID_ARGUMENT",
                f"Task size {size} is larger than maximum input batch size {self.parameters.max_batch_size}",
            )
        task = _Task(inputs, size, Future(), time.monotonic(), deadline)
        with self._condition:
            if self._stopped:
                raise BatchingError("UNAVAILABLE", "the batcher is shut down")
            queued = sum(len(tasks) for tasks in self._queues.values())
            if queued >= self.parameters.max_enqueued_batches * self.parameters.max_batch_size:
                raise BatchingError("UNAVAILABLE", "The batch scheduling queue to which this task was submitted is full")
            self._queues.setdefault(self._key(inputs), []).append(task)
            self._condition.notify_all()
        return task.future

    def _take_batch(self) -> Optional[List[_Task]]:
        """Waits for a batch to be ready and removes it from its queue; None when stopped."""
        timeout = self.parameters.batch_timeout_micros / 1e6
        with self._condition:
            while True:
                if self._stopped:
                    return None
                if not self._queues:
                    self._condition.wait()
                    continue
                for key in list(self._queues):  # drop requests whose caller gave up (cancel, deadline)
                    self._queues[key] = [task for task in self._queues[key] if self._keep(task)]
                    if not self._queues[key]:
                        del self._queues[key]
                if not self._queues:
                    continue
                key = min(self._queues, key=lambda k: self._queues[k][0].enqueued)
                tasks = self._queues[key]
                if sum(task.size for task in tasks) < self.parameters.max_batch_size:
                    now = time.monotonic()
                    remaining = tasks[0].enqueued + timeout - now
                    if remaining > 0:  # wake up for the batch timeout or the first deadline, whichever is first
                        deadlines = [task.deadline - now for tasks_ in self._queues.values() for task in tasks_
                                     if task.deadline is not None]
                        self._condition.wait(max(0.0, min([remaining] + deadlines)))
                        continue
                batch, total = [], 0
                while tasks and total + tasks[0].size <= self.parameters.max_batch_size:
                    task = tasks.pop(0)
                    if self._keep(task) and task.future.set_running_or_notify_cancel():  # False: cancelled
                        total += task.size
                        batch.append(task)
                if not tasks:
                    del self._queues[key]
                if batch:
                    return batch

    def _keep(self, task: _Task) -> bool:
        """False (and the task is dropped) when its caller gave up; called under the lock."""
        if task.future.cancelled():
            self.dropped += 1
            return False
        if task.expired(time.monotonic()):
            self.dropped += 1
            try:
                task.future.set_exception(BatchingError("DEADLINE_EXCEEDED", "the request's deadline passed in the queue"))
            except InvalidStateError:  # cancelled meanwhile
                pass
            return False
        return True

    def _padded_size(self, size: int) -> int:
        for allowed in self.parameters.allowed_batch_sizes:
            if allowed >= size:
                return allowed
        return size

    def _work(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            try:
                names = list(batch[0].inputs)
                merged = {name: np.concatenate([task.inputs[name] for task in batch]) for name in names}
                total = merged[names[0]].shape[0]
                padding = self._padded_size(total) - total
                if padding:
                    merged = {
                        name: np.concatenate([value, np.repeat(value[-1:], padding, axis=0)])
                        for name, value in merged.items()
                    }
                with self._condition:
                    self.batch_sizes[total] += 1
                outputs = self._runner(merged)
                start = 0
                for task in batch:
                    task.future.set_result(
                        {name: value[start:start + task.size] for name, value in outputs.items()}
                    )
                    start += task.size
            except BaseException as error:  # every waiting request gets the error
                for task in batch:
                    if not task.future.done():
                        task.future.set_exception(error)

    def stop(self) -> None:
        """Stops the threads; queued requests fail with CANCELLED."""
        with self._condition:
            self._stopped = True
            pending = [task for tasks in self._queues.values() for task in tasks]
            self._queues.clear()
            self._condition.notify_all()
        for task in pending:
            task.future.set_exception(BatchingError("CANCELLED", "the server shut down before the batch ran"))
        for thread in self._threads:
            thread.join(timeout=5)
