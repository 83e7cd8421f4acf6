"""Person animation (GFLA's second application, Ren et al. CVPR 2020, sec. 5): K photos of a
person and a driving sequence of poses (a dance video, or poses as JSON) -> a video of that
person in every driving pose, one generated frame per driving frame.

    generator = tfrf.runs.load_generator(config, weights)     # a people preset: 18 keypoint maps
    result = animate_person(generator, ["a.jpg", "b.jpg"], "dance.mp4", "out.mp4")

Sources are read upright (`tfrf.photos.read_photo`), their keypoints detected with MediaPipe
pose (or given as pose JSONs, `tfrf.pose.keypoints.save_pose_json`), and fitted to the model's
size (`fit`: "pad" keeps the aspect, as the datasets were prepared). Each driving pose is fitted
the same way from its own frame size; the driving person's position and scale are used as they
are (no retargeting). The source images and heatmaps are prepared once; every frame is one
generator call with that frame's target heatmaps.

Driving poses:
- a video (.mp4, .mov, ...) or a folder of frames (image files in name order,
  `tfrf.pose.frames`): MediaPipe pose in tracking mode on every frame, at
  `threshold` visibility; small frames are upsampled for detection (`PoseDetector`);
- a poses JSON, `POSES_JSON_FORMAT`: `{"height": H, "width": W, "fps": 25, "frames":
  [[[y, x] x 18], ...]}`, (y, x) pixels of an H x W driving frame in CMU OpenPose-18 order, -1 for
  a missing keypoint; a frame that is `null` or has no keypoint is a frame without a person;
  "fps" is optional.
A driving frame without a person reuses the last pose (the first source's for a leading one)
and is counted in `AnimationResult.missing_frames`. The frame loop, progress bar and writer
are `tfrf.animation.video.run_animation`'s, shared with face animation.
"""
from __future__ import annotations

import json
import os
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from tfrf import inference
from tfrf.animation.video import DEFAULT_FPS, VIDEO_SUFFIXES, AnimationResult, run_animation
from tfrf.pose import keypoint_detection
from tfrf.pose import keypoints as keypoints_lib
from tfrf.pose.frames import read_frames

POSES_SUFFIX = ".json"
POSES_JSON_FORMAT = ('{"height": H, "width": W, "fps": 25 (optional), "frames": [[[y, x] x 18] or null, ...]} '
                     "in pixels of an H x W frame, CMU OpenPose-18 order, -1 where missing")


def save_driving_poses(path: str, frames: Sequence[Optional[np.ndarray]], height: int, width: int,
                       fps: Optional[float] = None) -> None:
    """Writes driving poses in the `POSES_JSON_FORMAT` (None frames as null), atomically."""
    from tfrf.io import atomic_write_text

    content = {"height": int(height), "width": int(width), "frames": [
        None if frame is None else np.asarray(frame, np.float64).tolist() for frame in frames
    ]}
    if fps:
        content["fps"] = float(fps)
    atomic_write_text(os.fspath(path), json.dumps(content))


