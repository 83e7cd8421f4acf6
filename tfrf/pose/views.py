"""View poses of multi-view objects (ShapeNet chairs, the synthetic dataset): 21-channel maps.

A view is an azimuth bin (18 bins, 20 degrees apart) and an elevation bin (0, 10, 20 degrees).
Its pose map is the concatenation of the two one-hot vectors, broadcast over H x W, so exactly
two of the 21 channels are 1 at every pixel.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tensorflow as tf

NUM_AZIMUTH_BINS = 18
AZIMUTH_STEP_DEGREES = 20.0
ELEVATIONS_DEGREES = (0.0, 10.0, 20.0)
NUM_ELEVATION_BINS = len(ELEVATIONS_DEGREES)
VIEW_CHANNELS = NUM_AZIMUTH_BINS + NUM_ELEVATION_BINS


def view_vector(azimuth_bin, elevation_bin) -> tf.Tensor:
    """One-hot azimuth (18) followed by one-hot elevation (3): float32 [..., 21]."""
    import tensorflow as tf

    azimuth_bin = tf.convert_to_tensor(azimuth_bin)
    elevation_bin = tf.convert_to_tensor(elevation_bin)
    return tf.concat(
        [
            tf.one_hot(tf.cast(azimuth_bin, tf.int32), NUM_AZIMUTH_BINS, dtype=tf.float32),
            tf.one_hot(tf.cast(elevation_bin, tf.int32), NUM_ELEVATION_BINS, dtype=tf.float32),
        ],
        axis=-1,
    )


def view_pose_map(azimuth_bin, elevation_bin, height: int, width: int) -> tf.Tensor:
    """The 21-channel view map [H, W, 21] (leading batch dims of the bins are kept)."""
    import tensorflow as tf

    vector = view_vector(azimuth_bin, elevation_bin)
    vector = tf.expand_dims(tf.expand_dims(vector, -2), -2)
    shape = tf.concat([tf.shape(vector)[:-3], [height, width, VIEW_CHANNELS]], axis=0)
    return tf.broadcast_to(vector, shape)


def encode_view(raw_pose, height: int, width: int) -> tf.Tensor:
    """Pose encoder for a stored view `[azimuth_bin, elevation_bin]` (ints): [H, W, 21]."""
    import tensorflow as tf

    raw_pose = tf.convert_to_tensor(raw_pose)
    return view_pose_map(raw_pose[..., 0], raw_pose[..., 1], height, width)
