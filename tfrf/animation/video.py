"""The per-frame loop of every animation and its video files: one rendered frame per driving frame.

`run_animation` drives a renderer (face or person) over the target of each driving frame, with a
progress bar and timing; a driving frame without a face or person reuses the last target and is
counted; when no driving frame has one, nothing is rendered and `NoDrivingPoseError` says so.
`VideoWriter` writes MP4 (H.264 by the ffmpeg of imageio-ffmpeg), which holds every frame, or GIF
(Pillow), which stores identical consecutive frames once with their durations added, so it plays
every frame for its time; the file appears only when complete (with the umask's mode,
`tfrf.io.publish_file`), and a failed write (a full disk) leaves nothing and raises an OSError
with ffmpeg's reason in one line (`ffmpeg_reason`). `read_video` reads a driving video; one
ffmpeg cannot read is a ValueError naming it, with ffmpeg's reason.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import re
import subprocess
import tempfile
import time
from fractions import Fraction
from typing import Callable, Iterable, Iterator, List, Optional, Tuple, TypeVar

import numpy as np

from tfrf.io import naming_target, publish_file

Target = TypeVar("Target")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
OUTPUT_SUFFIXES = (".gif", ".mp4")
DEFAULT_FPS = 25.0
MP4_CRF = 10  # H.264 constant rate factor (imageio's quality 8 of 10)
_SYSTEM_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EIO)
_FFMPEG_BANNER = re.compile(r"(ffmpeg version |built with |configuration:|lib\w+\s+\d+\.\s*\d+\.|=== stderr|"
                            r"could not load meta|ffmpeg command|ffmpeg stderr|"
                            r"nothing was written into output file|terminating thread with|task finished with|"
                            r"error sending frames to consumers|could not open encoder before eof|conversion failed)",
                            re.IGNORECASE)


class NoDrivingPoseError(ValueError):
    """No frame of the driving sequence has a face or person: there is nothing to follow."""


@dataclasses.dataclass
class AnimationResult:
    """What an animation did.

    Attributes:
        path: the written file (None when no output was asked for).
        frames: number of frames written (one per driving frame).
        missing_frames: driving frames without a face or person (the last pose was reused).
        fps: frames per second of the model alone (render calls).
        overall_fps: frames per second of the whole pipeline (detection, drawing, writing).
        video_fps: the frame rate of the output.
        images: the frames, uint8 `[H, W, 3]`, when `return_frames=True`.
        runtime: the TFLite runtime that ran a face model ("ai-edge-litert X.Y.Z" or
            "tf.lite (TF X.Y.Z)", `tfrf.export.tflite.runtime_name`); None for a Keras model.
    """

    path: Optional[str]
    frames: int
    missing_frames: int
    fps: float
    overall_fps: float
    video_fps: float
    images: Optional[List[np.ndarray]] = None
    runtime: Optional[str] = None

    @property
    def missing_faces(self) -> int:
        """Face animation's name for `missing_frames`."""
        return self.missing_frames


def ffmpeg_reason(message: str) -> str:
    """The meaningful line of ffmpeg's output (or of an imageio error quoting it): the system
    error it met (a full disk, ...) if any, else its last line that says more than that ffmpeg
    stopped, without the version banner, imageio's headings and the `[muxer @ 0x...]` prefixes."""
    lines = []
    for line in str(message).splitlines():
        line = re.sub(r"^(\[[^\]]*\]\s*)+", "", line.strip()).strip()
        if line and not _FFMPEG_BANNER.match(line):
            lines.append(line)
    for code in _SYSTEM_ERRORS:
        if any(os.strerror(code) in line for line in lines):
            return os.strerror(code)
    return lines[-1] if lines else "ffmpeg gave no reason"


