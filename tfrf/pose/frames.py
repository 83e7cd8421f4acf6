"""The frames of a driving sequence: a video, or a folder of frames in name order.

    frames, count, fps = read_frames("dance.mp4")        # or read_frames("dance_frames/")

A folder's frames are its image files (`IMAGE_SUFFIXES`, hidden files skipped, other files
ignored), sorted by name with numbers compared as numbers (`frame2.png` before `frame10.png`),
each read upright with `tfrf.photos.read_photo`; every frame must have the first frame's size,
as a video's do. A video is read with `tfrf.animation.video.read_video` (imageio-ffmpeg).
"""
from __future__ import annotations

import os
import re
from typing import Iterator, List, Optional, Tuple

import numpy as np

from tfrf.animation.video import VIDEO_SUFFIXES, read_video
from tfrf.photos import read_photo

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def is_video(path: str) -> bool:
    return os.fspath(path).lower().endswith(VIDEO_SUFFIXES)


def is_sequence(path: str) -> bool:
    """True for a folder or a video (by its suffix), False for anything else (a photo)."""
    return os.path.isdir(path) or is_video(path)


def _name_order(name: str):
    parts = re.split(r"(\d+)", name.lower())
    return [int(part) if index % 2 else part for index, part in enumerate(parts)], name


def frame_paths(folder: str) -> List[str]:
    """The image files of `folder` in frame order.

    Raises:
        FileNotFoundError: no such folder.
        ValueError: naming the folder when it holds no image file.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"folder {folder} does not exist")
    names = [name for name in os.listdir(folder) if not name.startswith(".")
             and name.lower().endswith(IMAGE_SUFFIXES) and os.path.isfile(os.path.join(folder, name))]
    if not names:
        raise ValueError(f"folder {folder} holds no frames (image files ending in {', '.join(IMAGE_SUFFIXES)})")
    return [os.path.join(folder, name) for name in sorted(names, key=_name_order)]


def read_folder(folder: str) -> Tuple[Iterator[np.ndarray], int]:
    """(uint8 [H, W, 3] frames, their count) of a folder of frames, read one at a time.

    Raises:
        ValueError: naming the frame whose size differs from the first frame's (when reached).
    """
    paths = frame_paths(folder)

    def frames() -> Iterator[np.ndarray]:
        first = None
        for path in paths:
            frame = read_photo(path)
            first = first or (path, frame.shape[:2])
            if frame.shape[:2] != first[1]:
                raise ValueError(f"frame {path} is {frame.shape[1]}x{frame.shape[0]}, but the folder's first frame "
                                 f"{first[0]} is {first[1][1]}x{first[1][0]} (w x h): frames must share one size")
            yield frame

    return frames(), len(paths)


def read_frames(path: str) -> Tuple[Iterator[np.ndarray], int, Optional[float]]:
    """(uint8 [H, W, 3] frames, count (0 if unknown), fps or None for a folder) of a folder of
    frames or a video.

    Raises:
        FileNotFoundError: naming a video or folder that does not exist.
        ValueError: naming `path` when it is neither a folder nor a video (`VIDEO_SUFFIXES`).
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        frames, count = read_folder(path)
        return frames, count, None
    if not is_video(path):
        raise ValueError(f"{path} is neither a folder of frames nor a video {VIDEO_SUFFIXES}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"video {path} does not exist")
    return read_video(path)
