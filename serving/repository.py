"""The models under MODEL_DIR and TF-Serving's version policy (`latest { num_versions: 1 }`).

- `MODEL_DIR` is either one model's base path (`MODEL_DIR/VERSION/`, the model named after the
  directory) or a directory of models (`MODEL_DIR/NAME/VERSION/`); names that are not integers
  (the exporter's `.tmp-*` directories) are ignored.
- Each model serves its highest *loadable* version: versions are tried from the highest down,
  and the first that loads is served. A version is tried only once its files have stopped
  changing (quiescence): its fingerprint is the same as at the previous look, or no file in it
  was written in the last `SETTLE_SECONDS` (a version being copied in is not loaded half-way).
  A version that fails (unparsable `saved_model.pb`, missing or truncated variables, an empty
  directory) is logged once with its reason and tried again only when its files change (fingerprint: every file's relative path, size and mtime).
- One model's failure never blocks another model, nor the start-up while any model loads.
- Deleting the served version falls back to the next loadable one (or to none: NOT_FOUND);
  re-exporting the same version number (files changed) loads it again.
"""
from __future__ import annotations

import ctypes
import gc
import logging
import os
import re
import threading
import time
from typing import Callable, Dict, Optional, Tuple

import grpc

from tfrf.serving.batching import BatchingParameters
from tfrf.serving.limits import RequestError, RequestLimits, cut
from tfrf.serving.model import Counters, ServedModel

LOGGER = logging.getLogger("tfrf.serving")
_VERSION = re.compile(r"^\d+$")
SETTLE_SECONDS = 1.0

Fingerprint = Tuple[Tuple[str, int, int], ...]


def version_numbers(base_path: str):
    """The integer version directories under `base_path`, highest first."""
    try:
        names = os.listdir(base_path)
    except OSError:
        return []
    return sorted((int(name) for name in names if _VERSION.match(name) and os.path.isdir(os.path.join(base_path, name))),
                  reverse=True)


def fingerprint(path: str) -> Fingerprint:
    """(relative path, size, mtime in ns) of every file and directory under `path`: changes
    when a file is written, replaced, added or removed."""
    entries = []
    for root, directories, files in os.walk(path):
        directories.sort()
        for name in sorted(files) + [""]:
            full = os.path.join(root, name) if name else root
            try:
                status = os.stat(full)
            except OSError:
                continue
            entries.append((os.path.relpath(full, path), status.st_size if name else 0, status.st_mtime_ns))
    return tuple(entries)


