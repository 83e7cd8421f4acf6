"""Atomic output, the one helper every output goes through: write to a temporary file (or
directory) beside the target, flush it to disk, then rename.

A reader (a person, TF-Serving, a resumed run) never sees a half-written file, and after a crash
the target holds either the old or the new content. Files are fsynced before the rename and the
parent directory after it (so the rename itself is durable). Outputs get the mode a plain `open`
or `mkdir` gives them under the user's umask, `0o666 & ~umask` for files and `0o777 & ~umask`
for folders (`mkstemp` / `mkdtemp` would leave 0600 / 0700): under the usual umask 022 a
TF-Serving container running as another user can read what was written. A failed write (a full
disk) removes the temporary file and raises an OSError naming the target.

`atomic_save_image` writes the image format its path's extension names (`IMAGE_FORMATS`).

`held_stderr` holds back what native code (TensorFlow's C++ logging, the TFLite converter)
writes to file descriptor 2 and shows it only when the block fails, or in verbose mode
(`set_verbose`, `tfrf --verbose`).
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sys
import tempfile
from typing import BinaryIO, Callable, Iterator, Optional

IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
IMAGE_SAVE_OPTIONS = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95}}

_verbose = False


def current_umask() -> int:
    """The process's umask (read from /proc where it can be, so the umask is never changed)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode `open(path, "w")` gives a new file: 0o666 minus the umask."""
    return 0o666 & ~current_umask()


def directory_mode() -> int:
    """The mode `os.mkdir` gives a new folder: 0o777 minus the umask."""
    return 0o777 & ~current_umask()


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
    """fsync every file and directory under `path` (bottom-up) and give them the umask's modes."""
    files_mode, folders_mode = file_mode(), directory_mode()
    for root, directories, files in os.walk(path, topdown=False):
        for name in files:
            file_path = os.path.join(root, name)
            os.chmod(file_path, files_mode)
            with open(file_path, "rb") as stream:
                os.fsync(stream.fileno())
        for name in directories:
            os.chmod(os.path.join(root, name), folders_mode)
        fsync_directory(root)
    os.chmod(path, folders_mode)


def naming_target(error: OSError, path: str) -> OSError:
    """`error` (raised while writing a temporary file for `path`) as an OSError of the same
    errno that names `path` instead of the temporary file; errors without an errno unchanged."""
    if error.errno is None:
        return error
    return OSError(error.errno, error.strerror or os.strerror(error.errno), path)


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def publish_file(temporary: str, path: str) -> None:
    """Moves a finished `temporary` file (beside `path`) into place: fsync it, give it the
    umask's mode, rename it to `path`, fsync the directory. `temporary` is removed on failure,
    and an OSError names `path`."""
    try:
        with open(temporary, "rb") as stream:
            os.fsync(stream.fileno())
        os.chmod(temporary, file_mode())
        os.replace(temporary, path)
    except OSError as error:
        _remove(temporary)
        raise naming_target(error, path) from error
    fsync_directory(os.path.dirname(os.path.abspath(path)))


def atomic_write(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Call `write(stream)` on a temporary binary file, flush it to disk, rename it to `path`."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
    except OSError as error:
        _remove(temporary)
        raise naming_target(error, path) from error
    except BaseException:
        _remove(temporary)
        raise
    publish_file(temporary, path)


def atomic_write_bytes(path: str, data: bytes) -> None:
    atomic_write(path, lambda stream: stream.write(data))


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def image_format(path: str) -> str:
    """The Pillow format `path`'s extension names (`IMAGE_FORMATS`; WebP only where this Pillow
    writes it); a ValueError naming the path for any other extension."""
    from PIL import features

    suffixes = [suffix for suffix, name in IMAGE_FORMATS.items() if name != "WEBP" or features.check("webp")]
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in suffixes:
        given = f"extension {suffix}" if suffix else "no extension"
        raise ValueError(f"{path}: {given}; an image output must end in {', '.join(suffixes)}")
    return IMAGE_FORMATS[suffix]


def atomic_save_image(path: str, image, format: Optional[str] = None) -> None:
    """Save a uint8 `[H, W, 3]` (or `[H, W]`) array as an image file, in `format` (a Pillow
    format name) or, by default, the format `path`'s extension names (`image_format`)."""
    from PIL import Image

    format = format or image_format(path)
    options = IMAGE_SAVE_OPTIONS.get(format.upper(), {})
    atomic_write(path, lambda stream: Image.fromarray(image).save(stream, format=format, **options))


def make_temporary_directory(parent: str, prefix: str) -> str:
    """A new empty directory `parent/PREFIXrandom` with the mode of a plain `mkdir` (0o777 minus
    the umask); `tempfile.mkdtemp` makes 0700, which a model server running as another user
    cannot read once the directory is renamed into place."""
    for _ in range(100):
        path = os.path.join(parent, f"{prefix}{secrets.token_hex(4)}")
        try:
            os.mkdir(path)  # mode 0o777 minus the umask
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"no free temporary directory name {prefix}* in {parent}")


def atomic_directory(path: str, populate: Callable[[str], None]) -> None:
    """Call `populate(temporary_directory)`, flush everything in it to disk (with the umask's
    modes, `fsync_tree`), then rename the directory to `path` (which must not exist yet)."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    if os.path.exists(path):
        raise FileExistsError(f"{path} already exists")
    temporary = make_temporary_directory(parent, f".tmp-{os.path.basename(path)}-")
    try:
        populate(temporary)
        fsync_tree(temporary)
        os.replace(temporary, path)
    except OSError as error:
        shutil.rmtree(temporary, ignore_errors=True)
        raise naming_target(error, path) from error
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    fsync_directory(parent)


def set_verbose(verbose: bool) -> None:
    """Verbose mode (`tfrf --verbose`): `held_stderr` holds nothing back."""
    global _verbose
    _verbose = bool(verbose)


def is_verbose() -> bool:
    return _verbose


class HeldOutput:
    """What `held_stderr` held back: `data` (bytes), complete once the block has ended."""

    def __init__(self) -> None:
        self.data = b""

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


def _write_all(handle: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(handle, view):]


def _flush_python_stderr() -> None:
    try:
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):  # no sys.stderr, or a closed one
        pass


@contextlib.contextmanager
def held_stderr(show: Optional[bool] = None) -> Iterator[HeldOutput]:
    """Redirects file descriptor 2 (where native code such as TensorFlow's C++ logging writes)
    to a temporary file for the block; afterwards what was written is in the yielded
    `HeldOutput` and is written to stderr when the block raised, or when `show` (default: verbose
    mode, `set_verbose`). With `show`, or without a file descriptor 2, nothing is redirected."""
    held = HeldOutput()
    try:
        saved = None if (is_verbose() if show is None else show) else os.dup(2)
    except OSError:
        saved = None
    if saved is None:
        yield held
        return
    failed = True
    try:
        with tempfile.TemporaryFile() as stream:
            _flush_python_stderr()
            os.dup2(stream.fileno(), 2)
            try:
                yield held
                failed = False
            finally:
                _flush_python_stderr()
                os.dup2(saved, 2)
                stream.seek(0)
                held.data = stream.read()
    finally:
        os.close(saved)
        if failed and held.data:
            _write_all(2, held.data)
