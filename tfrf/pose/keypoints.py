"""OpenPose-18 keypoints: CSV annotations, image-to-image geometry, Gaussian heatmaps, drawings.

A raw keypoint pose is float [18, 2] of (y, x) pixel coordinates in its image, in the CMU
OpenPose COCO-18 order of the published annotation CSVs (`KEYPOINT_NAMES`: ..., 14 right eye,
15 left eye, 16 right ear, 17 left ear; left and right are the person's own), with -1 for a
missing point. Its pose map is 18 Gaussian heatmaps exp(-d^2 / 2 sigma^2), sigma = 6 px at
256-px height scaled with the height, a missing point giving an all-zero channel.

The annotation files of the pose-transfer literature (`fasion-annotation-*.csv`,
`market-annotation-*.csv`) have a header `name:keypoints_y:keypoints_x` and rows
`name: [18 ints]: [18 ints]`, `:`-separated.

Keypoints for a user's own photo come from MediaPipe pose (`tfrf.pose.keypoint_detection`,
optional dependency `mediapipe==0.10.14`, also reachable as `tfrf.pose.extract_keypoints`). Its
`NoPersonFoundError` is defined here, so that callers catch it without importing detection.
"""
from __future__ import annotations

import json
import os
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from tfrf.io import atomic_write_text

KEYPOINT_NAMES = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)
NUM_KEYPOINTS = len(KEYPOINT_NAMES)
MISSING = -1
CSV_HEADER = "name:keypoints_y:keypoints_x"
SIGMA_AT_256 = 6.0

# Limbs drawn by `draw_skeleton` (OpenPose's, without the shoulder-ear links), one colour each in
# OpenPose's order: ..., (0, 14) nose-right eye, (14, 16) right eye-right ear, (0, 15) nose-left
# eye, (15, 17) left eye-left ear. Joint i is drawn in COLOURS[i].
LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12),
    (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)
COLOURS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)


class NoPersonFoundError(ValueError):
    """MediaPipe found no person (or neither a shoulder nor a hip) in the image."""


def present(keypoints) -> np.ndarray:
    """bool [..., 18]: which keypoints are not missing (both coordinates >= 0)."""
    keypoints = np.asarray(keypoints)
    return (keypoints[..., 0] >= 0) & (keypoints[..., 1] >= 0)


def _check_keypoints(keypoints, what: str = "keypoints") -> np.ndarray:
    keypoints = np.asarray(keypoints, dtype=np.float32)
    if keypoints.shape[-2:] != (NUM_KEYPOINTS, 2):
        raise ValueError(f"{what} must have shape [..., {NUM_KEYPOINTS}, 2] of (y, x), got {keypoints.shape}")
    return keypoints


# --- CSV annotations ------------------------------------------------------------------------

def _parse_coordinates(text: str, where: str, axis: str) -> np.ndarray:
    try:
        values = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{where}: keypoints_{axis} is not a JSON list ({error.msg}): {text.strip()[:60]!r}") from None
    if (not isinstance(values, list) or len(values) != NUM_KEYPOINTS
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in values)):
        raise ValueError(f"{where}: keypoints_{axis} must be a list of {NUM_KEYPOINTS} integers, got {text.strip()[:80]!r}")
    return np.asarray(values, dtype=np.float32)


def read_keypoint_csv(path: str) -> Dict[str, np.ndarray]:
    """Reads a `name:keypoints_y:keypoints_x` annotation file.

    Args:
        path: the CSV file.

    Returns:
        An insertion-ordered dict: image name -> float32 [18, 2] (y, x), -1 where missing.

    Raises:
        ValueError naming the file and line of a malformed row, a bad header or a repeated name.
    """
    path = os.fspath(path)
    annotations: Dict[str, np.ndarray] = {}
    with open(path, encoding="utf-8") as stream:
        header = stream.readline().strip()
        if header.replace(" ", "") != CSV_HEADER:
            raise ValueError(f"{path}:1: expected the header {CSV_HEADER!r}, got {header[:80]!r}")
        for line_number, line in enumerate(stream, start=2):
            if not line.strip():
                continue
            where = f"{path}:{line_number}"
            fields = line.rstrip("\r\n").split(":")
            if len(fields) != 3:
                raise ValueError(f"{where}: expected 3 ':'-separated fields (name, keypoints_y, keypoints_x), got {len(fields)}")
            name = fields[0].strip()
            if not name:
                raise ValueError(f"{where}: empty image name")
            if name in annotations:
                raise ValueError(f"{where}: image {name!r} is annotated twice")
            ys = _parse_coordinates(fields[1], where, "y")
            xs = _parse_coordinates(fields[2], where, "x")
            keypoints = np.stack([ys, xs], axis=-1)
            keypoints[~present(keypoints)] = MISSING
            annotations[name] = keypoints
    return annotations


