"""Gaussian resampling of a feature map by a flow field: GFLA's `resample2d`.

GFLA (Ren et al. CVPR 2020) scores its flow fields with the sampling-correctness loss, which
samples the source VGG features with a CUDA op (`model/networks/resample2d_package`,
`Resample2d(kernel_size=4, dilation=1, sigma=2)`) instead of bilinearly. For output position
p = (x, y) with flow (dx, dy), let x̃ = x + dx, ỹ = y + dy, x0 = ⌊x̃⌋, α = x̃ − x0 (likewise y0, β).
The kernel reads the `kernel_size` columns x0 − k/2 + 1 … x0 + k/2 and rows y0 − k/2 + 1 … y0 + k/2
(for k = 4: offsets −1, 0, 1, 2), each index clamped into the map (the border repeats), and weighs
column x0 + o by exp(−(o − α)² / 2σ²) — the Gaussian of the true distance from x̃, computed before
clamping — and likewise for rows; the output is the weighted sum over the k × k neighbourhood
divided by the sum of the weights:

    out(p) = Σ_{i,j} g(i − β) g(j − α) f(clamp(y0 + i), clamp(x0 + j)) / (Σ_i g(i − β) Σ_j g(j − α))

Unlike bilinear warping a zero flow is not the identity (it blurs with the Gaussian), and a flow
pointing off the map reads the clamped border rather than zeros. The output has the flow's
height and width. The gradient w.r.t. the flow is TF's autodiff of the formula above, which is
what the CUDA backward computes for the flow (its feature gradient takes the fraction with
`int()`, not `floor`, for negative coordinates; autodiff here uses the forward's `floor`).

Pure TensorFlow (floor, clamped flat gathers): runs under XLA, with unknown shapes, and
converts to builtin TFLite ops.
"""
from __future__ import annotations

import tensorflow as tf

from tfrf.ops.shapes import check_rank, check_same_first_dimension
from tfrf.ops.warp import base_grid


def _check_inputs(features: tf.Tensor, flow: tf.Tensor, sigma: float, kernel_size: int) -> None:
    check_rank(features, 4, "gaussian_resample", "features", "[B, H, W, C]")
    check_rank(flow, 4, "gaussian_resample", "flow", "[B, h, w, 2] (dx, dy)", last=2)
    check_same_first_dimension("gaussian_resample", "flow", flow, "features", features, "batch size")
    if not isinstance(kernel_size, int) or kernel_size < 2 or kernel_size % 2:
        raise ValueError(f"gaussian_resample: kernel_size must be an even integer >= 2, got {kernel_size!r}")
    if not sigma > 0:
        raise ValueError(f"gaussian_resample: sigma must be > 0, got {sigma!r}")


def _axis_taps(coordinate: tf.Tensor, size: tf.Tensor, sigma: float, kernel_size: int):
    """Per tap offset o: the clamped int32 index ⌊c⌋ + o and the weight exp(−(o − frac)² / 2σ²)."""
    start = tf.floor(coordinate)
    fraction = coordinate - tf.stop_gradient(start)
    start = tf.cast(start, tf.int32)
    taps = []
    for offset in range(1 - kernel_size // 2, kernel_size // 2 + 1):
        index = tf.clip_by_value(start + offset, 0, size - 1)
        weight = tf.exp(-tf.square(offset - fraction) / (2.0 * sigma * sigma))
        taps.append((index, weight))
    return taps


def gaussian_resample(features: tf.Tensor, flow: tf.Tensor, sigma: float = 2.0, kernel_size: int = 4) -> tf.Tensor:
    """GFLA's `resample2d`: Gaussian-weighted k × k sampling of `features` at `p + flow(p)`.

    Args:
        features: `[B, H, W, C]` map to sample.
        flow: `[B, h, w, 2]`, channel 0 = dx, channel 1 = dy, in pixels of `features`.
        sigma: the Gaussian's standard deviation in pixels (GFLA: 2).
        kernel_size: the even neighbourhood width k (GFLA: 4).

    Returns:
        `[B, h, w, C]` in the features' dtype.
    """
    features = tf.convert_to_tensor(features)
    flow = tf.convert_to_tensor(flow)
    _check_inputs(features, flow, sigma, kernel_size)
    coordinate_dtype = tf.float64 if tf.float64 in (features.dtype, flow.dtype) else tf.float32
    flow = tf.cast(flow, coordinate_dtype)

    feature_shape = tf.shape(features)
    batch, height, width, channels = feature_shape[0], feature_shape[1], feature_shape[2], feature_shape[3]
    flow_shape = tf.shape(flow)
    out_height, out_width = flow_shape[1], flow_shape[2]
    grid = base_grid(out_height, out_width, coordinate_dtype)
    x = grid[..., 0] + flow[..., 0]  # [B, h, w]
    y = grid[..., 1] + flow[..., 1]

    columns = _axis_taps(x, width, sigma, kernel_size)
    rows = _axis_taps(y, height, sigma, kernel_size)
    flat = tf.reshape(features, tf.stack([batch, height * width, channels]))
    total = None
    for row_index, row_weight in rows:
        for column_index, column_weight in columns:
            indices = tf.reshape(row_index * width + column_index, tf.stack([batch, -1]))
            sample = tf.gather(flat, indices, batch_dims=1)  # [B, h*w, C]
            weight = tf.reshape(tf.cast(row_weight * column_weight, features.dtype), tf.stack([batch, -1, 1]))
            term = weight * sample
            total = term if total is None else total + term
    normalizer = tf.add_n([weight for _, weight in rows]) * tf.add_n([weight for _, weight in columns])
    normalizer = tf.reshape(tf.cast(normalizer, features.dtype), tf.stack([batch, -1, 1]))
    return tf.reshape(total / normalizer, tf.stack([batch, out_height, out_width, channels]))
