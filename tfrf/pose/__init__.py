"""Pose representations: every pose becomes a map [H, W, Cp].

- `tfrf.pose.keypoints`: OpenPose-18 keypoints, CSV annotations, Gaussian heatmaps (18 ch).
- `tfrf.pose.keypoint_detection`: OpenPose-18 keypoints of photos and video frames (MediaPipe).
- `tfrf.pose.views`: view one-hots (21 ch).
- `tfrf.pose.camera`: 6-DOF camera poses (6 ch).
- `tfrf.pose.face`: 68 facial landmarks, face crops and RGB landmark drawings (3 ch).

A *pose encoder* turns a stored raw pose (keypoints, view bins, a 6-DOF vector, a landmark
drawing) into the map the networks take: `encoder(raw_pose, height, width) -> [H, W, Cp]`.
Datasets name their encoder; the input pipeline looks it up here, so no network or pipeline
code branches on the dataset.

The pose modules import TensorFlow (and MediaPipe) only inside the functions that need it, so
importing this package, as the command line's argument parsers do, stays light.
"""
from tfrf.pose import camera, face, keypoints, views
from tfrf.pose.face import draw_landmarks
from tfrf.pose.keypoint_detection import PoseDetector, extract_keypoints
from tfrf.pose.keypoints import NoPersonFoundError, keypoints_to_heatmaps
from tfrf.pose.views import view_pose_map

# name -> (encoder function, channels)
_ENCODERS = {
    "keypoints18": (keypoints.encode_keypoints, keypoints.NUM_KEYPOINTS),
    "view21": (views.encode_view, views.VIEW_CHANNELS),
    "camera6": (camera.encode_camera, camera.CAMERA_CHANNELS),
    "landmarks68": (face.encode_landmark_drawing, face.DRAWING_CHANNELS),
}


def _registered(name: str):
    if name not in _ENCODERS:
        raise ValueError(f"unknown pose encoder {name!r}; choose one of {sorted(_ENCODERS)}")
    return _ENCODERS[name]


def encoder(name: str):
    """The pose encoder registered under `name` (see `_ENCODERS`)."""
    return _registered(name)[0]


def encoder_channels(name: str) -> int:
    return _registered(name)[1]


__all__ = [
    "NoPersonFoundError", "PoseDetector", "draw_landmarks", "encoder", "encoder_channels", "extract_keypoints",
    "keypoints_to_heatmaps", "view_pose_map",
]
