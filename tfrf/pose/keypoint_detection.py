"""OpenPose-18 keypoints of the person in a photo or video frame, with MediaPipe pose.

    keypoints = extract_keypoints("me.jpg")            # float32 [18, 2] (y, x), -1 missing
    with PoseDetector(static_image_mode=False) as detector:
        per_frame = [detector(frame) for frame in video]  # None where nobody is found

MediaPipe pose (BlazePose, optional dependency `mediapipe==0.10.14`, whose wheel carries the
TFLite models, so nothing is downloaded) gives 33 landmarks; `MEDIAPIPE_INDEX` maps them into
the CMU OpenPose COCO-18 channels of the pose-transfer annotations
(`tfrf.pose.keypoints.KEYPOINT_NAMES`): 0 nose, 1 neck, 2-4 right arm, 5-7 left arm, 8-10 right
leg, 11-13 left leg, 14 right eye, 15 left eye, 16 right ear, 17 left ear. Left and right are the
person's own in both, so for someone facing the camera the right eye has the smaller x.
OpenPose's neck has no MediaPipe landmark: it is the midpoint of the shoulders.

Photos are read with `tfrf.photos.read_photo` (EXIF orientation applied). Small images (a
Market-1501 crop is 64 x 128) are upsampled (bicubic) to at least `min_side` pixels on their
short side before detection; MediaPipe's coordinates are normalised to the image, so they map
back to the original pixels exactly. Where MediaPipe at its own confidence finds nobody, the
image padded to a square and then a lower confidence are tried, with a geometric check
(`PoseDetector`, `plausible_person`). A landmark counts when its visibility reaches `threshold`
(the `--keypoint-threshold` of every command that detects) and it lies inside the image.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from tfrf.closeable import Closeable
from tfrf.dependencies import missing
from tfrf.io import held_stderr
from tfrf.photos import PhotoLike, as_photo
from tfrf.pose.keypoints import KEYPOINT_NAMES, MISSING, NUM_KEYPOINTS, NoPersonFoundError, shoulders_and_hips

# OpenPose-18 index -> MediaPipe pose landmark index (33 landmarks: 0 nose, 2 left eye, 5 right
# eye, 7 left ear, 8 right ear, 11/12 left/right shoulder, 13/14 elbows, 15/16 wrists, 23/24
# hips, 25/26 knees, 27/28 ankles; odd = the person's left).
MEDIAPIPE_INDEX = {
    0: 0,  # nose
    2: 12, 3: 14, 4: 16,  # right shoulder, elbow, wrist
    5: 11, 6: 13, 7: 15,  # left shoulder, elbow, wrist
    8: 24, 9: 26, 10: 28,  # right hip, knee, ankle
    11: 23, 12: 25, 13: 27,  # left hip, knee, ankle
    14: 5, 15: 2, 16: 8, 17: 7,  # right eye, left eye, right ear, left ear
}
MEDIAPIPE_NUM_LANDMARKS = 33
MEDIAPIPE_SHOULDERS = (11, 12)
NECK = KEYPOINT_NAMES.index("neck")
DEFAULT_THRESHOLD = 0.5
MIN_SIDE = 256
CONFIDENT_DETECTION = 0.5  # MediaPipe's default
DEFAULT_DETECTION_CONFIDENCE = 0.1
MIN_EXTENT = 0.4
MEDIAPIPE_HEAD = (0, 2, 5)  # nose, left eye, right eye
MEDIAPIPE_SHOULDERS_AND_HIPS = (11, 12, 23, 24)


def mediapipe_to_openpose(landmarks, height: int, width: int, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Maps MediaPipe's 33 pose landmarks to OpenPose-18 (y, x) pixels.

    Args:
        landmarks: float [33, 4] of (x, y, z, visibility) with x, y normalised to [0, 1]
            ([33, 3] without z is accepted: x, y, visibility).
        height, width: the image size the coordinates are normalised by.
        threshold: landmarks less visible than this, or outside the image, are missing.

    Returns:
        float32 [18, 2] (y, x) in pixels (pixel centres at integers), -1 where missing; the neck
        is the midpoint of the shoulders and is missing unless both are present.
    """
    landmarks = np.asarray(landmarks, dtype=np.float32)
    if landmarks.ndim != 2 or landmarks.shape[0] != MEDIAPIPE_NUM_LANDMARKS or landmarks.shape[1] not in (3, 4):
        raise ValueError(f"MediaPipe landmarks must have shape [33, 4] (x, y, z, visibility) or [33, 3], got {landmarks.shape}")
    x_pixels = landmarks[:, 0] * width - 0.5
    y_pixels = landmarks[:, 1] * height - 0.5
    visibility = landmarks[:, -1]
    usable = (
        (visibility >= threshold)
        & (x_pixels >= 0) & (x_pixels <= width - 1) & (y_pixels >= 0) & (y_pixels <= height - 1)
    )
    keypoints = np.full((NUM_KEYPOINTS, 2), MISSING, dtype=np.float32)
    for openpose, mediapipe in MEDIAPIPE_INDEX.items():
        if usable[mediapipe]:
            keypoints[openpose] = (y_pixels[mediapipe], x_pixels[mediapipe])
    left, right = MEDIAPIPE_SHOULDERS
    if usable[left] and usable[right]:
        keypoints[NECK] = ((y_pixels[left] + y_pixels[right]) / 2.0, (x_pixels[left] + x_pixels[right]) / 2.0)
    return keypoints


