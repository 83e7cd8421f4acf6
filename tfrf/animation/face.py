"""Face animation with the exported TFLite face model (the VoxCeleb2 preset).

    result = animate("face.tflite", ["s1.jpg", "s2.jpg"], "driving.mp4", "out.gif")

The pipeline of the VoxCeleb2 preset (`tfrf.pose.face`, as its dataset builder prepares
training pairs): 68 landmarks per face (MediaPipe face mesh, optional dependency, or given as
arrays), a square crop around each face's landmarks with a margin, the RGB landmark drawing of
the crop as the pose. The sources are encoded once (`encode_sources` signature); every driving
frame is one `render` call. The model runs through `ai-edge-litert` when installed, otherwise
`tf.lite.Interpreter`. Source photos are read with `tfrf.photos.read_photo` (EXIF orientation
applied).

Driving landmarks: a `.npy` of float `[T, 68, 2]` (x, y) pixels of the driving frames (a frame
of NaNs means "no face"), or a video or a folder of frames (`tfrf.pose.frames`) whose frames
MediaPipe reads. Each driving frame is mapped into its own face crop (absolute motion), or, with
`relative=True`, its motion relative to the first driving frame moves the first source's
landmarks. A source without a face is an error; a driving frame without a face reuses the last
landmarks (the first source's for a leading one) and is counted in
`AnimationResult.missing_frames`. The frame loop and writer are `tfrf.animation.video`'s.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable, Iterable, Iterator, Optional, Sequence, Tuple, Union

import numpy as np

from tfrf.animation.video import DEFAULT_FPS, VIDEO_SUFFIXES, AnimationResult, run_animation
from tfrf.photos import as_photo
from tfrf.pose import face
from tfrf.pose.frames import read_frames
from tfrf.visualize import to_uint8

Landmarker = Callable[[np.ndarray], Optional[np.ndarray]]


class NoFaceError(ValueError):
    """A source image in which no face was found."""


def landmarks_in_crop(landmarks, size: int, margin: float = 0.25) -> np.ndarray:
    """Where `face.crop_face(image, landmarks, size, margin)` puts the landmarks: float32
    [68, 2] in crop pixels (no image needed)."""
    left, top, side = face.face_box(landmarks, margin)
    scale = size / side
    return ((face.check_landmarks(landmarks) - [left, top] + 0.5) * scale - 0.5).astype(np.float32)


def pose_drawing(landmarks, size: int) -> np.ndarray:
    """The pose map of crop landmarks: float32 [size, size, 3] in [0, 1] (the `landmarks68`
    encoder's scaling of a uint8 drawing)."""
    return face.draw_landmarks(landmarks, size, size).astype(np.float32) / 255.0


class FaceRenderer:
    """The exported face model: encode K sources once, then render one frame per target.

    Args:
        model: path of a `.tflite` from `tfrf export tflite` (or its bytes).
        num_threads: interpreter threads.
    """

    def __init__(self, model: Union[str, bytes], num_threads: int = 2):
        from tfrf.export.tflite import ENCODE_SIGNATURE, RENDER_SIGNATURE, load_interpreter, runtime_name

        self.interpreter = load_interpreter(model, num_threads=num_threads)
        self.runtime = runtime_name()
        signatures = self.interpreter.get_signature_list()
        if ENCODE_SIGNATURE not in signatures or RENDER_SIGNATURE not in signatures:
            raise ValueError(
                f"{model if isinstance(model, str) else 'the model'} has signatures {sorted(signatures)}; "
                f"a face model needs {ENCODE_SIGNATURE!r} and {RENDER_SIGNATURE!r} (tfrf export tflite)"
            )
        self._encode = self.interpreter.get_signature_runner(ENCODE_SIGNATURE)
        self._render = self.interpreter.get_signature_runner(RENDER_SIGNATURE)
        shape = [int(dim) for dim in self._encode.get_input_details()["source_images"]["shape"]]
        _, self.num_sources, self.height, self.width, _ = shape
        if self.height != self.width:
            raise ValueError(f"face models take square crops, this one takes {self.height}x{self.width}")
        self.size = self.height
        self._sources = None

    def set_sources(self, images: Sequence[np.ndarray], landmarks: Sequence[np.ndarray]) -> None:
        """Encodes the K source crops (uint8 [size, size, 3]) with their crop landmarks."""
        if len(images) != self.num_sources or len(landmarks) != self.num_sources:
            raise ValueError(
                f"the model was exported for K = {self.num_sources} sources, got {len(images)} images and "
                f"{len(landmarks)} landmark sets"
            )
        for index, image in enumerate(images):
            if np.shape(image) != (self.size, self.size, 3):
                raise ValueError(f"source {index} must be a [{self.size}, {self.size}, 3] crop, got {np.shape(image)}")
        source_images = (np.stack(images).astype(np.float32) / 127.5 - 1.0)[None]
        source_poses = np.stack([pose_drawing(points, self.size) for points in landmarks])[None]
        features = self._encode(source_images=source_images)
        self._sources = {"source_images": source_images, "source_poses": source_poses, **features}

    def render(self, landmarks) -> np.ndarray:
        """The frame for target crop landmarks [68, 2]: uint8 [size, size, 3]."""
        if self._sources is None:
            raise RuntimeError("call set_sources before render")
        target_pose = pose_drawing(landmarks, self.size)[None]
        return to_uint8(self._render(target_pose=target_pose, **self._sources)["image"][0])


def default_landmarker(static_image_mode: bool) -> face.MediaPipeFaceLandmarker:
    """MediaPipe face mesh (optional dependency mediapipe==0.10.14)."""
    return face.MediaPipeFaceLandmarker(static_image_mode=static_image_mode)


def prepare_source(image: np.ndarray, landmarks: Optional[np.ndarray], size: int, margin: float,
                   landmarker: Optional[Landmarker], name: str) -> Tuple[np.ndarray, np.ndarray]:
    """(crop uint8 [size, size, 3], crop landmarks [68, 2]) of one source; NoFaceError when
    it has no face."""
    if landmarks is None:
        landmarks = landmarker(image) if landmarker is not None else None
        if landmarks is None:
            raise NoFaceError(f"{name}: no face found in the source image")
    landmarks = face.check_landmarks(landmarks, name=f"landmarks of {name}")
    return face.crop_face(image, landmarks, size, margin)


def driving_landmarks(driving: Union[str, np.ndarray], landmarker: Optional[Landmarker] = None
                      ) -> Tuple[Iterator[Optional[np.ndarray]], int, Optional[float]]:
    """(landmarks per driving frame, None where no face; frame count; the video's fps or None).

    Args:
        driving: a `.npy` path or array of float [T, 68, 2] (x, y) pixels (a frame with a
            non-finite value has no face), or a video or folder of frames (`tfrf.pose.frames`,
            needs `landmarker`).
        landmarker: image -> [68, 2] or None, for videos.
    """
    if isinstance(driving, str) and not driving.lower().endswith(".npy"):
        folder = os.path.isdir(driving)
        if not folder and not driving.lower().endswith(VIDEO_SUFFIXES):
            raise ValueError(f"driving {driving} must be a .npy of [T, 68, 2] landmarks or a video {VIDEO_SUFFIXES}, "
                             "or a folder of frames")
        if not folder and not os.path.isfile(driving):
            raise FileNotFoundError(f"driving video {driving} does not exist")
        frames, count, fps = read_frames(driving)
        return (landmarker(frame) for frame in frames), count, fps
    name = driving if isinstance(driving, str) else "driving landmarks"
    if isinstance(driving, str) and not os.path.isfile(driving):
        raise FileNotFoundError(f"driving landmarks {driving} do not exist")
    array = np.load(driving) if isinstance(driving, str) else np.asarray(driving)
    if array.ndim != 3 or array.shape[1] != face.NUM_LANDMARKS or array.shape[2] < 2 or not len(array):
        raise ValueError(f"{name} must be float [T, 68, 2] (x, y per frame), got shape {array.shape}")
    array = array[..., :2].astype(np.float64)
    return (points if np.all(np.isfinite(points)) else None for points in array), len(array), None


def face_targets(driving: Iterable[Optional[np.ndarray]], size: int, margin: float,
                 relative_to: Optional[np.ndarray] = None) -> Iterator[Optional[np.ndarray]]:
    """Crop landmarks [68, 2] of each driving frame's landmarks (None stays None); with
    `relative_to` (the first source's crop landmarks), that face moved by the driving motion
    relative to the first driving face."""
    first_driving = None
    for points in driving:
        if points is None:
            yield None
            continue
        target = landmarks_in_crop(points, size, margin)
        if relative_to is not None:
            first_driving = target if first_driving is None else first_driving
            target = relative_to + (target - first_driving)
        yield target


def animate(model: Union[str, bytes], sources: Sequence[Union[str, np.ndarray]],
            driving: Union[str, np.ndarray], out: Optional[str] = None,
            source_landmarks: Optional[Sequence[Optional[np.ndarray]]] = None,
            fps: Optional[float] = None, margin: float = 0.25, relative: bool = False,
            num_threads: int = 2, landmarker: Optional[Landmarker] = None, progress: bool = True,
            return_frames: bool = False) -> AnimationResult:
    """Animates the source face with the driving landmarks and writes `out` (.gif or .mp4).

    Args:
        model: the face `.tflite` (`tfrf export tflite --preset voxceleb2 ...`).
        sources: K source photos (paths, read upright, or uint8 [H, W, 3]), K as exported.
        driving: `.npy` / array [T, 68, 2] of driving landmarks, or a driving video.
        out: the output path; None renders without writing (e.g. with `return_frames`).
        source_landmarks: [68, 2] (x, y) per source in its own pixels; None (or a None entry)
            detects them with `landmarker`.
        fps: output frame rate; default the driving video's, else 25.
        margin: face crop margin (`face.crop_face`), as the dataset was prepared.
        relative: move the first source's landmarks by the driving motion relative to the first
            driving frame, instead of drawing the driving landmarks themselves.
        num_threads: interpreter threads.
        landmarker: image -> [68, 2] or None; default MediaPipe face mesh, created only when
            something must be detected.
        progress: show a progress bar.
        return_frames: keep the frames in the result.

    Raises:
        NoFaceError: when a source has no face.
        NoDrivingPoseError: (a ValueError) when no driving frame has a face; nothing is written.
    """
    renderer = FaceRenderer(model, num_threads=num_threads)
    size = renderer.size
    if source_landmarks is None:
        source_landmarks = [None] * len(sources)
    if len(source_landmarks) != len(sources):
        raise ValueError(f"got {len(source_landmarks)} source landmark sets for {len(sources)} sources")
    owned = []

    def detector(static: bool) -> Landmarker:
        if landmarker is not None:
            return landmarker
        owned.append(default_landmarker(static))
        return owned[-1]

    def on_first_frame(static: bool) -> Landmarker:
        """`detector(static)`, created at the first frame (after the driving video has opened)."""
        created: list = []

        def detect(image: np.ndarray) -> Optional[np.ndarray]:
            if not created:
                created.append(detector(static))
            return created[0](image)

        return detect

    try:
        needs_detection = any(points is None for points in source_landmarks)
        source_detector = detector(True) if needs_detection else None
        crops, crop_landmarks = [], []
        for index, (source, points) in enumerate(zip(sources, source_landmarks)):
            name = str(source) if not isinstance(source, np.ndarray) else f"source {index}"
            image = as_photo(source, name)
            crop, moved = prepare_source(image, points, size, margin, source_detector, name)
            crops.append(crop)
            crop_landmarks.append(moved)
        renderer.set_sources(crops, crop_landmarks)

        is_video = isinstance(driving, str) and not driving.lower().endswith(".npy")
        frames, count, video_fps = driving_landmarks(driving, on_first_frame(False) if is_video else None)
        fps = float(fps or video_fps or DEFAULT_FPS)
        targets = face_targets(frames, size, margin, crop_landmarks[0] if relative else None)
        driving_name = f"driving {driving if isinstance(driving, str) else 'array'}"
        result = run_animation(targets, renderer.render, crop_landmarks[0], total=count, out=out, fps=fps,
                               progress=progress, return_frames=return_frames, driving_name=driving_name,
                               subject="face")
        result = dataclasses.replace(result, runtime=renderer.runtime)
    finally:
        for owned_landmarker in owned:
            owned_landmarker.close()
    return result
