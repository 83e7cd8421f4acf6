"""Keypoints and face landmarks drawn over the photo or frame they came from, to check them by eye.

    seen = draw_keypoints(photo, keypoints)     # OpenPose-18 (y, x): limbs and points
    seen = draw_face(photo, landmarks)          # iBUG-68 (x, y): the parts' lines and points

Body keypoints are coloured by side, the person's own: `SIDE_COLOURS` (right orange, left blue,
the middle of the body green), so swapped sides show at a glance. Limbs are
`tfrf.pose.keypoints.LIMBS`; a limb takes its side from its ends (the neck-to-nose line is the
middle). Face parts keep `tfrf.pose.face.PART_COLORS`. Limbs and points have a black rim so
that they show on any photo; line widths grow with the image.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from tfrf.pose import face
from tfrf.pose import keypoints as keypoints_lib

SIDE_COLOURS = {"right": (255, 128, 0), "left": (0, 128, 255), "middle": (0, 220, 0)}
RIM = (0, 0, 0)


def side(index: int) -> str:
    """"right", "left" or "middle" of OpenPose-18 keypoint `index`."""
    name = keypoints_lib.KEYPOINT_NAMES[index]
    return "right" if name.startswith("right_") else "left" if name.startswith("left_") else "middle"


def _limb_side(start: int, end: int) -> str:
    sides = {side(start), side(end)} - {"middle"}
    return sides.pop() if len(sides) == 1 else "middle"


def line_width(height: int, width: int) -> int:
    """Pixels of a drawn line: 2 at 256 px (the short side), at least 1."""
    return max(1, int(round(min(height, width) / 128)))


def _canvas(image: np.ndarray):
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(np.ascontiguousarray(np.asarray(image, dtype=np.uint8)))
    return canvas, ImageDraw.Draw(canvas)


def _dot(draw, x: float, y: float, radius: float, colour) -> None:
    draw.ellipse([x - radius - 1, y - radius - 1, x + radius + 1, y + radius + 1], fill=RIM)
    draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour)


def draw_keypoints(image: np.ndarray, keypoints: Optional[np.ndarray]) -> np.ndarray:
    """uint8 [H, W, 3] `image` with its OpenPose-18 keypoints ([18, 2] (y, x) in its pixels, -1
    missing) drawn over it; None (nobody found) leaves the image as it is."""
    canvas, draw = _canvas(image)
    if keypoints is None:
        return np.asarray(canvas)
    keypoints = np.asarray(keypoints, dtype=np.float32)
    if keypoints.shape != (keypoints_lib.NUM_KEYPOINTS, 2):
        raise ValueError(f"keypoints must have shape [18, 2] (y, x), got {keypoints.shape}")
    width = line_width(canvas.height, canvas.width)
    visible = keypoints_lib.present(keypoints)
    limbs = [(start, end) for start, end in keypoints_lib.LIMBS if visible[start] and visible[end]]
    for rim, (start, end) in [(True, limb) for limb in limbs] + [(False, limb) for limb in limbs]:
        (y0, x0), (y1, x1) = keypoints[start], keypoints[end]
        draw.line([(x0, y0), (x1, y1)], fill=RIM if rim else SIDE_COLOURS[_limb_side(start, end)],
                  width=width + 2 if rim else width)
    for index in np.flatnonzero(visible):
        y, x = keypoints[index]
        _dot(draw, x, y, width + 1, SIDE_COLOURS[side(index)])
    return np.asarray(canvas)


def draw_face(image: np.ndarray, landmarks: Optional[np.ndarray]) -> np.ndarray:
    """uint8 [H, W, 3] `image` with 68 face landmarks ([68, 2] (x, y) in its pixels) drawn over
    it, each part in its colour; None (no face found) leaves the image as it is."""
    canvas, draw = _canvas(image)
    if landmarks is None:
        return np.asarray(canvas)
    landmarks = face.check_landmarks(landmarks)
    width = line_width(canvas.height, canvas.width)
    for part, indices in face.part_polylines():
        draw.line([tuple(point) for point in landmarks[indices].tolist()], fill=face.PART_COLORS[part], width=width)
    for part, indices in face.part_polylines():
        for x, y in landmarks[indices].tolist():
            _dot(draw, x, y, max(1, width // 2), face.PART_COLORS[part])
    return np.asarray(canvas)