def upsample_for_detection(image: np.ndarray, min_side: int = MIN_SIDE) -> np.ndarray:
    """The image enlarged (bicubic, aspect kept) so that its short side is >= `min_side`;
    unchanged when it already is (or `min_side` <= 0)."""
    from PIL import Image

    height, width = image.shape[:2]
    if min_side <= 0 or min(height, width) >= min_side:
        return image
    scale = min_side / min(height, width)
    size = (max(min_side, int(round(width * scale))), max(min_side, int(round(height * scale))))
    return np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC))


def _import_pose():
    try:
        from mediapipe.python.solutions import pose
    except ImportError as error:
        raise missing("keypoint detection (MediaPipe pose)", "mediapipe", "give the keypoints as a pose JSON") from error
    return pose


def pad_to_square(image: np.ndarray) -> Tuple[np.ndarray, int, int]:
    """The image widened (or heightened) to a square by repeating its edge pixels, with the
    (top, left) offset of the original inside it. A tall pedestrian crop (Market-1501 is 1:2)
    then reaches MediaPipe's square detector input at twice the scale of its letterbox."""
    height, width = image.shape[:2]
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    padded = np.pad(image, ((top, side - height - top), (left, side - width - left), (0, 0)), mode="edge")
    return padded, top, left


def _usable(landmarks: np.ndarray, threshold: float) -> np.ndarray:
    x, y, visibility = landmarks[:, 0], landmarks[:, 1], landmarks[:, 3]
    return (visibility >= threshold) & (x >= 0) & (x <= 1) & (y >= 0) & (y <= 1)


