"""Atomic file output: write to a temporary file beside the target, then rename.

A reader (a person, TF-Serving, a resumed run) never sees a half-written file.
"""
from __future__ import annotations

import os
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


def atomic_directory(path: str, populate: Callable[[str], None]) -> None:
    """Call `populate(temporary_directory)`, then rename the directory to `path` (which must
    not exist yet)."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    if os.path.exists(path):
        raise FileExistsError(f"{path} already exists")
    temporary = tempfile.mkdtemp(dir=parent, prefix=f".tmp-{os.path.basename(path)}-")
    try:
        populate(temporary)
        os.replace(temporary, path)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
