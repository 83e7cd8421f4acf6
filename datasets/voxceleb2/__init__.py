"""VoxCeleb2 face crops with 68-point landmark drawings, TFDS builder."""
from tfrf.datasets.voxceleb2.voxceleb2_dataset_builder import (
    Voxceleb2,
    VoxCelebConfig,
    read_video_frames,
    sample_frame_indices,
)

__all__ = ["Voxceleb2", "VoxCelebConfig", "read_video_frames", "sample_frame_indices"]
