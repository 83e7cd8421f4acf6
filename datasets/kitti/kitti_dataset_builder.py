"""KITTI odometry for novel view synthesis: frames with 6-DOF camera poses.

Geiger, Lenz, Urtasun, "Are we ready for Autonomous Driving? The KITTI Vision Benchmark
Suite", CVPR 2012; the view-synthesis split and HDF5 files of Sun et al., "Multi-view to Novel
View", ECCV 2018, followed by Lu et al., AAAI 2022 (sources within +-10 frames of the target).
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from tfrf.datasets import view_common
from tfrf.pose import camera

HDF5_FILE = "data_kitti.hdf5"
ID_FILES = {"train": "id_train.txt", "test": "id_test.txt"}
MAX_FRAME_OFFSET = 10
_KEY = re.compile(r"^(\d+)_(\d+)$")

FrameId = Tuple[int, int]  # (sequence, frame)


@dataclasses.dataclass(eq=False)
class KittiConfig(view_common.ViewConfig):
    """KITTI variants.

    Attributes:
        layout: "hdf5" (Sun et al.'s `data_kitti.hdf5` + id files) or "odometry" (the raw
            `sequences/NN/image_2/*.png` + `poses/NN.txt`).
        train_sequences, test_sequences: the split of the "odometry" layout when the manual
            directory has no id files (with id files, both layouts split by them).
    """

    layout: str = "hdf5"
    train_sequences: Tuple[int, ...] = tuple(range(9))
    test_sequences: Tuple[int, ...] = (9, 10)


def frame_key(sequence: int, frame: int) -> str:
    """The key `{sequence:02d}_{frame:06d}` of Sun et al.'s files."""
    return f"{sequence:02d}_{frame:06d}"


def parse_key(key: str, where: str) -> FrameId:
    """(sequence, frame) of a key `{sequence}_{frame}`; ValueError naming `where` otherwise."""
    match = _KEY.match(key)
    if match is None:
        raise ValueError(f"KITTI key {key!r} in {where} is not of the form {{sequence:02d}}_{{frame:06d}}")
    return int(match.group(1)), int(match.group(2))


def read_pose_file(path: str) -> np.ndarray:
    """A KITTI odometry pose file: one camera-to-world 3x4 matrix (12 numbers) per line.

    Returns:
        float64 [N, 3, 4], row i for frame i.
    """
    matrices = []
    with open(path, encoding="utf-8") as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                values = [float(value) for value in line.split()]
            except ValueError as error:
                raise ValueError(f"{path}, line {number}: not a number ({error})") from None
            if len(values) != 12:
                raise ValueError(f"{path}, line {number}: expected 12 numbers (a 3x4 matrix), got {len(values)}")
            matrices.append(np.reshape(values, (3, 4)))
    return np.asarray(matrices, dtype=np.float64).reshape(-1, 3, 4)


def split_members(available: Dict[FrameId, str], train: List[FrameId], test: List[FrameId],
                  max_offset: int) -> Dict[str, List[Tuple[FrameId, bool]]]:
    """The frames of each split, with whether each may be a target.

    Training: the training frames, all targets. Test: the test frames (targets) plus every
    other available frame of the same sequence within `max_offset` of a test frame, stored
    as a source only (Sun et al. draw test sources from all neighbouring frames).
    """
    test_set = set(test)
    by_sequence: Dict[int, List[int]] = {}
    for sequence, frame in available:
        by_sequence.setdefault(sequence, []).append(frame)
    neighbours = set()
    for sequence, frame in test:
        frames = np.sort(by_sequence.get(sequence, []))
        low = np.searchsorted(frames, frame - max_offset, side="left")
        high = np.searchsorted(frames, frame + max_offset, side="right")
        neighbours.update((sequence, int(other)) for other in frames[low:high])
    return {
        "train": [(frame_id, True) for frame_id in sorted(train)],
        "test": sorted([(frame_id, True) for frame_id in test_set]
                       + [(frame_id, False) for frame_id in neighbours - test_set]),
    }


