"""Random generator inputs of the benchmarks: costs do not depend on the values."""
from __future__ import annotations

from typing import Dict

import numpy as np


def random_inputs(batch_size: int, num_sources: int, height: int, width: int, pose_channels: int, seed: int = 0,
                  target_image: bool = False) -> Dict[str, np.ndarray]:
    """float32 generator inputs (images uniform in [-1, 1], poses in [0, 1]), with a
    `target_image` for a training batch."""
    rng = np.random.default_rng(seed)
    inputs = {
        "source_images": rng.uniform(-1, 1, (batch_size, num_sources, height, width, 3)).astype(np.float32),
        "source_poses": rng.uniform(0, 1, (batch_size, num_sources, height, width, pose_channels)).astype(np.float32),
        "target_pose": rng.uniform(0, 1, (batch_size, height, width, pose_channels)).astype(np.float32),
    }
    if target_image:
        inputs["target_image"] = rng.uniform(-1, 1, (batch_size, height, width, 3)).astype(np.float32)
    return inputs


def config_inputs(config, batch_size: int = 1, num_sources: int = 1, **options) -> Dict[str, np.ndarray]:
    """`random_inputs` of a `ModelConfig`'s image size and pose channels."""
    return random_inputs(batch_size, num_sources, config.image_height, config.image_width, config.pose_channels,
                         **options)