def read_video(path: str) -> Tuple[Iterator[np.ndarray], int, float]:
    """(uint8 [H, W, 3] frames, frame count or 0 when unknown, fps) of a video (imageio-ffmpeg).

    Raises:
        ValueError: naming the video, with ffmpeg's reason, when it cannot be opened or a frame
            cannot be decoded (a truncated or foreign file).
    """
    try:
        import imageio.v2 as imageio
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("reading a driving video needs imageio and imageio-ffmpeg: pip install tfrf[video]") from error
    try:
        reader = imageio.get_reader(path)
        metadata = reader.get_meta_data()
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except Exception as error:
        raise ValueError(f"video {path} cannot be read: {ffmpeg_reason(str(error))}") from error
    fps = float(metadata.get("fps") or DEFAULT_FPS)
    try:
        count = reader.count_frames()
    except Exception:  # some containers cannot count without decoding
        count = 0

    def frames():
        index = 0
        try:
            iterator = iter(reader)
            while True:
                try:
                    frame = next(iterator)
                except StopIteration:
                    return
                except Exception as error:
                    raise ValueError(f"video {path}: frame {index} cannot be decoded: "
                                     f"{ffmpeg_reason(str(error))}") from error
                index += 1
                yield np.asarray(frame)[..., :3].astype(np.uint8)
        finally:
            reader.close()

    return frames(), count, fps


