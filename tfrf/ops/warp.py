"""Bilinear warping of feature maps by a dense flow field.

`warp(f, flow)` samples `f` at `(x + dx, y + dy)` for every pixel `(x, y)`, bilinearly; samples
falling outside the map count as zero. This is exactly `tfa.image.resampler(f, base_grid + flow)`.

Two backends, side by side:
- "tfa": `tfa.image.resampler` — fused kernels on CPU and GPU; the `Addons>Resampler` op exists
  neither in stock TF-Serving nor in TFLite, and has no XLA kernel.
- "gather": pure TensorFlow (floor, four gathers, validity masks). Works under XLA, with unknown
  batch/height/width, in float16 and float32, and converts to builtin TFLite ops only. Every
  export uses it.

For TFLite exports `ResidualFusingBlock` switches (`export_kernels`) to the corner form below:
`pad_for_warp` pads the map with zeros once (2 columns left, 1 right, 2 rows top, 3 bottom) and
`warp_corners` clamps the top-left corner into the padding, so every out-of-map sample reads a
zero instead of being masked (same values as `warp_gather`), and the four corners are one
gather of `[..., 4]` flat indices. Index arithmetic is int32 (exact, and left alone by int8
quantization). The gather itself (`gather_rows`) takes its indices flattened to one dimension
and reshapes the rows it reads: TFLite's GPU delegate only runs GATHER with 1-D indices
(`tf.lite.experimental.Analyzer.analyze(..., gpu_compatibility=True)`), and the result is the
same tensor.
"""
from __future__ import annotations

import tensorflow as tf

from tfrf.ops.shapes import check_rank

BACKENDS = ("tfa", "gather")


def base_grid(height, width, dtype=tf.float32) -> tf.Tensor:
    """Pixel coordinates `[h, w, 2]` with channel 0 = x (column) and channel 1 = y (row)."""
    ys = tf.cast(tf.range(height), dtype)
    xs = tf.cast(tf.range(width), dtype)
    grid_y, grid_x = tf.meshgrid(ys, xs, indexing="ij")
    return tf.stack([grid_x, grid_y], axis=-1)


def _check_inputs(features: tf.Tensor, flow: tf.Tensor) -> None:
    check_rank(features, 4, "warp", "features", "[B, h, w, C]")
    check_rank(flow, 4, "warp", "flow", "[B, h, w, 2]")
    if flow.shape[-1] is not None and flow.shape[-1] != 2:
        raise ValueError(f"warp: flow must be [B, h, w, 2] (dx, dy), got shape {flow.shape}")
    for axis, name in ((0, "B"), (1, "h"), (2, "w")):
        a, b = features.shape[axis], flow.shape[axis]
        if a is not None and b is not None and a != b:
            raise ValueError(
                f"warp: flow must be [B, h, w, 2] matching features [B, h, w, C] = "
                f"{features.shape}; got flow {flow.shape} ({name} differs)"
            )


def warp_tfa(features: tf.Tensor, flow: tf.Tensor) -> tf.Tensor:
    """Reference backend: `tfa.image.resampler` on `base_grid + flow`.

    The resampler takes coordinates of the features' dtype, and float16 cannot address a 256-px
    map at sub-pixel precision: float16 features are resampled in float32 and cast back."""
    import tensorflow_addons as tfa  # imported lazily: exports never load the Addons ops

    shape = tf.shape(features)
    sample_dtype = tf.float32 if features.dtype in (tf.float16, tf.bfloat16) else features.dtype
    coordinates = base_grid(shape[1], shape[2], sample_dtype) + tf.cast(flow, sample_dtype)
    return tf.cast(tfa.image.resampler(tf.cast(features, sample_dtype), coordinates), features.dtype)


def warp_gather(features: tf.Tensor, flow: tf.Tensor) -> tf.Tensor:
    """Pure-TF backend: four flat gathers with per-corner validity masks.

    Coordinates are computed in float32 (float64 for float64 inputs) whatever the feature
    dtype: float16 cannot address a 256-px map at sub-pixel precision. The interpolation weights
    are cast to the feature dtype.
    """
    shape = tf.shape(features)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    coordinate_dtype = tf.float64 if tf.float64 in (features.dtype, flow.dtype) else tf.float32
    flow = tf.cast(flow, coordinate_dtype)
    grid = base_grid(height, width, coordinate_dtype)
    x = tf.expand_dims(grid[..., 0], 0) + flow[..., 0]  # [B, h, w]
    y = tf.expand_dims(grid[..., 1], 0) + flow[..., 1]

    x0 = tf.stop_gradient(tf.floor(x))
    y0 = tf.stop_gradient(tf.floor(y))
    wx1 = x - x0
    wy1 = y - y0
    wx0 = 1.0 - wx1
    wy0 = 1.0 - wy1
    x0i = tf.cast(x0, tf.int32)
    y0i = tf.cast(y0, tf.int32)
    x1i = x0i + 1
    y1i = y0i + 1

    flat = tf.reshape(features, tf.stack([batch * height * width, channels]))
    batch_offset = tf.reshape(tf.range(batch) * (height * width), tf.stack([batch, 1, 1]))

    def corner(xi, yi, weight):
        valid = tf.logical_and(
            tf.logical_and(tf.greater_equal(xi, 0), tf.less(xi, width)),
            tf.logical_and(tf.greater_equal(yi, 0), tf.less(yi, height)),
        )
        index = batch_offset + tf.clip_by_value(yi, 0, height - 1) * width + tf.clip_by_value(xi, 0, width - 1)
        values = tf.gather(flat, index)  # [B, h, w, C]
        weight = weight * tf.cast(valid, coordinate_dtype)
        return values * tf.expand_dims(tf.cast(weight, features.dtype), -1)

    return (
        corner(x0i, y0i, wx0 * wy0)
        + corner(x1i, y0i, wx1 * wy0)
        + corner(x0i, y1i, wx0 * wy1)
        + corner(x1i, y1i, wx1 * wy1)
    )


PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 2, 1, 2, 3


def pad_for_warp(features: tf.Tensor) -> tf.Tensor:
    """`[N, h, w, C]` -> the zero-padded map flattened to `[N * (h + 5) * (w + 3), C]`."""
    padded = tf.pad(features, [[0, 0], [PAD_TOP, PAD_BOTTOM], [PAD_LEFT, PAD_RIGHT], [0, 0]])
    return tf.reshape(padded, [-1, tf.shape(features)[-1]])


def warp_corners(flow: tf.Tensor, height: int, width: int):
    """Flat indices into `pad_for_warp`'s map and bilinear weights of the four corners.

    Args:
        flow: `[N, h, w, 2]` float32 (dx, dy), N the batch of the padded map.
        height, width: h and w of the map (static ints).

    Returns:
        (indices `[N, h, w, 4]` int32, weights `[N, h, w, 4]` float32); corner order
        (x0, y0), (x1, y0), (x0, y1), (x1, y1). `sum_c weights_c * padded_flat[indices_c]`
        equals `warp_gather(features, flow)` up to float32 rounding of the sum.
    """
    padded_width, padded_height = width + PAD_LEFT + PAD_RIGHT, height + PAD_TOP + PAD_BOTTOM
    flow = tf.cast(flow, tf.float32)
    # The grid is integral: floor(grid + flow) = grid + floor(flow), and the fraction is flow's.
    # Index arithmetic stays int32, so full-int8 quantization never rounds a coordinate.
    cell = tf.floor(flow)
    fraction = flow - cell
    grid = tf.cast(base_grid(height, width, tf.float32), tf.int32)
    corner = tf.expand_dims(grid, 0) + tf.cast(cell, tf.int32)  # [N, h, w, 2] (x, y)
    # Clamp the top-left corner to [-2, size]: beyond it both corners read padding zeros.
    clamped = tf.minimum(tf.maximum(corner, -2), tf.constant([width, height], tf.int32))
    offsets = tf.reshape(tf.range(tf.shape(flow)[0]) * (padded_height * padded_width), [-1, 1, 1, 1])
    top_left = offsets + tf.reduce_sum(
        (clamped + tf.constant([PAD_LEFT, PAD_TOP], tf.int32)) * tf.constant([1, padded_width], tf.int32),
        axis=-1, keepdims=True,
    )
    indices = top_left + tf.constant([0, 1, padded_width, padded_width + 1], tf.int32)
    fx, fy = fraction[..., :1], fraction[..., 1:]
    gx, gy = 1.0 - fx, 1.0 - fy
    weights = tf.concat([gy * gx, gy * fx, fy * gx, fy * fx], axis=-1)
    return indices, weights


def gather_rows(flat: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
    """`tf.gather(flat, indices)` for a `[M, C]` map and int32 `indices` `[...]` -> `[..., C]`,
    as one GATHER of 1-D indices between two RESHAPEs (the form TFLite's GPU delegate accepts);
    static shapes stay static."""
    rows = tf.gather(flat, tf.reshape(indices, [-1]))  # [prod(indices), C]
    shape = indices.shape.concatenate(flat.shape[-1:])
    if shape.is_fully_defined():
        return tf.reshape(rows, shape)
    return tf.reshape(rows, tf.concat([tf.shape(indices), tf.shape(flat)[-1:]], 0))


def warp_padded(padded_flat: tf.Tensor, flow: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """`warp_gather` on a `pad_for_warp` map: `[N, h, w, C]`, one GATHER and one weighted sum."""
    indices, weights = warp_corners(flow, height, width)
    values = gather_rows(padded_flat, indices)  # [N, h, w, 4, C]
    return tf.reduce_sum(values * tf.expand_dims(tf.cast(weights, values.dtype), -1), axis=3)


def warp(features, flow, backend: str = "tfa") -> tf.Tensor:
    """Warp `features [B, h, w, C]` by `flow [B, h, w, 2]` (dx, dy in pixels of the map).

    Args:
        features: the map to sample from.
        flow: offsets; output pixel (x, y) reads `features` at (x + dx, y + dy), bilinearly,
            with zeros outside the map.
        backend: "tfa" (tfa.image.resampler) or "gather" (pure TensorFlow, export-safe).

    Returns:
        `[B, h, w, C]`, the dtype of `features`.
    """
    features = tf.convert_to_tensor(features)
    flow = tf.convert_to_tensor(flow)
    _check_inputs(features, flow)
    if backend == "tfa":
        return warp_tfa(features, flow)
    if backend == "gather":
        return warp_gather(features, flow)
    raise ValueError(f"warp: backend must be one of {BACKENDS}, got {backend!r}")
