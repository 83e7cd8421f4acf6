"""The per-frame loop of every animation and its video files: one rendered frame per driving frame.

`run_animation` drives a renderer (face or person) over the target of each driving frame, with a
progress bar and timing; a driving frame without a face or person reuses the last target and is
counted. `VideoWriter` writes MP4 (imageio-ffmpeg), which holds every frame, or GIF (Pillow),
which stores identical consecutive frames once with their durations added, so it plays every
frame for its time; the file appears only when complete. `read_video` reads a driving video.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from typing import Callable, Iterable, Iterator, List, Optional, Tuple, TypeVar

import numpy as np

Target = TypeVar("Target")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
OUTPUT_SUFFIXES = (".gif", ".mp4")
DEFAULT_FPS = 25.0


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


def read_video(path: str) -> Tuple[Iterator[np.ndarray], int, float]:
    """(uint8 [H, W, 3] frames, frame count or 0 when unknown, fps) of a video (imageio-ffmpeg)."""
    try:
        import imageio.v2 as imageio
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("reading a driving video needs imageio and imageio-ffmpeg: pip install tfrf[video]") from error
    reader = imageio.get_reader(path)
    metadata = reader.get_meta_data()
    fps = float(metadata.get("fps") or DEFAULT_FPS)
    try:
        count = reader.count_frames()
    except Exception:  # some containers cannot count without decoding
        count = 0

    def frames():
        try:
            for frame in reader:
                yield np.asarray(frame)[..., :3].astype(np.uint8)
        finally:
            reader.close()

    return frames(), count, fps


class VideoWriter:
    """Collects frames and writes a GIF (Pillow) or MP4 (imageio-ffmpeg) atomically: the file
    appears on `close`, and `discard` leaves nothing behind."""

    def __init__(self, path: str, fps: float):
        self.path, self.fps = path, fps
        suffix = os.path.splitext(path)[1].lower()
        if suffix not in OUTPUT_SUFFIXES:
            raise ValueError(f"output {path} must end with one of {OUTPUT_SUFFIXES}")
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        handle, self.temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=suffix)
        os.close(handle)
        self.frames: List[np.ndarray] = []
        self._video = None
        if suffix == ".mp4":
            try:
                import imageio.v2 as imageio
            except ImportError as error:  # pragma: no cover - depends on the environment
                os.remove(self.temporary)
                raise ImportError("writing MP4 needs imageio and imageio-ffmpeg: pip install tfrf[video]; "
                                  "or write a .gif") from error
            self._video = imageio.get_writer(self.temporary, fps=fps, codec="libx264", quality=8,
                                             macro_block_size=1, format="FFMPEG")

    def append(self, frame: np.ndarray) -> None:
        if self._video is not None:
            self._video.append_data(frame)
        else:
            self.frames.append(frame)

    def close(self) -> None:
        try:
            if self._video is not None:
                self._video.close()
                self._video = None
            else:
                from PIL import Image

                images = [Image.fromarray(frame) for frame in self.frames]
                images[0].save(self.temporary, format="GIF", save_all=True, append_images=images[1:],
                               duration=max(1, int(round(1000.0 / self.fps))), loop=0)
            os.replace(self.temporary, self.path)
        finally:
            self.discard()

    def discard(self) -> None:
        """Stops writing and removes the unfinished file."""
        if self._video is not None:
            try:
                self._video.close()
            except Exception:  # the partial file goes anyway
                pass
            self._video = None
        if os.path.exists(self.temporary):
            os.remove(self.temporary)


def run_animation(targets: Iterable[Optional[Target]], render: Callable[[Target], np.ndarray], first: Target, *,
                  total: Optional[int] = None, out: Optional[str] = None, fps: float = DEFAULT_FPS,
                  progress: bool = True, return_frames: bool = False, description: str = "animate",
                  driving_name: str = "driving") -> AnimationResult:
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
        driving_name: names the driving input in the error for an empty sequence.

    Returns:
        AnimationResult; `fps` times `render` alone, `overall_fps` the whole loop including
        whatever producing the targets costs (detection).
    """
    from tqdm import tqdm

    writer = VideoWriter(out, fps) if out is not None else None
    images: List[np.ndarray] = []
    last, missing, render_seconds, written = first, 0, 0.0, 0
    start = time.perf_counter()
    try:
        for target in tqdm(targets, total=total or None, unit="frame", disable=not progress, desc=description):
            if target is None:
                missing += 1
                target = last
            else:
                last = target
            began = time.perf_counter()
            frame = render(target)
            render_seconds += time.perf_counter() - began
            written += 1
            if writer is not None:
                writer.append(frame)
            if return_frames:
                images.append(frame)
        if written == 0:
            raise ValueError(f"{driving_name} has no frames")
        if writer is not None:
            writer.close()
            writer = None
    finally:
        if writer is not None:
            writer.discard()
    seconds = time.perf_counter() - start
    return AnimationResult(
        path=out,
        frames=written,
        missing_frames=missing,
        fps=written / max(render_seconds, 1e-9),
        overall_fps=written / max(seconds, 1e-9),
        video_fps=fps,
        images=images if return_frames else None,
    )
