"""Atomic file output: write to a temporary file beside the target, then rename.

A reader (a person, TF-Serving, a resumed run) never sees a half-written file.
"""
from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from typing import BinaryIO, Callable


def atomic_write(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Call `write(stream)` on a temporary binary file, then rename it to `path`."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
        os.chmod(temporary, 0o644)  # mkstemp creates 0600; outputs are for every user
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def atomic_write_bytes(path: str, data: bytes) -> None:
    atomic_write(path, lambda stream: stream.write(data))


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_image(path: str, image, format: str = "PNG") -> None:
    """Save a uint8 `[H, W, 3]` (or `[H, W]`) array as an image file."""
    from PIL import Image

    atomic_write(path, lambda stream: Image.fromarray(image).save(stream, format=format))


def make_temporary_directory(parent: str, prefix: str) -> str:
    """A new empty directory `parent/PREFIXrandom` with the mode of a plain `mkdir` (0755 under
    the usual umask 022); `tempfile.mkdtemp` makes 0700, which a model server running as
    another user cannot read once the directory is renamed into place."""
    for _ in range(100):
        path = os.path.join(parent, f"{prefix}{secrets.token_hex(4)}")
        try:
            os.mkdir(path)  # mode 0o777 minus the umask
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"no free temporary directory name {prefix}* in {parent}")


def atomic_directory(path: str, populate: Callable[[str], None]) -> None:
    """Call `populate(temporary_directory)`, then rename the directory to `path` (which must
    not exist yet)."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    if os.path.exists(path):
        raise FileExistsError(f"{path} already exists")
    temporary = make_temporary_directory(parent, f".tmp-{os.path.basename(path)}-")
    try:
        populate(temporary)
        os.replace(temporary, path)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
