"""A photometric warping loss of flow fields: the sources, warped by their flows, should look like
the target where one of them sees it.

Not in the paper: its correctness loss compares pretrained VGG19 features. Where the VGG weights
are random (`tfrf demo`, which downloads nothing) those features carry little of the image, and
for scenes whose surface points look the same from every view (the built-in chairs: Lambert
shading with lights fixed to the object) the pixels themselves are the better signal. A
`LossWeights.photometric` of 0 (every paper preset) leaves it out.
"""
from __future__ import annotations

from typing import Callable, Optional

import tensorflow as tf

from tfrf.ops import fold_sources, unfold_sources


def photometric_loss(source_images: tf.Tensor, target_image: tf.Tensor, flow: tf.Tensor,
                     warp_fn: Optional[Callable[[tf.Tensor, tf.Tensor], tf.Tensor]] = None) -> tf.Tensor:
    """Mean over target pixels of the smallest, over the K sources, per-pixel L1 distance (mean
    over channels) between the target and the source warped by its flow, both area-resized to the
    flow's map; a float32 scalar. The minimum leaves a target pixel that a source does not see to
    the sources that do.

    Args:
        source_images: `[B, K, H, W, C]` in [-1, 1].
        target_image: `[B, H, W, C]`.
        flow: `[B, K, h, w, 2]`, dx then dy in pixels of the h x w map; target pixel (x, y) reads
            the source at (x + dx, y + dy).
        warp_fn: `(features, flow) -> warped`; default `tfrf.ops.warp` (gather backend).
    """
    if warp_fn is None:
        from tfrf.losses.correctness import _default_warp as warp_fn

    source_images = tf.cast(source_images, tf.float32)
    target_image = tf.cast(target_image, tf.float32)
    flow = tf.cast(flow, tf.float32)
    size = tf.shape(flow)[2:4]
    sources = fold_sources(source_images)
    small_sources = tf.image.resize(sources, size, method="area")
    small_target = tf.image.resize(target_image, size, method="area")
    warped = unfold_sources(warp_fn(small_sources, fold_sources(flow)), tf.shape(source_images)[:2])
    distance = tf.reduce_mean(tf.abs(warped - small_target[:, None]), axis=-1)  # [B, K, h, w]
    return tf.reduce_mean(tf.reduce_min(distance, axis=1))
