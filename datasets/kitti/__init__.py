"""KITTI odometry (Sun et al. HDF5 files or the raw odometry layout) TFDS builder."""
from tfrf.datasets.kitti.kitti_dataset_builder import KittiConfig, KittiOdometry, read_pose_file

__all__ = ["KittiConfig", "KittiOdometry", "read_pose_file"]
