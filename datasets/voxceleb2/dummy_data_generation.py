"""Writes tiny VoxCeleb2-layout clips with precomputed landmarks (for tests and demos).

Each frame is grey with the face's landmark box filled in a skin colour and the landmark
drawing on top; the face drifts a little from frame to frame. Needs imageio + imageio-ffmpeg.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

from tfrf.pose import face

BACKGROUND = (128, 128, 128)
SKIN = (200, 60, 60)


def face_frames(num_frames: int, height: int = 64, width: int = 64, seed: int = 0):
    """(uint8 [T, H, W, 3] frames, float32 [T, 68, 2] landmarks) of a drifting synthetic face."""
    rng = np.random.default_rng(seed)
    template = face.template_landmarks(height // 2, width // 2)
    frames, landmarks = [], []
    for _ in range(num_frames):
        points = template + [width / 4, height / 4] + rng.uniform(-3, 3, size=2)
        frame = np.empty((height, width, 3), np.uint8)
        frame[:] = BACKGROUND
        (x0, y0), (x1, y1) = np.floor(points.min(0)).astype(int), np.ceil(points.max(0)).astype(int)
        frame[y0:y1 + 1, x0:x1 + 1] = SKIN
        drawing = face.draw_landmarks(points, height, width)
        drawn = drawing.any(-1)
        frame[drawn] = drawing[drawn]
        frames.append(frame)
        landmarks.append(points)
    return np.stack(frames), np.stack(landmarks).astype(np.float32)


def write_mp4(path: str, frames: np.ndarray, fps: int = 25) -> None:
    """Writes frames as an H.264 mp4 (through a temporary file and a rename)."""
    import imageio.v2 as imageio

    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = path + ".tmp.mp4"
    with imageio.get_writer(temporary, format="ffmpeg", fps=fps, codec="libx264", macro_block_size=16) as writer:
        for frame in frames:
            writer.append_data(frame)
    os.replace(temporary, path)


def write_clip(root: str, split_folder: str, identity: str, video: str, clip: str, num_frames: int,
               no_face_frames: Sequence[int] = (), seed: int = 0, landmarks: Optional[bool] = True) -> str:
    """Writes `<root>/<split_folder>/<identity>/<video>/<clip>.mp4` and, with `landmarks`, its
    `.npy` (NaN rows for `no_face_frames`). Returns the mp4 path."""
    frames, points = face_frames(num_frames, seed=seed)
    path = os.path.join(root, split_folder, identity, video, clip + ".mp4")
    write_mp4(path, frames)
    if landmarks:
        points[list(no_face_frames)] = np.nan
        np.save(os.path.splitext(path)[0] + ".npy", points)
    return path


def write_corrupt_clip(root: str, split_folder: str, identity: str, video: str, clip: str, seed: int = 0) -> str:
    """Writes bytes that no decoder reads as a video, with a plausible landmark file beside."""
    path = os.path.join(root, split_folder, identity, video, clip + ".mp4")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as stream:
        stream.write(b"\x00\x00\x00\x18ftypmp42" + np.random.default_rng(seed).bytes(2048))
    np.save(os.path.splitext(path)[0] + ".npy", np.zeros((10, 68, 2), np.float32))
    return path