class VideoWriter:
    """Collects frames and writes a GIF (Pillow) or MP4 (H.264, the ffmpeg of imageio-ffmpeg)
    atomically: the file appears on `close`, and `discard` (or a failure) leaves nothing behind."""

    def __init__(self, path: str, fps: float):
        self.path, self.fps = path, fps
        suffix = os.path.splitext(path)[1].lower()
        if suffix not in OUTPUT_SUFFIXES:
            raise ValueError(f"output {path} must end with one of {OUTPUT_SUFFIXES}")
        self._ffmpeg = None
        if suffix == ".mp4":
            try:
                import imageio_ffmpeg
            except ImportError as error:  # pragma: no cover - depends on the environment
                raise ImportError("writing MP4 needs imageio and imageio-ffmpeg: pip install tfrf[video]; "
                                  "or write a .gif") from error
            self._ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        handle, self.temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=suffix)
        os.close(handle)
        self.frames: List[np.ndarray] = []
        self._process: Optional[subprocess.Popen] = None
        self._log = None
        self._shape = None

    def _start(self, shape) -> None:
        height, width = shape[:2]
        rate = Fraction(self.fps).limit_denominator()
        command = [self._ffmpeg, "-y", "-f", "rawvideo", "-vcodec", "rawvideo", "-s", f"{width}x{height}",
                   "-pix_fmt", "rgb24", "-r", str(rate), "-i", "-", "-an", "-vcodec", "libx264",
                   "-pix_fmt", "yuv420p", "-crf", str(MP4_CRF), "-v", "error", self.temporary]
        self._log = tempfile.TemporaryFile()
        # Its own session: a Ctrl-C reaches Python, which then stops ffmpeg (`discard`).
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                         stderr=self._log, start_new_session=True)
        self._shape = tuple(shape)

    def _failure(self) -> OSError:
        """The OSError of a failed ffmpeg, once it has exited, with its reason (`ffmpeg_reason`)."""
        try:
            self._process.stdin.close()
        except OSError:
            pass
        self._process.wait()
        self._log.seek(0)
        reason = ffmpeg_reason(self._log.read().decode("utf-8", "replace"))
        for code in _SYSTEM_ERRORS:
            if reason == os.strerror(code):
                return OSError(code, reason, self.path)
        return OSError(f"cannot write {self.path}: {reason} (ffmpeg exit status {self._process.returncode})")

    def append(self, frame: np.ndarray) -> None:
        if self._ffmpeg is None:
            self.frames.append(frame)
            return
        frame = np.ascontiguousarray(frame, dtype=np.uint8)
        if frame.ndim != 3 or frame.shape[-1] != 3:
            raise ValueError(f"video frames must be uint8 [H, W, 3], got {frame.shape}")
        if self._process is None:
            self._start(frame.shape)
        elif frame.shape != self._shape:
            raise ValueError(f"video frames must share one size: {frame.shape} after {self._shape}")
        try:
            self._process.stdin.write(frame.tobytes())
        except OSError:  # ffmpeg stopped (a full disk, ...)
            raise self._failure() from None

    def close(self) -> None:
        try:
            if self._ffmpeg is None:
                from PIL import Image

                if not self.frames:
                    raise ValueError(f"no frames to write to {self.path}")
                images = [Image.fromarray(frame) for frame in self.frames]
                try:
                    images[0].save(self.temporary, format="GIF", save_all=True, append_images=images[1:],
                                   duration=max(1, int(round(1000.0 / self.fps))), loop=0)
                except OSError as error:
                    raise naming_target(error, self.path) from error
            else:
                if self._process is None:
                    raise ValueError(f"no frames to write to {self.path}")
                try:
                    self._process.stdin.close()
                except OSError:
                    pass
                if self._process.wait() != 0:
                    raise self._failure()
                self._process = None
            publish_file(self.temporary, self.path)
        finally:
            self.discard()

    def discard(self) -> None:
        """Stops writing and removes the unfinished file."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()
            try:
                self._process.stdin.close()
            except OSError:
                pass
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if os.path.exists(self.temporary):
            os.remove(self.temporary)


@contextlib.contextmanager
def video_output(path: Optional[str], fps: float) -> Iterator[Optional["VideoWriter"]]:
    """A `VideoWriter` for `path` (None when `path` is None): the file is written when the block
    ends normally, and nothing is left behind when it raises."""
    writer = VideoWriter(path, fps) if path is not None else None
    try:
        yield writer
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    if writer is not None:
        writer.close()


def run_animation(targets: Iterable[Optional[Target]], render: Callable[[Target], np.ndarray], first: Target, *,
                  total: Optional[int] = None, out: Optional[str] = None, fps: float = DEFAULT_FPS,
                  progress: bool = True, return_frames: bool = False, description: str = "animate",
                  driving_name: str = "driving", subject: str = "face or person") -> AnimationResult:
    """The per-frame loop shared by face and person animation: one rendered frame per target.

    Args:
        targets: the target pose of each driving frame (crop landmarks, keypoints, ...), None
            for a frame without a face or person: it reuses the last target and is counted.
        render: target -> uint8 [H, W, 3] frame (the model call).
        first: the target a leading None reuses (the first source's pose).
        total: the number of targets, if known (for the progress bar).
        out: a .gif or .mp4 to write; None writes nothing.
        fps: the output frame rate.
        progress: show a tqdm progress bar.
        return_frames: keep the frames in the result.
        description: the progress bar's label.
        driving_name: names the driving input in the errors for an empty sequence or one
            without any `subject`.
        subject: what a driving frame must show ("face", "person"), for that error.

    Returns:
        AnimationResult; `fps` times `render` alone, `overall_fps` the whole loop including
        whatever producing the targets costs (detection).

    Raises:
        NoDrivingPoseError: when every target is None (no frame is rendered, nothing written).
    """
    from tqdm import tqdm

    images: List[np.ndarray] = []
    last, missing, render_seconds, renders, written = first, 0, 0.0, 0, 0
    leading = 0  # driving frames before the first with a pose: rendered once one is found

    def emit(frame: np.ndarray, times: int = 1) -> None:
        nonlocal written
        for _ in range(times):
            written += 1
            if writer is not None:
                writer.append(frame)
            if return_frames:
                images.append(frame)

    def timed_render(target) -> np.ndarray:
        nonlocal render_seconds, renders
        began = time.perf_counter()
        frame = render(target)
        render_seconds += time.perf_counter() - began
        renders += 1
        return frame

    start = time.perf_counter()
    with video_output(out, fps) as writer:
        for index, target in enumerate(tqdm(targets, total=total or None, unit="frame", disable=not progress,
                                            desc=description)):
            if target is None:
                missing += 1
                if index == leading:
                    leading += 1
                    continue
                target = last
            else:
                if leading and index == leading:
                    emit(timed_render(first), leading)
                last = target
            emit(timed_render(target))
        if leading == 0 and written == 0:
            raise ValueError(f"{driving_name} has no frames")
        if written == 0:
            raise NoDrivingPoseError(f"{driving_name}: none of its {leading} frames has a {subject} "
                                     "(nothing to follow, nothing written)")
    seconds = time.perf_counter() - start
    return AnimationResult(
        path=out,
        frames=written,
        missing_frames=missing,
        fps=renders / max(render_seconds, 1e-9),
        overall_fps=written / max(seconds, 1e-9),
        video_fps=fps,
        images=images if return_frames else None,
    )
