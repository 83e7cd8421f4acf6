"""Random generator inputs of a config's size, shared by the model, export and serving tests."""
import numpy as np


def random_inputs(config, batch=1, sources=2, seed=0, height=None, width=None):
    """Images uniform in [-1, 1] and pose maps uniform in [0, 1], float32, DESIGN.md layout."""
    rng = np.random.default_rng(seed)
    h, w, cp = height or config.image_height, width or config.image_width, config.pose_channels
    return {
        "source_images": rng.uniform(-1, 1, size=(batch, sources, h, w, 3)).astype(np.float32),
        "source_poses": rng.uniform(0, 1, size=(batch, sources, h, w, cp)).astype(np.float32),
        "target_pose": rng.uniform(0, 1, size=(batch, h, w, cp)).astype(np.float32),
    }
