"""Writes tiny KITTI data in both raw layouts (for tests and demos).

Every frame is a flat colour that encodes it: red = frame number, green = 60 * sequence,
blue = 100, so a test can tell which frame an image (or a pipeline output) is. Poses follow a
smooth synthetic trajectory (`trajectory_pose6`).
"""
from __future__ import annotations

import os
from typing import Dict, Sequence

import numpy as np

from tfrf.datasets import view_common
from tfrf.datasets.kitti import kitti_dataset_builder as builder_lib
from tfrf.pose import camera


def frame_color(sequence: int, frame: int):
    return (frame, 60 * sequence, 100)


def trajectory_pose6(sequence: int, frame: int) -> np.ndarray:
    """A 6-DOF pose (tx, ty, tz, rx, ry, rz) driving forward and slowly turning."""
    t = float(frame)
    return np.array([0.3 * t + sequence, 0.01 * t, 1.1 * t,
                     0.02 * np.sin(0.1 * t), 0.05 * t - 0.5 * sequence, 0.01 * np.cos(0.2 * t)])


def _frame_image(sequence: int, frame: int, height: int, width: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(frame_color(sequence, frame), np.uint8), (height, width, 3)).copy()


def write_dummy_hdf5(root: str, frames_per_sequence: Dict[int, int], test_keys: Sequence[str],
                     image_size: int = 16, extra_train_keys: Sequence[str] = ()) -> Dict[str, list]:
    """Writes data_kitti.hdf5 (every frame) and id files (test keys; every other frame trains).

    Returns:
        split -> keys written to its id file.
    """
    views = {}
    for sequence, count in frames_per_sequence.items():
        for frame in range(count):
            views[builder_lib.frame_key(sequence, frame)] = (
                _frame_image(sequence, frame, image_size, image_size), trajectory_pose6(sequence, frame))
    ids = {"train": [key for key in views if key not in set(test_keys)] + list(extra_train_keys),
           "test": list(test_keys)}
    view_common.write_hdf5_views(os.path.join(root, builder_lib.HDF5_FILE), views)
    for split, keys in ids.items():
        view_common.write_id_file(os.path.join(root, builder_lib.ID_FILES[split]), keys)
    return ids


def write_dummy_odometry(root: str, frames_per_sequence: Dict[int, int], height: int = 12, width: int = 40,
                         poses_per_sequence: Dict[int, int] = None) -> None:
    """Writes `sequences/NN/image_2/NNNNNN.png` and `poses/NN.txt` (12 numbers per line).

    Args:
        poses_per_sequence: optionally, a different number of pose lines for some sequences.
    """
    from PIL import Image

    poses_per_sequence = poses_per_sequence or {}
    os.makedirs(os.path.join(root, "poses"), exist_ok=True)
    for sequence, count in frames_per_sequence.items():
        image_dir = os.path.join(root, "sequences", f"{sequence:02d}", "image_2")
        os.makedirs(image_dir, exist_ok=True)
        for frame in range(count):
            Image.fromarray(_frame_image(sequence, frame, height, width)).save(os.path.join(image_dir, f"{frame:06d}.png"))
        lines = []
        for frame in range(poses_per_sequence.get(sequence, count)):
            matrix = camera.pose6_to_matrix(trajectory_pose6(sequence, frame))
            lines.append(" ".join(f"{value:.9e}" for value in matrix.reshape(-1)))
        view_common.atomic_write_text(os.path.join(root, "poses", f"{sequence:02d}.txt"), "\n".join(lines) + "\n")
