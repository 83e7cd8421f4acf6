"""On-disk cache of the metrics: converted Keras weights and real-set FID statistics.

Entries are named by a content key (a sha256 of what they were computed from), so a changed
source never reuses a stale entry, and written atomically, so a reader never sees half a file.
The directory is `cache_dir` when given, else `$TFRF_CACHE_DIR`, else `$XDG_CACHE_HOME/tfrf/metrics`,
else `~/.cache/tfrf/metrics`; `cache_dir=False` turns caching off.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from typing import Callable, Optional, Union

CacheDir = Union[None, bool, str, "os.PathLike[str]"]


def default_cache_dir() -> str:
    """`$TFRF_CACHE_DIR`, else `$XDG_CACHE_HOME/tfrf/metrics`, else `~/.cache/tfrf/metrics`."""
    if os.environ.get("TFRF_CACHE_DIR"):
        return os.environ["TFRF_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tfrf", "metrics")


def resolve_cache_dir(cache_dir: CacheDir) -> Optional[str]:
    """The cache directory to use: None for the default, False for none, else the given path."""
    if cache_dir is False:
        return None
    if cache_dir is None or cache_dir is True:
        return default_cache_dir()
    return os.fspath(cache_dir)


def content_key(*parts: str) -> str:
    """A short sha256 hex key of the given strings (order matters)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:32]


def save_keras_weights(model, path: str) -> None:
    """`model.save_weights(path)` (HDF5, `path` ending in `.weights.h5`) through a temporary file
    beside `path`, renamed into place."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".weights.h5")
    os.close(handle)
    try:
        model.save_weights(temporary)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def load_or_convert(model, cache_dir: Optional[str], name: str, convert: Callable[[], None]) -> bool:
    """Load `cache_dir/name` into `model` if present; else call `convert()` (which sets the
    weights) and, when `cache_dir` is set, save the result there. Returns True on a cache hit."""
    path = os.path.join(cache_dir, name) if cache_dir else None
    if path and os.path.isfile(path):
        model.load_weights(path)
        return True
    convert()
    if path:
        save_keras_weights(model, path)
    return False
