"""Prometheus metrics of the local server, under TF-Serving's names where it has one.

Served as Prometheus' text exposition format (version 0.0.4) at
`/monitoring/prometheus/metrics` on the REST port, as TF-Serving serves them when its
`--monitoring_config_file` enables `prometheus_config` (serving/monitoring.config):

- `:tensorflow:serving:request_count{model_name, status}` (counter): TF-Serving's; status is
  the gRPC status name (`OK`, `INVALID_ARGUMENT`, ...);
- `:tensorflow:serving:request_latency{model_name, API, entrypoint}` (histogram, microseconds,
  TF-Serving's buckets 10 × 1.8^i): API `predict`, `get_model_metadata`, `get_model_status`;
  entrypoint `GRPC` or `REST`;
- `:tensorflow:cc:saved_model:load_attempt_count{model_path, status}` (counter): TensorFlow's,
  status `success` or `fail` (load failures);
- `:tfrf:serving:request_count{model_name, version, signature_name, entrypoint, status}`
  (counter): Predict requests by version and signature (TF-Serving has no such breakdown);
- `:tfrf:serving:model_loaded{model_name, version}` (gauge): 1 per served version (models loaded).

Only names the server serves become label values (an unknown model is counted as `""`), so
callers cannot grow the label sets.
"""
from __future__ import annotations

import bisect
import threading
from typing import Callable, Dict, Mapping, Optional, Tuple

LATENCY_BUCKETS_US = tuple(10.0 * 1.8 ** index for index in range(33))
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_HELP = {
    ":tensorflow:serving:request_count": ("counter", "The total number of requests."),
    ":tensorflow:serving:request_latency": (
        "histogram", "Distribution of wall time (in microseconds) for Tensorflow Serving request."),
    ":tensorflow:cc:saved_model:load_attempt_count": (
        "counter", "The number of times a SavedModel was successfully loaded."),
    ":tfrf:serving:request_count": (
        "counter", "Predict requests by model, version, signature, entrypoint and status."),
    ":tfrf:serving:model_loaded": ("gauge", "1 for every model version being served."),
}
_LABELS = {
    ":tensorflow:serving:request_count": ("model_name", "status"),
    ":tensorflow:serving:request_latency": ("model_name", "API", "entrypoint"),
    ":tensorflow:cc:saved_model:load_attempt_count": ("model_path", "status"),
    ":tfrf:serving:request_count": ("model_name", "version", "signature_name", "entrypoint", "status"),
}


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names, values, extra: str = "") -> str:
    parts = [f'{name}="{_escape(value)}"' for name, value in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Metrics:
    """Thread-safe counters and histograms of one server; `exposition()` renders them.

    Args:
        served: returns the served version of every model (the `model_loaded` gauge).
    """

    def __init__(self, served: Optional[Callable[[], Mapping[str, int]]] = None):
        self._served = served or dict
        self._lock = threading.Lock()
        self._counters: Dict[str, Dict[Tuple[str, ...], float]] = {
            name: {} for name, (kind, _) in _HELP.items() if kind == "counter"}
        # (labels) -> [bucket counts..., sum, count]
        self._latency: Dict[Tuple[str, ...], list] = {}

    def _add(self, name: str, labels: Tuple[str, ...], amount: float = 1.0) -> None:
        with self._lock:
            series = self._counters[name]
            series[labels] = series.get(labels, 0.0) + amount

    def request(self, model_name: str, status: str, api: str, entrypoint: str, seconds: float,
                version: Optional[int] = None, signature_name: Optional[str] = None) -> None:
        """Counts one finished request (`status`: a gRPC status name) and its latency."""
        self._add(":tensorflow:serving:request_count", (model_name, status))
        if api == "predict":
            self._add(":tfrf:serving:request_count", (model_name, "" if version is None else str(version),
                                                       signature_name or "", entrypoint, status))
        micros = max(0.0, seconds * 1e6)
        key = (model_name, api, entrypoint)
        with self._lock:
            row = self._latency.setdefault(key, [0] * (len(LATENCY_BUCKETS_US) + 2))
            bucket = bisect.bisect_left(LATENCY_BUCKETS_US, micros)
            if bucket < len(LATENCY_BUCKETS_US):  # above the last bound: only in +Inf
                row[bucket] += 1
            row[-2] += micros
            row[-1] += 1

    def load_attempt(self, model_path: str, success: bool) -> None:
        self._add(":tensorflow:cc:saved_model:load_attempt_count", (model_path, "success" if success else "fail"))

    def value(self, name: str, **labels) -> float:
        """A counter's current value (0 when never counted), for tests and reports."""
        with self._lock:
            return self._counters[name].get(tuple(labels[label] for label in _LABELS[name]), 0.0)

    def exposition(self) -> str:
        """All metrics in Prometheus' text format."""
        lines = []
        with self._lock:
            counters = {name: dict(series) for name, series in self._counters.items()}
            latency = {key: list(row) for key, row in self._latency.items()}
        for name, (kind, text) in _HELP.items():
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
            if kind == "counter":
                for labels, value in sorted(counters[name].items()):
                    lines.append(f"{name}{_labels(_LABELS[name], labels)} {_number(value)}")
            elif kind == "gauge":
                for model, version in sorted(self._served().items()):
                    lines.append(f'{name}{_labels(("model_name", "version"), (model, str(version)))} 1')
            else:
                for labels, row in sorted(latency.items()):
                    cumulative = 0
                    for bound, count in zip(LATENCY_BUCKETS_US, row):
                        cumulative += count
                        le = f'le="{_number(bound)}"'
                        lines.append(f"{name}_bucket{_labels(_LABELS[name], labels, le)} {cumulative}")
                    everything = 'le="+Inf"'
                    lines.append(f"{name}_bucket{_labels(_LABELS[name], labels, everything)} {row[-1]}")
                    lines.append(f"{name}_sum{_labels(_LABELS[name], labels)} {_number(row[-2])}")
                    lines.append(f"{name}_count{_labels(_LABELS[name], labels)} {row[-1]}")
        return "\n".join(lines) + "\n"
