"""68 facial landmarks: the iBUG-68 layout, RGB landmark drawings, face crops, MediaPipe mapping.

Shared by the VoxCeleb2 builder and face animation; it holds no dataset code.

Landmarks are float `[68, 2]` arrays of `(x, y)` pixel coordinates, pixel centres at integers,
in the iBUG-68 (dlib) order, the person's right side on the image's left:

| part  | indices | drawn as |
|-------|---------|----------|
| jaw   | 0-16    | one open line |
| brows | 17-21, 22-26 | two open lines |
| nose  | 27-30 (bridge), 31-35 (nostrils) | two open lines |
| eyes  | 36-41, 42-47 | two closed loops |
| lips  | 48-59 (outer), 60-67 (inner) | two closed loops |

The pose of a face (registry name `landmarks68`) is the drawing of its landmarks: black
background, each part in its own colour (`PART_COLORS`), lines between consecutive points.

MediaPipe face mesh (optional dependency `mediapipe==0.10.14`, imported only when used) gives
468 points; `MEDIAPIPE_TO_68` picks one mesh vertex per iBUG point (see its comment).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tensorflow as tf

from typing import Dict, List, Optional, Tuple

import numpy as np

from tfrf.closeable import Closeable
from tfrf.dependencies import missing
from tfrf.photos import as_photo

NUM_LANDMARKS = 68
DRAWING_CHANNELS = 3

# part -> list of (first index, last index inclusive, closed loop?)
FACE_PARTS: Dict[str, List[Tuple[int, int, bool]]] = {
    "jaw": [(0, 16, False)],
    "brows": [(17, 21, False), (22, 26, False)],
    "nose": [(27, 30, False), (31, 35, False)],
    "eyes": [(36, 41, True), (42, 47, True)],
    "lips": [(48, 59, True), (60, 67, True)],
}
PART_COLORS: Dict[str, Tuple[int, int, int]] = {
    "jaw": (255, 0, 0),
    "brows": (0, 255, 0),
    "nose": (0, 0, 255),
    "eyes": (255, 255, 0),
    "lips": (255, 0, 255),
}

# MediaPipe face-mesh vertex for each iBUG-68 point, one vertex per point, chosen along the
# mesh's own contours (FACEMESH_FACE_OVAL, _EYEBROW, _EYE, _LIPS) and nose vertices, mirror
# pairs kept symmetric (e.g. 127/356, 33/263, 61/291). It follows the widely used
# MediaPipe->dlib correspondence of the Mediapipe_2_Dlib_Landmarks project, which averages two
# vertices for a few points; here every point is a single vertex.
MEDIAPIPE_TO_68: Tuple[int, ...] = (
    # jaw 0-16: along the face oval from the right ear, via the chin (152), to the left ear
    127, 234, 93, 132, 58, 136, 150, 176, 152, 400, 379, 365, 288, 361, 323, 454, 356,
    # brows 17-21 (right, outer -> inner), 22-26 (left, inner -> outer)
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    # nose bridge 27-30 (top -> tip), nostrils 31-35 (right -> left)
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    # right eye 36-41: outer corner, top, top, inner corner, bottom, bottom
    33, 160, 158, 133, 153, 144,
    # left eye 42-47: inner corner, top, top, outer corner, bottom, bottom
    362, 385, 387, 263, 373, 380,
    # outer lips 48-59: right corner, upper lip to the left corner, lower lip back
    61, 39, 37, 0, 267, 269, 291, 321, 314, 17, 84, 91,
    # inner lips 60-67
    78, 82, 13, 312, 308, 317, 14, 87,
)
MEDIAPIPE_MESH_POINTS = 468


def check_landmarks(landmarks, name: str = "landmarks") -> np.ndarray:
    """Validates 68 finite (x, y) landmarks; returns them as float64 [68, 2].

    Raises:
        ValueError: naming `name` and its shape when it is not [68, 2] (extra trailing
            coordinates such as z are dropped) or holds non-finite values.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.ndim != 2 or landmarks.shape[0] != NUM_LANDMARKS or landmarks.shape[1] < 2:
        raise ValueError(f"{name} must have shape [68, 2] (x, y per iBUG-68 point), got {landmarks.shape}")
    landmarks = landmarks[:, :2]
    if not np.all(np.isfinite(landmarks)):
        raise ValueError(f"{name} holds non-finite coordinates")
    return landmarks


def part_polylines() -> List[Tuple[str, np.ndarray]]:
    """(part name, landmark indices along one drawn line) for every line of the drawing."""
    lines = []
    for part, segments in FACE_PARTS.items():
        for first, last, closed in segments:
            indices = list(range(first, last + 1)) + ([first] if closed else [])
            lines.append((part, np.asarray(indices)))
    return lines