def write_keypoint_csv(path: str, annotations: Mapping[str, np.ndarray]) -> None:
    """Writes annotations in the `read_keypoint_csv` format, atomically (coordinates rounded)."""
    path = os.fspath(path)
    lines = [CSV_HEADER]
    for name, keypoints in annotations.items():
        keypoints = _check_keypoints(keypoints, f"keypoints of {name!r}")
        rounded = np.where(present(keypoints)[:, None], np.rint(keypoints), MISSING).astype(int)
        lines.append(f"{name}: {json.dumps(rounded[:, 0].tolist())}: {json.dumps(rounded[:, 1].tolist())}")
    atomic_write_text(path, "\n".join(lines) + "\n")


def save_pose_json(path: str, keypoints, image_size: Sequence[int]) -> None:
    """Writes one pose as JSON, atomically: {"keypoints": [[y, x] x 18], "image_size": [h, w]},
    coordinates in pixels of an image of `image_size`, -1 where missing."""
    keypoints = _check_keypoints(keypoints)
    if keypoints.ndim != 2:
        raise ValueError(f"save_pose_json writes one pose [18, 2], got {keypoints.shape}")
    # Full precision: a pose read back draws exactly the heatmaps of the pose written.
    content = {"keypoints": np.asarray(keypoints, np.float64).tolist(), "image_size": [int(v) for v in image_size]}
    atomic_write_text(os.fspath(path), json.dumps(content))


def load_pose_json(path: str) -> Tuple[np.ndarray, Tuple[int, int]]:
    """Reads a `save_pose_json` file: (float32 [18, 2] (y, x), (h, w) of its image)."""
    path = os.fspath(path)
    with open(path, encoding="utf-8") as stream:
        try:
            content = json.load(stream)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not JSON ({error.msg})") from None
    if not isinstance(content, dict) or "keypoints" not in content or "image_size" not in content:
        raise ValueError(f'{path}: expected {{"keypoints": [[y, x] x 18], "image_size": [h, w]}}')
    keypoints = np.asarray(content["keypoints"], dtype=np.float32)
    if keypoints.shape != (NUM_KEYPOINTS, 2):
        raise ValueError(f"{path}: keypoints must be {NUM_KEYPOINTS} [y, x] pairs, got shape {keypoints.shape}")
    image_size = tuple(int(v) for v in content["image_size"])
    if len(image_size) != 2 or min(image_size) <= 0:
        raise ValueError(f"{path}: image_size must be [h, w] > 0, got {content['image_size']}")
    keypoints[~present(keypoints)] = MISSING
    return keypoints, image_size


# --- geometry between image sizes -------------------------------------------------------------

def fit_transform(from_size: Sequence[int], to_size: Sequence[int], mode: str = "pad") -> Tuple[float, float, float, float]:
    """The (scale_y, scale_x, offset_y, offset_x) mapping an image of `from_size` (h, w) into
    `to_size`: "stretch" scales each axis; "pad" scales uniformly to fit and centres (the
    border is padding)."""
    from_height, from_width = (float(v) for v in from_size)
    to_height, to_width = (float(v) for v in to_size)
    if min(from_height, from_width, to_height, to_width) <= 0:
        raise ValueError(f"image sizes must be positive, got {tuple(from_size)} -> {tuple(to_size)}")
    if mode == "stretch":
        return to_height / from_height, to_width / from_width, 0.0, 0.0
    if mode == "pad":
        scale = min(to_height / from_height, to_width / from_width)
        return scale, scale, (to_height - scale * from_height) / 2.0, (to_width - scale * from_width) / 2.0
    raise ValueError(f"fit mode must be 'pad' or 'stretch', got {mode!r}")


def transform_keypoints(keypoints, transform: Sequence[float]) -> np.ndarray:
    """Applies a `fit_transform` to (y, x) keypoints (pixel centres); missing points stay -1."""
    keypoints = _check_keypoints(keypoints)
    scale_y, scale_x, offset_y, offset_x = transform
    moved = np.stack(
        [(keypoints[..., 0] + 0.5) * scale_y - 0.5 + offset_y, (keypoints[..., 1] + 0.5) * scale_x - 0.5 + offset_x],
        axis=-1,
    )
    # A pixel centre can land a fraction below 0 (e.g. pixel 0 when downscaling); negative
    # means missing here, so it is kept on the border.
    return np.where(present(keypoints)[..., None], np.maximum(moved, 0.0), MISSING).astype(np.float32)


def rescale_keypoints(keypoints, from_size: Sequence[int], to_size: Sequence[int], mode: str = "stretch") -> np.ndarray:
    """Keypoints of an image of `from_size` (h, w), moved into the image fitted to `to_size`."""
    return transform_keypoints(keypoints, fit_transform(from_size, to_size, mode))


