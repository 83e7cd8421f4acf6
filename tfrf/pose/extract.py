"""Poses and face landmarks of one's own photos, videos and folders of frames, written as the files
`tfrf generate` and `tfrf animate` take (docs/pose_formats.md), with an overlay to check them.

    extract("me.jpg", "me.json")                             # pose JSON: --target-pose, --source-poses
    extract("dance.mp4", "dance.json", overlay="seen.mp4")   # driving poses JSON: --driving
    extract("me.jpg", "me.npy", face=True)                   # [68, 2] (x, y): --source-landmarks
    extract("frames/", "talk.npy", face=True)                # [T, 68, 2], NaN without a face: --driving

Body keypoints come from MediaPipe pose (`tfrf.pose.keypoint_detection`, `threshold` the landmark
visibility a keypoint needs), face landmarks from MediaPipe face mesh (`tfrf.pose.face`): a photo
in static mode, exactly as `tfrf generate` / `tfrf animate` detect a photo, a sequence (a video or
a folder of frames, `tfrf.pose.frames`) in tracking mode, exactly as `tfrf animate --driving`
detects a video or folder, so the file gives the same animation as the sequence itself. A frame
without a person is a null frame, one without a face a frame of NaNs; a photo without one is an
error naming it. The overlay (`tfrf.pose.overlay`) is a PNG/JPEG for a photo, an MP4/GIF
(`tfrf.animation.video.VideoWriter`) with every frame for a sequence (the video's fps, else 25).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Optional

import numpy as np

from tfrf.animation.face import NoFaceError
from tfrf.animation.person import save_driving_poses
from tfrf.animation.video import DEFAULT_FPS, OUTPUT_SUFFIXES, video_output
from tfrf.io import atomic_save_image, atomic_write
from tfrf.photos import read_photo
from tfrf.pose import face as face_lib
from tfrf.pose import keypoint_detection
from tfrf.pose import overlay as overlay_lib
from tfrf.pose.frames import is_sequence, read_frames
from tfrf.pose.keypoints import NoPersonFoundError, present, save_pose_json

PHOTO_OVERLAYS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


@dataclasses.dataclass
class ExtractResult:
    """What `extract` wrote.

    Attributes:
        out, overlay: the files written (overlay None when not asked for).
        sequence: True for a video or folder, False for a photo.
        frames: frames read (1 for a photo).
        missing: frames without a person (or face).
        found: keypoints (of 18) or landmarks (68) found in a photo; frames with one in a sequence.
        height, width: the photo's or frames' size.
        fps: the video's frame rate (None for a photo or folder).
    """

    out: str
    overlay: Optional[str]
    sequence: bool
    frames: int
    missing: int
    found: int
    height: int
    width: int
    fps: Optional[float] = None


def check_outputs(path: str, out: str, overlay: Optional[str], face: bool) -> bool:
    """Whether `path` is a sequence; a ValueError naming `out` or `overlay` when its suffix
    does not fit (.npy with `face`, else .json; an image overlay for a photo, a video one for a
    sequence), a FileNotFoundError naming a missing `path`."""
    wanted = ".npy" if face else ".json"
    if not out.lower().endswith(wanted):
        why = "face landmarks are a .npy" if face else "body keypoints are a .json; --face writes a .npy"
        raise ValueError(f"output {out} must end in {wanted}: {why}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist")
    sequence = is_sequence(path)
    suffixes = OUTPUT_SUFFIXES if sequence else tuple(PHOTO_OVERLAYS)
    if overlay is not None and not overlay.lower().endswith(suffixes):
        what = "a video or folder" if sequence else "a photo"
        raise ValueError(f"overlay {overlay} must end in {' or '.join(suffixes)} for {what} ({path})")
    return sequence


def extract(path: str, out: str, overlay: Optional[str] = None, face: bool = False,
            threshold: float = keypoint_detection.DEFAULT_THRESHOLD,
            confidence: float = keypoint_detection.DEFAULT_DETECTION_CONFIDENCE) -> ExtractResult:
    """Detects the body keypoints (or, with `face`, the 68 face landmarks) of a photo, a video
    or a folder of frames and writes them to `out` (and their drawing to `overlay`).

    Raises:
        NoPersonFoundError / NoFaceError: naming a photo without a person / face.
        FileNotFoundError / ValueError: naming a missing or unreadable input, or an output whose
            suffix does not fit (`check_outputs`).
        ImportError: mediapipe (or, for videos, imageio-ffmpeg) is not installed.
    """
    path, out = os.fspath(path), os.fspath(out)
    if check_outputs(path, out, overlay, face):
        return _extract_sequence(path, out, overlay, face, threshold, confidence)
    image = read_photo(path)
    if face:
        with face_lib.MediaPipeFaceLandmarker(static_image_mode=True) as landmarker:
            points = landmarker(image)
        if points is None:
            raise NoFaceError(f"{path}: no face found in the photo")
        atomic_write(out, lambda stream: np.save(stream, points.astype(np.float32)))
        found, drawn = face_lib.NUM_LANDMARKS, overlay_lib.draw_face(image, points) if overlay else None
    else:
        try:
            points = keypoint_detection.extract_keypoints(image, threshold, min_detection_confidence=confidence)
        except NoPersonFoundError as error:
            raise NoPersonFoundError(f"{path}: {error}") from None
        save_pose_json(out, points, image.shape[:2])
        found, drawn = int(present(points).sum()), overlay_lib.draw_keypoints(image, points) if overlay else None
    if overlay:
        atomic_save_image(overlay, drawn, PHOTO_OVERLAYS[os.path.splitext(overlay)[1].lower()])
    return ExtractResult(out, overlay, False, 1, 0, found, *image.shape[:2])


def _extract_sequence(path: str, out: str, overlay: Optional[str], face: bool, threshold: float,
                      confidence: float) -> ExtractResult:
    frames, _, fps = read_frames(path)
    draw = overlay_lib.draw_face if face else overlay_lib.draw_keypoints
    found, size = [], None
    with video_output(overlay or None, fps or DEFAULT_FPS) as writer:
        detector = (face_lib.MediaPipeFaceLandmarker(static_image_mode=False) if face
                    else keypoint_detection.PoseDetector(threshold, confidence, static_image_mode=False))
        with detector:
            for frame in frames:
                size = frame.shape[:2]
                found.append(detector(frame))
                if writer is not None:
                    writer.append(draw(frame, found[-1]))
        if not found:
            raise ValueError(f"{path} has no frames")
        if face:
            missing = np.full((face_lib.NUM_LANDMARKS, 2), np.nan, np.float32)
            array = np.stack([missing if points is None else points.astype(np.float32) for points in found])
            atomic_write(out, lambda stream: np.save(stream, array))
        else:
            save_driving_poses(out, found, *size, fps=fps)
    missing_count = sum(points is None for points in found)
    return ExtractResult(out, overlay, True, len(found), missing_count, len(found) - missing_count, *size, fps=fps)