def draw_landmarks(landmarks, height: int, width: int, line_width: Optional[int] = None) -> np.ndarray:
    """The RGB drawing of 68 landmarks: uint8 [H, W, 3], black background.

    Args:
        landmarks: float [68, 2] (x, y) pixel coordinates in the H x W frame.
        height, width: size of the drawing.
        line_width: pixels; default max(1, round(min(H, W) / 128)) (2 px at 256).

    Returns:
        uint8 [H, W, 3]; every line of a part in `PART_COLORS[part]` (no anti-aliasing, so
        each drawn pixel holds exactly one part colour).
    """
    from PIL import Image, ImageDraw

    landmarks = check_landmarks(landmarks)
    if height < 1 or width < 1:
        raise ValueError(f"drawing size must be positive, got height={height}, width={width}")
    if line_width is None:
        line_width = max(1, int(round(min(height, width) / 128)))
    canvas = Image.new("RGB", (int(width), int(height)))
    draw = ImageDraw.Draw(canvas)
    for part, indices in part_polylines():
        # PIL truncates float coordinates; round to the nearest pixel centre instead.
        points = [tuple(point) for point in np.round(landmarks[indices]).astype(int).tolist()]
        draw.line(points, fill=PART_COLORS[part], width=line_width)
    return np.asarray(canvas, dtype=np.uint8)


def face_box(landmarks, margin: float = 0.25) -> Tuple[int, int, int]:
    """The square crop box around the landmarks: `(left, top, side)` in integer pixels.

    The box of the landmarks (its longer side s) is centred in a square of side
    s * (1 + 2 * margin), i.e. `margin` * s is added on every side.
    """
    landmarks = check_landmarks(landmarks)
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    low, high = landmarks.min(axis=0), landmarks.max(axis=0)
    center = (low + high) / 2.0
    side = max(float((high - low).max()) * (1.0 + 2.0 * margin), 1.0)
    side_pixels = int(np.ceil(side))
    left, top = np.floor(center - side_pixels / 2.0 + 0.5).astype(int)
    return int(left), int(top), side_pixels


def crop_face(image, landmarks, size: int = 256, margin: float = 0.25) -> Tuple[np.ndarray, np.ndarray]:
    """Crops the face from the landmarks' box with a margin and resizes it to size x size.

    Parts of the box outside the image are black.

    Args:
        image: uint8 [H, W, 3].
        landmarks: float [68, 2] (x, y) pixels in `image`.
        size: side of the output crop.
        margin: fraction of the landmarks' box side added on each side (`face_box`).

    Returns:
        (crop uint8 [size, size, 3], landmarks float32 [68, 2] in crop pixels).
    """
    from PIL import Image

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
    if size < 1:
        raise ValueError(f"crop size must be positive, got {size}")
    left, top, side = face_box(landmarks, margin)
    crop = Image.fromarray(image).crop((left, top, left + side, top + side))
    crop = crop.resize((size, size), Image.BILINEAR)
    scale = size / side
    # Pixel centres: x_crop + 0.5 = (x - left + 0.5) * scale.
    moved = (check_landmarks(landmarks) - [left, top] + 0.5) * scale - 0.5
    return np.asarray(crop, dtype=np.uint8), moved.astype(np.float32)


def encode_landmark_drawing(raw_pose, height: int, width: int) -> tf.Tensor:
    """Pose encoder `landmarks68`: a stored drawing [..., h, w, 3] -> float32 [..., H, W, 3].

    uint8 drawings are scaled to [0, 1]; float drawings are taken as already in [0, 1]. A
    drawing of another size is resized (bilinear, anti-aliased).
    """
    import tensorflow as tf

    drawing = tf.convert_to_tensor(raw_pose)
    if drawing.shape.rank is not None and (drawing.shape.rank < 3 or drawing.shape[-1] not in (None, DRAWING_CHANNELS)):
        raise ValueError(f"landmark drawing must have shape [..., H, W, 3], got {drawing.shape}")
    scale = 255.0 if drawing.dtype.is_integer else 1.0
    drawing = tf.cast(drawing, tf.float32) / scale
    stored = drawing.shape[-3:-1]
    if stored.is_fully_defined() and tuple(stored) == (height, width):
        return drawing
    if stored.is_fully_defined():
        return tf.image.resize(drawing, [height, width], antialias=True)
    shape = tf.shape(drawing)
    same_size = tf.logical_and(tf.equal(shape[-3], height), tf.equal(shape[-2], width))
    drawing = tf.cond(same_size, lambda: drawing,
                      lambda: tf.image.resize(drawing, [height, width], antialias=True))
    if isinstance(height, int) and isinstance(width, int):
        drawing = tf.ensure_shape(drawing, drawing.shape[:-3].concatenate([height, width, DRAWING_CHANNELS]))
    return drawing