def upright(landmarks: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> bool:
    """False when the nose or an eye and both shoulders are visible and no visible head point is
    above the shoulders' midpoint: at small sizes MediaPipe sometimes fits a body upside down."""
    usable, y = _usable(landmarks, threshold), landmarks[:, 1]
    shoulders = list(MEDIAPIPE_SHOULDERS)
    head = [index for index in MEDIAPIPE_HEAD if usable[index]]
    return not (usable[shoulders].all() and head and min(y[head]) >= y[shoulders].mean())


def has_shoulder_or_hip(landmarks: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> bool:
    return bool(_usable(landmarks, threshold)[list(MEDIAPIPE_SHOULDERS_AND_HIPS)].any())


def plausible_person(landmarks: np.ndarray, threshold: float = DEFAULT_THRESHOLD,
                     min_extent: float = MIN_EXTENT) -> bool:
    """The geometric check a detection of a later pass must pass: both shoulders at least
    `threshold` visible, the nose or an eye visible and above the shoulders' midpoint (an upright
    person), and the visible landmarks spanning at least `min_extent` of the image's height or
    width (the person fills a crop or a portrait, as a detector's crop does; the low-confidence
    detections in textures are small).

    Args:
        landmarks: float [33, 4] (x, y normalised to the image, z, visibility).
    """
    usable = _usable(landmarks, threshold)
    if not usable[list(MEDIAPIPE_SHOULDERS)].all() or not usable[list(MEDIAPIPE_HEAD)].any():
        return False
    extent = max(np.ptp(landmarks[usable, 0]), np.ptp(landmarks[usable, 1]))
    return upright(landmarks, threshold) and bool(extent >= min_extent)


class PoseDetector(Closeable):
    """OpenPose-18 keypoints of the most prominent person, frame after frame.

    Small photos and frames are found in passes, each tried only when the ones before it found
    nobody: MediaPipe at its default confidence (0.5) on the image upsampled to `min_side`
    (tracking from the previous frame in a video), then on the image padded to a square, then at
    `min_detection_confidence` on both (when it is below 0.5). A pass finds somebody when a
    shoulder or hip is visible and the body is `upright`; in a pass after the first, only when
    `plausible_person` holds too. `python -m tfrf.benchmarks.small_photos` measures the
    passes on a folder of crops.

    Args:
        threshold: minimum landmark visibility (0-1) for a keypoint to count.
        min_detection_confidence: the lowest person detection confidence accepted
            (`--detection-confidence`); 0.5 or more leaves only the first two passes.
        static_image_mode: True for unrelated photos; False to track one person through a
            video (faster and steadier).
        min_side: smaller images are upsampled to this short side before detection.
        model_complexity: MediaPipe pose model, 0 (lite), 1 (full) or 2 (heavy).
        pad: False leaves out the passes on the padded image.
    """

    def __init__(self, threshold: float = DEFAULT_THRESHOLD,
                 min_detection_confidence: float = DEFAULT_DETECTION_CONFIDENCE,
                 static_image_mode: bool = True, min_side: int = MIN_SIDE, model_complexity: int = 1,
                 pad: bool = True):
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"keypoint threshold must be in [0, 1], got {threshold}")
        if not 0.0 < min_detection_confidence <= 1.0:
            raise ValueError(f"detection confidence must be in (0, 1], got {min_detection_confidence}")
        self.threshold, self.min_side = float(threshold), int(min_side)
        pose = _import_pose()
        confident = max(CONFIDENT_DETECTION, min_detection_confidence)

        def model(static: bool, confidence: float):
            with held_stderr():  # MediaPipe's native start-up lines (shown with --verbose)
                return pose.Pose(static_image_mode=static, model_complexity=model_complexity,
                                 min_detection_confidence=confidence)

        # (model, padded, checked): the first runs on every frame (it tracks in a video).
        first = model(static_image_mode, confident)
        padded = first if static_image_mode else model(True, confident)
        self._passes = [(first, False, False), (padded, True, True)]
        if min_detection_confidence < confident:
            low = model(True, min_detection_confidence)
            self._passes += [(low, False, True), (low, True, True)]
        self._passes = [entry for entry in self._passes if pad or not entry[1]]
        self._models = list({id(entry[0]): entry[0] for entry in self._passes}.values())
        self.last_pass: Optional[int] = None

    def _run(self, model, image: np.ndarray, padded: bool) -> Optional[np.ndarray]:
        height, width = image.shape[:2]
        view, top, left = pad_to_square(image) if padded else (image, 0, 0)
        with held_stderr():  # its first call logs its graph's set-up natively
            result = model.process(np.ascontiguousarray(upsample_for_detection(view, self.min_side)))
        if result.pose_landmarks is None:
            return None
        landmarks = np.array([(p.x, p.y, p.z, p.visibility) for p in result.pose_landmarks.landmark], np.float32)
        if padded:  # normalised to the square -> normalised to the image (the same pixel centres)
            side = view.shape[0]
            landmarks[:, 0] = (landmarks[:, 0] * side - left) / width
            landmarks[:, 1] = (landmarks[:, 1] * side - top) / height
        return landmarks

    def landmarks(self, image: np.ndarray) -> Optional[np.ndarray]:
        """MediaPipe's raw landmarks of uint8 [H, W, 3] RGB: float32 [33, 4] (x, y normalised,
        z, visibility), or None when no pass finds a person (`last_pass` says which did;
        `rejected` whether a pass found a body without a visible shoulder or hip, or upside down)."""
        self.last_pass, self.rejected = None, False
        for index, (model, padded, checked) in enumerate(self._passes):
            if padded and image.shape[0] == image.shape[1]:
                continue
            landmarks = self._run(model, image, padded)
            if landmarks is None:
                continue
            if not (has_shoulder_or_hip(landmarks, self.threshold) and upright(landmarks, self.threshold)):
                self.rejected = True
                continue
            if not checked or plausible_person(landmarks, self.threshold):
                self.last_pass = index
                return landmarks
        return None

    def __call__(self, image: PhotoLike) -> Optional[np.ndarray]:
        """float32 [18, 2] (y, x) in the image's pixels, -1 where missing; None when nobody is
        found or neither a shoulder nor a hip reaches the threshold.

        Args:
            image: uint8 [H, W, 3] RGB, or a photo's path.
        """
        image = as_photo(image)
        landmarks = self.landmarks(image)
        if landmarks is None:
            return None
        keypoints = mediapipe_to_openpose(landmarks, image.shape[0], image.shape[1], self.threshold)
        return keypoints if any(shoulders_and_hips(keypoints)) else None

    def close(self) -> None:
        for model in self._models:
            model.close()


def add_keypoint_threshold_argument(parser) -> None:
    """`--keypoint-threshold` and `--detection-confidence` on an argparse parser, for every
    command that detects keypoints."""
    parser.add_argument("--keypoint-threshold", type=float, default=DEFAULT_THRESHOLD, metavar="T",
                        help="MediaPipe landmark visibility (0-1) a detected keypoint needs "
                             f"(default {DEFAULT_THRESHOLD}); lower finds more, less surely placed, keypoints")
    parser.add_argument("--detection-confidence", type=float, default=DEFAULT_DETECTION_CONFIDENCE, metavar="C",
                        help="lowest person detection confidence (0-1] accepted (default "
                             f"{DEFAULT_DETECTION_CONFIDENCE}); detections below {CONFIDENT_DETECTION} must "
                             "look like an upright person filling the photo. Raise it to "
                             f"{CONFIDENT_DETECTION} for MediaPipe's own behaviour")


def extract_keypoints(image_or_path: PhotoLike, threshold: float = DEFAULT_THRESHOLD, *,
                      min_detection_confidence: float = DEFAULT_DETECTION_CONFIDENCE, min_side: int = MIN_SIDE,
                      detector: Optional[PoseDetector] = None) -> np.ndarray:
    """OpenPose-18 keypoints of the person in one photo.

    Args:
        image_or_path: uint8 [H, W, 3] RGB, or a photo's path (read with its EXIF orientation).
        threshold: minimum landmark visibility for a keypoint to count.
        min_detection_confidence: the lowest person detection confidence accepted (`PoseDetector`).
        min_side: smaller images are upsampled to this short side before detection.
        detector: a `PoseDetector` to reuse (its own settings then apply).

    Returns:
        float32 [18, 2] (y, x) in the (upright) photo's pixels, -1 where missing.

    Raises:
        NoPersonFoundError: nobody found, or neither a shoulder nor a hip is visible enough
            (the message names the file when given a path).
        FileNotFoundError / ValueError: an unreadable photo (`tfrf.photos.read_photo`).
        ImportError: mediapipe is not installed.
    """
    name = str(image_or_path) if not isinstance(image_or_path, np.ndarray) else None
    image = as_photo(image_or_path)
    owned = detector is None
    if owned:
        detector = PoseDetector(threshold, min_detection_confidence, static_image_mode=True, min_side=min_side)
    try:
        landmarks = detector.landmarks(image)
    finally:
        if owned:
            detector.close()
    prefix = f"{name}: " if name else ""
    if landmarks is None and not detector.rejected:
        raise NoPersonFoundError(f"{prefix}no person found in the image")
    keypoints = (mediapipe_to_openpose(landmarks, image.shape[0], image.shape[1], detector.threshold)
                 if landmarks is not None else None)
    if keypoints is None or not any(shoulders_and_hips(keypoints)):
        raise NoPersonFoundError(
            f"{prefix}no person found in the image: neither shoulders nor hips are visible at keypoint "
            f"threshold {detector.threshold:g}"
        )
    return keypoints
