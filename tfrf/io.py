"""Atomic output, the one helper every output goes through: write to a temporary file (or
directory) beside the target, flush it to disk, then rename.

A reader (a person, TF-Serving, a resumed run) never sees a half-written file, and after a crash
the target holds either the old or the new content. Files are fsynced before the rename and the
parent directory after it (so the rename itself is durable); files are made 0644 and directories
0755 (`mkstemp` / `mkdtemp` create 0600 / 0700), so a TF-Serving container running as another
user can read what was written.
"""
from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from typing import BinaryIO, Callable


FILE_MODE = 0o644
DIRECTORY_MODE = 0o755


def fsync_directory(path: str) -> None:
    """Flush a directory entry (a rename or a new file in it) to disk."""
    try:
        handle = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover  (platforms that cannot open directories)
        return
    try:
        os.fsync(handle)
    except OSError:  # pragma: no cover  (file systems that do not support it)
        pass
    finally:
        os.close(handle)


def fsync_tree(path: str) -> None:
    """fsync every file and directory under `path` (bottom-up) and set their modes."""
    for root, directories, files in os.walk(path, topdown=False):
        for name in files:
            file_path = os.path.join(root, name)
            os.chmod(file_path, FILE_MODE)
            with open(file_path, "rb") as stream:
                os.fsync(stream.fileno())
        for name in directories:
            os.chmod(os.path.join(root, name), DIRECTORY_MODE)
        fsync_directory(root)
    os.chmod(path, DIRECTORY_MODE)


def atomic_write(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Call `write(stream)` on a temporary binary file, flush it to disk, rename it to `path`."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, FILE_MODE)  # mkstemp creates 0600; outputs are for every user
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    fsync_directory(directory)


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
    """Call `populate(temporary_directory)`, flush everything in it to disk (files 0644,
    directories 0755), then rename the directory to `path` (which must not exist yet)."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    if os.path.exists(path):
        raise FileExistsError(f"{path} already exists")
    temporary = make_temporary_directory(parent, f".tmp-{os.path.basename(path)}-")
    try:
        populate(temporary)
        fsync_tree(temporary)
        os.replace(temporary, path)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    fsync_directory(parent)