class KittiOdometry(view_common.ViewBuilder):
    """KITTI odometry frames (left colour camera) with 6-DOF poses, grouped by sequence."""

    pkg_dir_path = epath.Path(__file__).parent  # README.md and CITATIONS.bib live here
    VIEW_TABLE = {"image": "image", "pose": "pose", "group": "sequence", "order": "frame",
                  "targets_ok": "target_ok", "pose_encoder": "camera6"}
    MAX_OFFSET = MAX_FRAME_OFFSET
    BUILDER_CONFIGS = [
        KittiConfig(name="hdf5", layout="hdf5",
                    description="Sun et al.'s data_kitti.hdf5 and id files; 256x256 images."),
        KittiConfig(name="odometry", layout="odometry",
                    description="The raw KITTI odometry layout, poses converted to 6-DOF, frames resized to 256x256."),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Config "hdf5": download Sun et al.'s (2018) KITTI benchmark files (see the README of their
    "Multi-view to Novel View" repository) into the manual directory:

        <manual_dir>/data_kitti.hdf5   one group per frame keyed {seq:02d}_{frame:06d}, holding
                                       `image` (H x W x 3 uint8) and `pose` (6 values)
        <manual_dir>/id_train.txt      training keys, one per line
        <manual_dir>/id_test.txt       test keys

    Config "odometry": download the KITTI odometry colour images and ground-truth poses
    (research licence) and arrange:

        <manual_dir>/sequences/00/image_2/000000.png ...
        <manual_dir>/poses/00.txt      12 numbers per line: the 3x4 camera-to-world matrix of frame i

    optionally with id_train.txt / id_test.txt as above (otherwise sequences 00-08 train,
    09-10 test; only sequences with a pose file are used).
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=(
                "KITTI odometry frames with 6-DOF camera poses (tx, ty, tz, rx, ry, rz; Euler "
                "angles R = Rz Ry Rx, see tfrf.pose.camera), grouped by sequence. The test split "
                "holds the test frames (target_ok) and their neighbours within +-10 frames as "
                "sources only."
            ),
            features=tfds.features.FeaturesDict({
                "image": self.image_feature(),
                "pose": tfds.features.Tensor(shape=(camera.POSE6_SIZE,), dtype=np.float32),
                "sequence": np.int64,
                "frame": np.int64,
                "target_ok": np.bool_,
                "key": tfds.features.Text(),
            }),
            homepage="https://www.cvlibs.net/datasets/kitti/eval_odometry.php",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        config = self.builder_config
        if config.layout == "hdf5":
            return self._hdf5_splits(dl_manager)
        if config.layout == "odometry":
            return self._odometry_splits(dl_manager)
        raise ValueError(f"{self.name}: unknown layout {config.layout!r}; use 'hdf5' or 'odometry'")

    # --- Sun et al.'s HDF5 files --------------------------------------------------------------

    def _hdf5_splits(self, dl_manager):
        instructions = self.MANUAL_DOWNLOAD_INSTRUCTIONS
        hdf5_path = view_common.manual_file(dl_manager, HDF5_FILE, self.name, instructions)
        id_paths = {split: view_common.manual_file(dl_manager, name, self.name, instructions)
                    for split, name in ID_FILES.items()}
        ids = {split: view_common.read_id_file(path) for split, path in id_paths.items()}
        with view_common.open_hdf5(hdf5_path) as hdf5_file:
            for split, keys in ids.items():
                view_common.check_keys(hdf5_file, keys, id_paths[split], hdf5_path)
            available = {parse_key(key, hdf5_path): key for key in hdf5_file.keys() if _KEY.match(key)}
        listed = {split: [parse_key(key, id_paths[split]) for key in keys] for split, keys in ids.items()}
        members = split_members(available, listed["train"], listed["test"], self.MAX_OFFSET)

        def read(frame_id: FrameId, hdf5_file) -> Tuple[np.ndarray, np.ndarray]:
            key = available[frame_id]
            image, pose = view_common.read_hdf5_view(hdf5_file, key, hdf5_path)
            if pose.shape != (camera.POSE6_SIZE,):
                raise ValueError(f"{hdf5_path}[{key!r}]/pose must hold 6 values (a 6-DOF pose), got {pose.shape}")
            return image, pose

        return {split: self._generate_examples(members[split], available, read, hdf5_path) for split in members}

    # --- the raw odometry layout --------------------------------------------------------------

    def _odometry_splits(self, dl_manager):
        config = self.builder_config
        instructions = self.MANUAL_DOWNLOAD_INSTRUCTIONS
        sequences_dir = view_common.manual_file(dl_manager, "sequences", self.name, instructions)
        poses_dir = view_common.manual_file(dl_manager, "poses", self.name, instructions)
        images: Dict[FrameId, str] = {}
        matrices: Dict[FrameId, np.ndarray] = {}
        for pose_name in sorted(os.listdir(poses_dir)):
            if not pose_name.endswith(".txt"):
                continue
            sequence = int(os.path.splitext(pose_name)[0])
            pose_path = os.path.join(poses_dir, pose_name)
            image_dir = os.path.join(sequences_dir, f"{sequence:02d}", "image_2")
            if not os.path.isdir(image_dir):
                raise FileNotFoundError(f"{self.name}: {pose_path} has no image folder {image_dir}")
            names = sorted(name for name in os.listdir(image_dir) if name.endswith(".png"))
            sequence_poses = read_pose_file(pose_path)
            if len(names) != len(sequence_poses):
                raise ValueError(
                    f"{self.name}: {image_dir} holds {len(names)} frames but {pose_path} has "
                    f"{len(sequence_poses)} poses (one per frame expected)"
                )
            for name, matrix in zip(names, sequence_poses):
                frame_id = (sequence, int(os.path.splitext(name)[0]))
                images[frame_id], matrices[frame_id] = os.path.join(image_dir, name), matrix
        available = {frame_id: frame_key(*frame_id) for frame_id in images}

        manual_dir = os.fspath(dl_manager.manual_dir)
        id_paths = {split: os.path.join(manual_dir, name) for split, name in ID_FILES.items()}
        if all(os.path.exists(path) for path in id_paths.values()):
            listed = {}
            for split, path in id_paths.items():
                listed[split] = [parse_key(key, path) for key in view_common.read_id_file(path)]
                missing = [frame_key(*frame_id) for frame_id in listed[split] if frame_id not in images]
                if missing:
                    raise ValueError(f"key {missing[0]!r} listed in {path} has no frame or pose in {manual_dir}")
        else:
            listed = {
                "train": [frame_id for frame_id in images if frame_id[0] in config.train_sequences],
                "test": [frame_id for frame_id in images if frame_id[0] in config.test_sequences],
            }
        members = split_members(available, listed["train"], listed["test"], self.MAX_OFFSET)

        def read(frame_id: FrameId, _) -> Tuple[np.ndarray, np.ndarray]:
            from PIL import Image

            with Image.open(images[frame_id]) as opened:
                image = np.asarray(opened.convert("RGB"))
            return image, camera.matrix_to_pose6(matrices[frame_id])

        return {split: self._generate_examples(members[split], available, read, None) for split in members}

    # --- examples -----------------------------------------------------------------------------

    def _generate_examples(self, members: List[Tuple[FrameId, bool]], keys: Dict[FrameId, str], read,
                           hdf5_path: Optional[str]) -> Iterator[Tuple[str, dict]]:
        """Examples of one split.

        Args:
            members: (frame id, may be a target) of every frame of the split.
            keys: frame id -> its key in the raw data.
            read: `(frame id, open HDF5 file or None) -> (image, 6-DOF pose)`.
            hdf5_path: the HDF5 file to keep open while reading, if any.
        """
        size = self.builder_config.image_size
        hdf5_file = view_common.open_hdf5(hdf5_path) if hdf5_path else None
        try:
            for frame_id, target_ok in members:
                image, pose = read(frame_id, hdf5_file)
                key = keys[frame_id]
                yield key, {
                    "image": view_common.resize_square(view_common.as_rgb(image, key), size),
                    "pose": pose.astype(np.float32),
                    "sequence": frame_id[0],
                    "frame": frame_id[1],
                    "target_ok": target_ok,
                    "key": key,
                }
        finally:
            if hdf5_file is not None:
                hdf5_file.close()
