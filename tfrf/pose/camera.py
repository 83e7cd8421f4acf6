"""6-DOF camera poses (KITTI odometry): 3x4 matrices <-> 6-vectors, and the 6-channel pose map.

A camera pose is a camera-to-world matrix `[R | t]` (3x4; a 4x4 homogeneous matrix is also
accepted). Its 6-DOF vector is

    (tx, ty, tz, rx, ry, rz)

- `tx, ty, tz`: the translation t, in the units of the matrix (metres for KITTI).
- `rx, ry, rz`: Euler angles in radians, **extrinsic X-Y-Z** (equivalently intrinsic z-y'-x''):
  `R = Rz(rz) @ Ry(ry) @ Rx(rx)`, i.e. rotate about the world x axis first, then y, then z.
  `rx, rz` lie in (-pi, pi], `ry` in [-pi/2, pi/2]. Gimbal lock is at `ry = +-pi/2`, where only
  `rx - rz` (or `rx + rz`) is determined; there the conversion returns `rz = 0`.

The pose map (registry name `camera6`) is the 6-vector broadcast over H x W, without
normalisation: translation and angles go to the network in the units above.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tensorflow as tf

import numpy as np

POSE6_SIZE = 6
CAMERA_CHANNELS = POSE6_SIZE
# cos(ry) below this counts as gimbal lock (|ry| within ~1e-7 rad of 90 degrees).
_GIMBAL_EPSILON = 1e-7
# |det(R) - 1| above this is not a rotation.
_DETERMINANT_TOLERANCE = 1e-3


def _rotation_x(angle: np.ndarray) -> np.ndarray:
    cos, sin = np.cos(angle), np.sin(angle)
    zero, one = np.zeros_like(angle), np.ones_like(angle)
    return np.stack([np.stack([one, zero, zero], -1), np.stack([zero, cos, -sin], -1),
                     np.stack([zero, sin, cos], -1)], -2)


def _rotation_y(angle: np.ndarray) -> np.ndarray:
    cos, sin = np.cos(angle), np.sin(angle)
    zero, one = np.zeros_like(angle), np.ones_like(angle)
    return np.stack([np.stack([cos, zero, sin], -1), np.stack([zero, one, zero], -1),
                     np.stack([-sin, zero, cos], -1)], -2)


def _rotation_z(angle: np.ndarray) -> np.ndarray:
    cos, sin = np.cos(angle), np.sin(angle)
    zero, one = np.zeros_like(angle), np.ones_like(angle)
    return np.stack([np.stack([cos, -sin, zero], -1), np.stack([sin, cos, zero], -1),
                     np.stack([zero, zero, one], -1)], -2)


def euler_to_rotation(angles) -> np.ndarray:
    """Rotation matrices `Rz(rz) @ Ry(ry) @ Rx(rx)` from angles `[..., 3] = (rx, ry, rz)`.

    Args:
        angles: float [..., 3], radians.

    Returns:
        float64 [..., 3, 3].
    """
    angles = np.asarray(angles, dtype=np.float64)
    if angles.shape[-1:] != (3,):
        raise ValueError(f"Euler angles must have shape [..., 3] (rx, ry, rz), got {angles.shape}")
    return _rotation_z(angles[..., 2]) @ _rotation_y(angles[..., 1]) @ _rotation_x(angles[..., 0])


def rotation_to_euler(rotation) -> np.ndarray:
    """Euler angles `(rx, ry, rz)` with `R = Rz(rz) @ Ry(ry) @ Rx(rx)`.

    Args:
        rotation: float [..., 3, 3], proper rotations (det(R) = +1).

    Returns:
        float64 [..., 3] radians; at gimbal lock (cos(ry) ~ 0) `rz` is set to 0.
    """
    rotation = np.asarray(rotation, dtype=np.float64)
    if rotation.shape[-2:] != (3, 3):
        raise ValueError(f"rotation must have shape [..., 3, 3], got {rotation.shape}")
    cos_ry = np.hypot(rotation[..., 0, 0], rotation[..., 1, 0])
    ry = np.arctan2(-rotation[..., 2, 0], cos_ry)
    regular = cos_ry > _GIMBAL_EPSILON
    rx = np.where(regular, np.arctan2(rotation[..., 2, 1], rotation[..., 2, 2]),
                  # rz = 0: R[0,1] = sin(ry) sin(rx), R[1,1] = cos(rx), sin(ry) = +-1.
                  np.arctan2(np.sign(-rotation[..., 2, 0]) * rotation[..., 0, 1], rotation[..., 1, 1]))
    rz = np.where(regular, np.arctan2(rotation[..., 1, 0], rotation[..., 0, 0]), 0.0)
    return np.stack([rx, ry, rz], axis=-1)


def matrix_to_pose6(matrix) -> np.ndarray:
    """Camera-to-world matrices -> 6-DOF vectors `(tx, ty, tz, rx, ry, rz)`.

    Args:
        matrix: float [..., 3, 4] (or [..., 4, 4] homogeneous), `[R | t]` with R a rotation.

    Returns:
        float64 [..., 6].

    Raises:
        ValueError: for another shape, or a rotation block whose determinant is not ~1.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim < 2 or matrix.shape[-1] != 4 or matrix.shape[-2] not in (3, 4):
        raise ValueError(f"camera matrix must have shape [..., 3, 4] or [..., 4, 4], got {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        raise ValueError("camera matrix holds non-finite values")
    rotation = matrix[..., :3, :3]
    determinant = np.linalg.det(rotation)
    bad = np.abs(determinant - 1.0) > _DETERMINANT_TOLERANCE
    if np.any(bad):
        first = np.argwhere(np.atleast_1d(bad))[0].tolist()
        raise ValueError(
            f"camera matrix {first} has a rotation block with determinant "
            f"{np.atleast_1d(determinant)[tuple(first)]:.6f}, expected 1 (a proper rotation)"
        )
    return np.concatenate([matrix[..., :3, 3], rotation_to_euler(rotation)], axis=-1)


def pose6_to_matrix(pose6) -> np.ndarray:
    """6-DOF vectors `(tx, ty, tz, rx, ry, rz)` -> camera-to-world matrices `[R | t]`.

    Args:
        pose6: float [..., 6].

    Returns:
        float64 [..., 3, 4].
    """
    pose6 = np.asarray(pose6, dtype=np.float64)
    if pose6.shape[-1:] != (POSE6_SIZE,):
        raise ValueError(f"6-DOF pose must have shape [..., 6] (tx, ty, tz, rx, ry, rz), got {pose6.shape}")
    rotation = euler_to_rotation(pose6[..., 3:])
    return np.concatenate([rotation, pose6[..., :3, None]], axis=-1)


def encode_camera(raw_pose, height: int, width: int) -> tf.Tensor:
    """Pose encoder `camera6`: a 6-DOF vector [..., 6] broadcast to float32 [..., H, W, 6].

    No normalisation is applied (translation in the data's units, angles in radians).
    """
    import tensorflow as tf

    raw_pose = tf.cast(tf.convert_to_tensor(raw_pose), tf.float32)
    if raw_pose.shape.rank is not None and (raw_pose.shape.rank < 1 or raw_pose.shape[-1] not in (None, POSE6_SIZE)):
        raise ValueError(f"camera pose must have shape [..., 6], got {raw_pose.shape}")
    vector = raw_pose[..., None, None, :]
    shape = tf.concat([tf.shape(raw_pose)[:-1], [height, width, POSE6_SIZE]], axis=0)
    return tf.broadcast_to(vector, shape)