def release_memory() -> None:
    """Frees what unloaded models left in reference cycles and hands the freed heap back to the
    system (glibc's `malloc_trim`; a no-op elsewhere), so RSS follows the models served."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def settled(files: Fingerprint, previous: Optional[Fingerprint], settle_seconds: float = SETTLE_SECONDS) -> bool:
    """Whether a version's files have stopped changing: the same as at the previous look, or
    none written (mtime) in the last `settle_seconds`."""
    if previous == files:
        return True
    newest = max((mtime for _, size, mtime in files), default=0)
    return bool(files) and time.time_ns() - newest >= settle_seconds * 1e9


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


class ModelRepository:
    """The models under `model_dir`, each at its highest loadable version.

    Args:
        model_dir: one model's base path (holding integer version directories) or a directory
            of such base paths.
        model_name: the name of the single model when `model_dir` is a base path (default:
            the directory's name).
        batching: batching parameters for every model, or None.
        limits: `RequestLimits` for every model (sized to the machine by default).
        counters: where loads and runs are counted (`load_attempts`, `runs`, ...).
    """

    def __init__(self, model_dir: str, model_name: Optional[str] = None,
                 batching: Optional[BatchingParameters] = None, limits: Optional[RequestLimits] = None,
                 counters: Optional[Counters] = None):
        if not os.path.isdir(model_dir):
            raise FileNotFoundError(f"model directory {model_dir} does not exist")
        self.batching = batching
        self.limits = (limits or RequestLimits()).resolve(batching)
        self.counters = counters or Counters()
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._models: Dict[str, ServedModel] = {}
        self._fingerprints: Dict[str, Fingerprint] = {}  # the served version's, per model
        self.failures: Dict[Tuple[str, int], Tuple[Fingerprint, str]] = {}  # (name, version) -> (files, reason)
        self._seen: Dict[Tuple[str, int], Fingerprint] = {}  # each version's files at the previous look
        self.deferred = 0  # versions left for a later look by the last refresh (files still changing)
        self.on_load: Optional[Callable[[str, bool], None]] = None  # (version path, loaded) per attempt
        if any(_VERSION.match(name) for name in os.listdir(model_dir)):
            name = model_name or os.path.basename(os.path.normpath(model_dir))
            self.base_paths = {name: model_dir}
        else:
            self.base_paths = {
                name: os.path.join(model_dir, name)
                for name in sorted(os.listdir(model_dir))
                if os.path.isdir(os.path.join(model_dir, name)) and not name.startswith(".")
            }
        if not self.base_paths:
            raise ValueError(f"{model_dir} holds no model: expected MODEL_DIR/VERSION/ or MODEL_DIR/NAME/VERSION/")

    def refresh(self) -> Dict[str, int]:
        """Applies the version policy to every model (see the module docstring); returns the
        served version per model. Never raises for a model that fails to load."""
        with self._refresh_lock:
            self.deferred = 0
            attempts = self.counters.snapshot().get("load_attempts", 0)
            for name, base_path in self.base_paths.items():
                try:
                    self._refresh_model(name, base_path)
                except Exception as error:  # a broken model must not stop the others
                    LOGGER.warning("model %s: %s", name, _first_line(error))
            if self.counters.snapshot().get("load_attempts", 0) != attempts:
                release_memory()  # what a replaced or failed load left behind
        return self.served()

    def _refresh_model(self, name: str, base_path: str) -> None:
        current = self._models.get(name)
        for version in version_numbers(base_path):
            path = os.path.join(base_path, str(version))
            files = fingerprint(path)
            if current is not None and current.version == version and self._fingerprints.get(name) == files:
                return  # the served version is still the highest loadable one, unchanged
            failure = self.failures.get((name, version))
            if failure is not None and failure[0] == files:
                continue  # failed before and unchanged since: not retried
            previous, self._seen[(name, version)] = self._seen.get((name, version)), files
            if not settled(files, previous):
                self.deferred += 1  # still being written: looked at again on the next refresh
                self.counters.add("load_deferred")
                continue
            self.counters.add("load_attempts")
            try:
                model = ServedModel(name, version, path, self.batching, self.limits, self.counters)
            except Exception as error:
                if self.on_load is not None:
                    self.on_load(path, False)
                reason = _first_line(error)
                self.failures[(name, version)] = (files, reason)
                LOGGER.warning("model %s version %d does not load (%s); tried again when its files "
                               "change", name, version, reason)
                continue
            self.failures.pop((name, version), None)
            if self.on_load is not None:
                self.on_load(path, True)
            self._swap(name, model, files)
            LOGGER.info("model %s: serving version %d%s", name, version,
                        "" if current is None else f" (was {current.version})")
            return
        if current is not None:  # no loadable version left
            self._swap(name, None, None)
            LOGGER.warning("model %s has no loadable version left in %s; it is not served", name, base_path)

    def _swap(self, name: str, model: Optional[ServedModel], files: Optional[Fingerprint]) -> None:
        with self._lock:
            previous = self._models.pop(name, None)
            if model is not None:
                self._models[name] = model
                self._fingerprints[name] = files
            else:
                self._fingerprints.pop(name, None)
        if previous is not None:
            previous.close()

    def served(self) -> Dict[str, int]:
        """The served version of every model that has one."""
        with self._lock:
            return {name: model.version for name, model in self._models.items()}

    def failure_report(self) -> str:
        """`face/9: OSError: ...; face/8: ...` for every version that failed to load."""
        return "; ".join(f"{name}/{version}: {reason}" for (name, version), (_, reason) in sorted(self.failures.items()))

    def get(self, name: str, version: Optional[int] = None) -> ServedModel:
        """The served model; RequestError(NOT_FOUND) for an unknown name or version."""
        with self._lock:
            model = self._models.get(name)
        if model is None:  # TF-Serving's message; the other models are not listed to the caller
            reason = "" if name not in self.base_paths else " (no version of it loads)"
            raise RequestError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: Latest({cut(name)}){reason}")
        if version is not None and version != model.version:
            raise RequestError(
                grpc.StatusCode.NOT_FOUND,
                f"Servable not found for request: Specific({name}, {version}); served version is {model.version}",
            )
        return model

    def close(self) -> None:
        with self._lock:
            models, self._models = list(self._models.values()), {}
        for model in models:
            model.close()