def fit_image(image, size: Sequence[int], mode: str = "pad", fill: int = 255):
    """Resizes uint8 [h, w, 3] `image` to `size` (H, W) as `fit_transform` does.

    Returns:
        (uint8 [H, W, 3], transform) — pass the transform to `transform_keypoints`.
    """
    from PIL import Image

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must have shape [h, w, 3], got {image.shape}")
    height, width = (int(v) for v in size)
    transform = fit_transform(image.shape[:2], (height, width), mode)
    scale_y, scale_x, offset_y, offset_x = transform
    new_height = max(1, int(round(image.shape[0] * scale_y)))
    new_width = max(1, int(round(image.shape[1] * scale_x)))
    resized = Image.fromarray(image.astype(np.uint8))
    if (new_height, new_width) != image.shape[:2]:
        resized = resized.resize((new_width, new_height), Image.BICUBIC)
    canvas = Image.new("RGB", (width, height), (fill, fill, fill))
    canvas.paste(resized, (int(round(offset_x)), int(round(offset_y))))
    return np.asarray(canvas), transform


# --- pose maps --------------------------------------------------------------------------------

def default_sigma(height: int) -> float:
    """Heatmap width: 6 px at 256-px height, scaled with the height."""
    return SIGMA_AT_256 * float(height) / 256.0


def keypoints_to_heatmaps(keypoints, height: int, width: int, sigma: Optional[float] = None):
    """Gaussian heatmaps of (y, x) keypoints: float32 [..., H, W, 18].

    Args:
        keypoints: [..., 18, 2] (y, x) in pixels of the H x W image; -1 marks a missing point,
            whose channel is all zero.
        height, width: the map size.
        sigma: the Gaussian's standard deviation in pixels; default `default_sigma(height)`.
    """
    import tensorflow as tf

    keypoints = tf.convert_to_tensor(keypoints)
    if keypoints.shape.rank is not None and keypoints.shape[-2:] != (NUM_KEYPOINTS, 2):
        raise ValueError(f"keypoints must have shape [..., {NUM_KEYPOINTS}, 2] of (y, x), got {keypoints.shape}")
    keypoints = tf.cast(keypoints, tf.float32)
    sigma = default_sigma(height) if sigma is None else float(sigma)
    y, x = keypoints[..., 0], keypoints[..., 1]  # [..., 18]
    rows = tf.range(height, dtype=tf.float32)[:, None]  # [H, 1]
    columns = tf.range(width, dtype=tf.float32)[:, None]  # [W, 1]
    along_y = tf.exp(-tf.square(rows - y[..., None, :]) / (2.0 * sigma**2))  # [..., H, 18]
    along_x = tf.exp(-tf.square(columns - x[..., None, :]) / (2.0 * sigma**2))  # [..., W, 18]
    along_y *= tf.cast((y >= 0) & (x >= 0), tf.float32)[..., None, :]
    return along_y[..., :, None, :] * along_x[..., None, :, :]


def encode_keypoints(raw_pose, height: int, width: int):
    """Pose encoder `keypoints18`: raw [18, 2] (y, x) in the stored image's pixels ->
    float32 [H, W, 18] heatmaps."""
    return keypoints_to_heatmaps(raw_pose, height, width)


def draw_skeleton(keypoints, height: int, width: int, image=None, thickness: Optional[int] = None) -> np.ndarray:
    """An OpenPose-style drawing of the skeleton: uint8 [H, W, 3] (over `image` if given)."""
    from PIL import Image, ImageDraw

    keypoints = _check_keypoints(keypoints)
    if keypoints.ndim != 2:
        raise ValueError(f"draw_skeleton takes one pose [18, 2], got {keypoints.shape}")
    if image is None:
        canvas = Image.new("RGB", (width, height))
    else:
        image = np.asarray(image, dtype=np.uint8)
        if image.shape != (height, width, 3):
            raise ValueError(f"image must have shape [{height}, {width}, 3], got {image.shape}")
        canvas = Image.fromarray(image)
    thickness = thickness or max(1, int(round(4 * height / 256)))
    draw = ImageDraw.Draw(canvas)
    visible = present(keypoints)
    for colour, (start, end) in zip(COLOURS, LIMBS):
        if visible[start] and visible[end]:
            (y0, x0), (y1, x1) = keypoints[start], keypoints[end]
            draw.line([(x0, y0), (x1, y1)], fill=colour, width=thickness)
    for colour, (y, x), shown in zip(COLOURS, keypoints, visible):
        if shown:
            draw.ellipse([x - thickness, y - thickness, x + thickness, y + thickness], fill=colour)
    return np.asarray(canvas)


def shoulders_and_hips(keypoints) -> Tuple[bool, bool]:
    """(has a shoulder, has a hip): a pose lacking both shoulders or both hips is not used
    as a target (the convention of the pose-transfer literature)."""
    visible = present(_check_keypoints(keypoints))
    has_shoulder = bool(visible[KEYPOINT_NAMES.index("right_shoulder")] or visible[KEYPOINT_NAMES.index("left_shoulder")])
    has_hip = bool(visible[KEYPOINT_NAMES.index("right_hip")] or visible[KEYPOINT_NAMES.index("left_hip")])
    return has_shoulder, has_hip