def load_driving_poses(path: str) -> Tuple[List[Optional[np.ndarray]], Tuple[int, int], Optional[float]]:
    """Reads a poses JSON: (per frame float32 [18, 2] (y, x) or None without a person,
    (H, W) of the driving frames, fps or None).

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the file (and frame) when it is not in `POSES_JSON_FORMAT`.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"driving poses {path} do not exist")
    with open(path, encoding="utf-8") as stream:
        try:
            content = json.load(stream)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{path}: not JSON ({error})") from None
    if not isinstance(content, dict) or not {"height", "width", "frames"} <= set(content):
        raise ValueError(f"{path}: expected {POSES_JSON_FORMAT}")
    size = (content["height"], content["width"])
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
        raise ValueError(f"{path}: height and width must be positive integers, got {list(size)}")
    frames = content["frames"]
    if not isinstance(frames, list) or not frames:
        raise ValueError(f"{path}: frames must be a non-empty list of [18, 2] (y, x) poses")
    poses: List[Optional[np.ndarray]] = []
    for index, frame in enumerate(frames):
        if frame is None:
            poses.append(None)
            continue
        try:
            keypoints = np.asarray(frame, dtype=np.float32)
        except (TypeError, ValueError):
            keypoints = np.zeros(0)
        if keypoints.shape != (keypoints_lib.NUM_KEYPOINTS, 2) or not np.all(np.isfinite(keypoints)):
            raise ValueError(f"{path}: frame {index} must be 18 finite [y, x] pairs (or null), got shape "
                             f"{keypoints.shape}")
        present = keypoints_lib.present(keypoints)
        keypoints[~present] = keypoints_lib.MISSING
        poses.append(keypoints if present.any() else None)
    fps = content.get("fps")
    if fps is not None and (not isinstance(fps, (int, float)) or isinstance(fps, bool) or fps <= 0):
        raise ValueError(f"{path}: fps must be a positive number, got {fps!r}")
    return poses, (int(size[0]), int(size[1])), float(fps) if fps else None


def driving_poses(driving: str, size: Sequence[int], fit: str = "pad",
                  threshold: float = keypoint_detection.DEFAULT_THRESHOLD,
                  confidence: float = keypoint_detection.DEFAULT_DETECTION_CONFIDENCE,
                  ) -> Tuple[Iterator[Optional[np.ndarray]], int, Optional[float]]:
    """(per driving frame: keypoints [18, 2] fitted into an image of `size` (H, W), or None
    without a person; the frame count, 0 if unknown; the driving fps or None).

    Args:
        driving: a poses JSON, or a video or folder of frames (`tfrf.pose.frames`, MediaPipe
            pose on every frame).
        size: the model's (H, W).
        fit: "pad" or "stretch", as the sources are fitted.
        threshold: landmark visibility a detected keypoint needs (videos).
        confidence: the lowest person detection confidence accepted (`PoseDetector`).
    """
    driving = os.fspath(driving)
    lowered = driving.lower()
    if lowered.endswith(POSES_SUFFIX):
        poses, frame_size, fps = load_driving_poses(driving)
        fitted = (None if pose is None else keypoints_lib.rescale_keypoints(pose, frame_size, size, fit)
                  for pose in poses)
        return fitted, len(poses), fps
    folder = os.path.isdir(driving)
    if not folder and not lowered.endswith(VIDEO_SUFFIXES):
        raise ValueError(f"driving {driving} must be a poses {POSES_SUFFIX} or a video {VIDEO_SUFFIXES}, "
                         "or a folder of frames")
    if not folder and not os.path.isfile(driving):
        raise FileNotFoundError(f"driving video {driving} does not exist")
    frames, count, fps = read_frames(driving)
    detector = keypoint_detection.PoseDetector(threshold, confidence, static_image_mode=False)

    def detected() -> Iterator[Optional[np.ndarray]]:
        with detector:
            for frame in frames:
                keypoints = detector(frame)
                yield None if keypoints is None else keypoints_lib.rescale_keypoints(
                    keypoints, frame.shape[:2], size, fit)

    return detected(), count, fps


class PersonRenderer:
    """One generated frame per target pose, with the K sources fixed.

    Args:
        generator: a built generator taking 18 keypoint heatmaps (`tfrf.runs.load_generator`).
        source_images: K uint8 [H, W, 3] photos fitted to the model's size.
        source_keypoints: K [18, 2] (y, x) keypoints in those images' pixels.
    """

    def __init__(self, generator, source_images: Sequence[np.ndarray], source_keypoints: Sequence[np.ndarray]):
        self.generator = generator
        self.height, self.width = source_images[0].shape[:2]
        # The source images and heatmaps are computed once; only the target changes.
        self._inputs = inference.build_inputs(source_images, source_keypoints, source_keypoints[0])

    def render(self, target_keypoints: np.ndarray) -> np.ndarray:
        """The person in `target_keypoints` ([18, 2] in the model's pixels): uint8 [H, W, 3]."""
        heatmaps = keypoints_lib.keypoints_to_heatmaps(target_keypoints, self.height, self.width).numpy()
        return inference.generate_image(self.generator, {**self._inputs, "target_pose": heatmaps[None]})


def check_people_model(config) -> None:
    """A people model takes 18 keypoint heatmaps; anything else is a ValueError naming it."""
    inference.check_keypoint_model(config, "person animation")


def animate_person(generator, sources: Sequence[Union[str, os.PathLike]], driving: str, out: Optional[str] = None,
                   source_poses: Optional[Sequence[Optional[str]]] = None, fps: Optional[float] = None,
                   fit: str = "pad", threshold: float = keypoint_detection.DEFAULT_THRESHOLD,
                   confidence: float = keypoint_detection.DEFAULT_DETECTION_CONFIDENCE, progress: bool = True, return_frames: bool = False) -> AnimationResult:
    """Animates the person of the source photos with the driving poses; writes `out`.

    Args:
        generator: a built people generator (`generator.config`: 18 pose channels).
        sources: K photos of one person.
        driving: a driving video, or a poses JSON (`POSES_JSON_FORMAT`).
        out: a .gif or .mp4; None renders without writing (e.g. with `return_frames`).
        source_poses: a pose JSON per source (`save_pose_json`), None to detect with MediaPipe.
        fps: the output frame rate; default the driving video's (or the JSON's "fps"), else 25.
        fit: how photos and driving frames are fitted to the model's size: "pad" or "stretch".
        threshold: landmark visibility a detected keypoint needs.
        confidence: the lowest person detection confidence accepted (`PoseDetector`).
        progress: show a progress bar.
        return_frames: keep the frames in the result.

    Returns:
        AnimationResult: frames, driving frames without a person (`missing_frames`), model and
        pipeline fps, the frames if asked for.

    Raises:
        NoDrivingPoseError: (a ValueError) when no driving frame has a person; nothing is written.
    """
    config = generator.config
    check_people_model(config)
    if not len(sources):
        raise ValueError("person animation needs at least one source photo")
    source_poses = list(source_poses) if source_poses is not None else [None] * len(sources)
    if len(source_poses) != len(sources):
        raise ValueError(f"got {len(source_poses)} source poses for {len(sources)} sources")
    size = config.image_size
    fitted = [inference.load_source(os.fspath(source), size, pose, fit, threshold, confidence)
              for source, pose in zip(sources, source_poses)]
    renderer = PersonRenderer(generator, [image for image, _ in fitted], [points for _, points in fitted])
    targets, count, driving_fps = driving_poses(driving, size, fit, threshold, confidence)
    return run_animation(targets, renderer.render, fitted[0][1], total=count, out=out,
                         fps=float(fps or driving_fps or DEFAULT_FPS), progress=progress,
                         return_frames=return_frames, description="animate person",
                         driving_name=f"driving {driving}", subject="person")