def mediapipe_to_68(mesh) -> np.ndarray:
    """Picks the 68 iBUG points from MediaPipe face-mesh points [468 (or 478), D] -> [68, D]."""
    mesh = np.asarray(mesh)
    if mesh.ndim != 2 or mesh.shape[0] < MEDIAPIPE_MESH_POINTS:
        raise ValueError(f"MediaPipe face mesh must have shape [468, D] (or [478, D]), got {mesh.shape}")
    return mesh[list(MEDIAPIPE_TO_68)]


def _import_mediapipe():
    try:
        import mediapipe
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise missing("face landmark detection (MediaPipe face mesh)", "mediapipe",
                      "give precomputed 68-point landmarks") from error
    return mediapipe


class MediaPipeFaceLandmarker(Closeable):
    """68 facial landmarks of the largest face in RGB images, through MediaPipe face mesh.

    The face-mesh TFLite models ship inside the mediapipe wheel: nothing is downloaded.

    Args:
        static_image_mode: True for unrelated images; False to track through a video.
        min_detection_confidence: MediaPipe's face detection threshold.
    """

    def __init__(self, static_image_mode: bool = True, min_detection_confidence: float = 0.5):
        mediapipe = _import_mediapipe()
        self._mesh = mediapipe.solutions.face_mesh.FaceMesh(
            static_image_mode=static_image_mode,
            max_num_faces=1,
            refine_landmarks=False,
            min_detection_confidence=min_detection_confidence,
        )

    def __call__(self, image) -> Optional[np.ndarray]:
        """float32 [68, 2] (x, y) pixels, or None when no face is found.

        Args:
            image: uint8 [H, W, 3] RGB, or a photo's path (`tfrf.photos.read_photo`: EXIF
                orientation applied, coordinates in the upright photo).
        """
        image = as_photo(image)
        result = self._mesh.process(np.ascontiguousarray(image))
        if not result.multi_face_landmarks:
            return None
        height, width = image.shape[:2]
        mesh = np.array([(point.x * width, point.y * height) for point in result.multi_face_landmarks[0].landmark])
        return mediapipe_to_68(mesh).astype(np.float32)

    def close(self) -> None:
        self._mesh.close()


def template_landmarks(height: int = 256, width: int = 256) -> np.ndarray:
    """A synthetic frontal face in the iBUG-68 layout, float32 [68, 2] pixels.

    Geometric (ellipse arcs), not a statistical mean face: for tests, dummy data and demos.
    Parts are well apart, so every part of its drawing is visible.
    """

    def arc(center, radii, angles):
        # angles measured counter-clockwise on screen (y grows downwards)
        return np.stack([center[0] + radii[0] * np.cos(angles), center[1] - radii[1] * np.sin(angles)], -1)

    jaw = arc((0.5, 0.45), (0.38, 0.45), np.linspace(np.pi, 2 * np.pi, 17))
    brow_x = np.linspace(0.20, 0.42, 5)
    right_brow = np.stack([brow_x, 0.32 - 0.03 * np.sin(np.linspace(0, np.pi, 5))], -1)
    left_brow = np.stack([1.0 - brow_x[::-1], right_brow[::-1, 1]], -1)
    bridge = np.stack([np.full(4, 0.5), np.linspace(0.38, 0.55, 4)], -1)
    nostrils = np.stack([np.linspace(0.44, 0.56, 5), 0.60 + 0.015 * np.sin(np.linspace(0, np.pi, 5))], -1)
    eye_angles = np.pi - np.arange(6) * (np.pi / 3)
    right_eye = arc((0.33, 0.43), (0.07, 0.03), eye_angles)
    left_eye = arc((0.67, 0.43), (0.07, 0.03), eye_angles)
    outer_lips = arc((0.5, 0.75), (0.15, 0.06), np.pi - np.arange(12) * (np.pi / 6))
    inner_lips = arc((0.5, 0.75), (0.09, 0.025), np.pi - np.arange(8) * (np.pi / 4))
    unit = np.concatenate([jaw, right_brow, left_brow, bridge, nostrils, right_eye, left_eye, outer_lips, inner_lips])
    return (unit * [width - 1, height - 1]).astype(np.float32)
