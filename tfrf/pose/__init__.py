"""Pose representations: every pose becomes a map [H, W, Cp] (see DESIGN.md).

- `tfrf.pose.keypoints`: OpenPose-18 keypoints, CSV annotations, Gaussian heatmaps (18 ch).
- `tfrf.pose.keypoint_detection`: OpenPose-18 keypoints of photos and video frames (MediaPipe).
- `tfrf.pose.views`: view one-hots (21 ch).
- `tfrf.pose.camera`: 6-DOF camera poses (6 ch).
- `tfrf.pose.face`: 68 facial landmarks, face crops and RGB landmark drawings (3 ch).

A *pose encoder* turns a stored raw pose (keypoints, view bins, a 6-DOF vector, a landmark
drawing) into the map the networks take: `encoder(raw_pose, height, width) -> [H, W, Cp]`.
Datasets name their encoder; the input pipeline looks it up here, so no network or pipeline
code branches on the dataset.
"""
import importlib

# name -> (module, function, channels)
_ENCODERS = {
    "keypoints18": ("tfrf.pose.keypoints", "encode_keypoints", 18),
    "view21": ("tfrf.pose.views", "encode_view", 21),
    "camera6": ("tfrf.pose.camera", "encode_camera", 6),
    "landmarks68": ("tfrf.pose.face", "encode_landmark_drawing", 3),
}


def encoder(name: str):
    """The pose encoder registered under `name` (see `_ENCODERS`)."""
    if name not in _ENCODERS:
        raise ValueError(f"unknown pose encoder {name!r}; choose one of {sorted(_ENCODERS)}")
    module_name, function_name, _ = _ENCODERS[name]
    return getattr(importlib.import_module(module_name), function_name)


def encoder_channels(name: str) -> int:
    if name not in _ENCODERS:
        raise ValueError(f"unknown pose encoder {name!r}; choose one of {sorted(_ENCODERS)}")
    return _ENCODERS[name][2]


_REEXPORTS = {
    "extract_keypoints": "tfrf.pose.keypoint_detection",
    "NoPersonFoundError": "tfrf.pose.keypoint_detection",
    "PoseDetector": "tfrf.pose.keypoint_detection",
    "keypoints_to_heatmaps": "tfrf.pose.keypoints",
    "view_pose_map": "tfrf.pose.views",
    "draw_landmarks": "tfrf.pose.face",
}


def __getattr__(name):
    # Lazy, so that `tfrf.pose.encoder` does not import every pose module (and TensorFlow).
    if name in _REEXPORTS:
        return getattr(importlib.import_module(_REEXPORTS[name]), name)
    raise AttributeError(f"module 'tfrf.pose' has no attribute {name!r}")
