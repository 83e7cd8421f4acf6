"""The models under MODEL_DIR and TF-Serving's version policy (`latest { num_versions: 1 }`).

- `MODEL_DIR` is either one model's base path (`MODEL_DIR/VERSION/`, the model named after the
  directory) or a directory of models (`MODEL_DIR/NAME/VERSION/`); names that are not integers
  (the exporter's `.tmp-*` directories) are ignored.
- Each model serves its highest *loadable* version: versions are tried from the highest down,
  and the first that loads is served. A version that fails (unparsable `saved_model.pb`, missing
  or truncated variables, an empty directory) is logged once with its reason and tried again
  only when its files change (fingerprint: every file's relative path, size and mtime).
- One model's failure never blocks another model, nor the start-up while any model loads.
- Deleting the served version falls back to the next loadable one (or to none: NOT_FOUND);
  re-exporting the same version number (files changed) loads it again.
"""
from __future__ import annotations

import logging
import os
import re
import threading
from typing import Dict, Optional, Tuple

import grpc

from tfrf.serving.batching import BatchingParameters
from tfrf.serving.limits import RequestError, RequestLimits
from tfrf.serving.model import Counters, ServedModel

LOGGER = logging.getLogger("tfrf.serving")
_VERSION = re.compile(r"^\d+$")

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
            for name, base_path in self.base_paths.items():
                try:
                    self._refresh_model(name, base_path)
                except Exception as error:  # a broken model must not stop the others
                    LOGGER.warning("model %s: %s", name, _first_line(error))
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
            self.counters.add("load_attempts")
            try:
                model = ServedModel(name, version, path, self.batching, self.limits, self.counters)
            except Exception as error:
                reason = _first_line(error)
                self.failures[(name, version)] = (files, reason)
                LOGGER.warning("model %s version %d does not load (%s); tried again when its files "
                               "change", name, version, reason)
                continue
            self.failures.pop((name, version), None)
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
        if model is None:
            served = sorted(self.served())
            reason = "" if name not in self.base_paths else " (no version of it loads)"
            raise RequestError(
                grpc.StatusCode.NOT_FOUND,
                f"Servable not found for request: Latest({name}){reason}; this server serves {served}",
            )
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
