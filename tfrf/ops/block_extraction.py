"""Block extraction: the k x k bilinear neighbourhood that a flow points at, for every position.

GFLA's local attention (Ren et al., *Deep Image Spatial Transformation for Person Image
Generation*, CVPR 2020, sec. 3.2) reads, for each target position p, the k x k source samples at
`p + w(p) + o` with `o` in `[-floor(k/2), k - 1 - floor(k/2)]^2`. Its CUDA `block_extractor`
computes each sample bilinearly from the four corners around it, with the corner *indices*
clamped to the map (replicate padding) and the corner *weights* taken from the unclamped
fraction. `extract_blocks` does exactly that arithmetic in pure TensorFlow and lays the blocks
out as GFLA does: block (y, x) occupies rows `k*y .. k*y+k-1` and columns `k*x .. k*x+k-1` of a
`[B, k*h, k*w, C]` map, so a k x k convolution with stride k sees one block per output pixel.

The k samples along an axis share one fractional part, so the (k+1)^2 clamped neighbourhood of
`floor(p + w(p))` is gathered once (flattened map, `tf.gather(batch_dims=1)`) and the blocks are
four shifted slices of it, blended with the bilinear weights. Only builtin TFLite ops (GATHER,
STRIDED_SLICE, MUL, ADD, RESHAPE, FLOOR, MINIMUM/MAXIMUM); every tensor stays 4-D; unknown batch
and spatial sizes; XLA-compilable; float16 features with float32 coordinates. Not
`tf.image.extract_patches`: it zero-pads borders instead of replicating and needs Flex in TFLite.
"""
from __future__ import annotations

from typing import Optional

import tensorflow as tf

from tfrf.ops.shapes import check_rank


def _check_inputs(features: tf.Tensor, flow: Optional[tf.Tensor], kernel_size) -> int:
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
        raise ValueError(f"extract_blocks: kernel_size must be a positive int, got {kernel_size!r}")
    check_rank(features, 4, "extract_blocks", "features", "[B, H, W, C]")
    if flow is not None:
        check_rank(flow, 4, "extract_blocks", "flow", "[B, h, w, 2]")
        if flow.shape[-1] is not None and flow.shape[-1] != 2:
            raise ValueError(f"extract_blocks: flow must be [B, h, w, 2] (dx, dy), got shape {flow.shape}")
        if features.shape[0] is not None and flow.shape[0] is not None and features.shape[0] != flow.shape[0]:
            raise ValueError(
                f"extract_blocks: flow must be [B, h, w, 2] with the B of features {features.shape}, got {flow.shape}"
            )
    return kernel_size


def _neighbourhood(features, rows, cols, size: int, first_offset: int):
    """Features at the clamped indices `rows + first_offset + i`, `cols + first_offset + j`.

    Args:
        features: `[B, H, W, C]`.
        rows, cols: int32 `[B, h, w]` base row and column per position.
        size: the neighbourhood's side n.
        first_offset: the offset of its first row and column.

    Returns:
        `[B*h, n, w, n*C]`: the `[B, h, n, w, n, C]` neighbourhoods, rows i and columns j.
    """
    shape = tf.shape(features)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    position_shape = tf.shape(rows)
    out_height, out_width = position_shape[1], position_shape[2]
    offsets = tf.range(first_offset, first_offset + size, dtype=tf.int32)
    rows = tf.reshape(rows, tf.stack([batch * out_height, 1, out_width, 1])) + tf.reshape(offsets, [1, size, 1, 1])
    cols = tf.reshape(cols, tf.stack([batch * out_height, 1, out_width, 1])) + tf.reshape(offsets, [1, 1, 1, size])
    rows = tf.clip_by_value(rows, 0, height - 1)
    cols = tf.clip_by_value(cols, 0, width - 1)
    index = tf.reshape(rows * width + cols, tf.stack([batch, -1]))  # [B, h*n*w*n]
    flat = tf.reshape(features, tf.stack([batch, height * width, channels]))
    values = tf.gather(flat, index, batch_dims=1)  # [B, h*n*w*n, C]
    return tf.reshape(values, tf.stack([batch * out_height, size, out_width, size * channels]))


def _blocks_to_map(blocks, batch, out_height, out_width, kernel_size: int, channels):
    """`[B*h, k, w, k*C]` -> `[B, k*h, k*w, C]` (a reshape: the memory order is the same)."""
    return tf.reshape(blocks, tf.stack([batch, out_height * kernel_size, out_width * kernel_size, channels]))


def extract_blocks(features, flow=None, kernel_size: int = 3) -> tf.Tensor:
    """The k x k bilinear block at `p + flow(p) + o` for every position p of the flow.

    Args:
        features: the map to sample, `[B, H, W, C]`.
        flow: `[B, h, w, 2]` offsets (dx, dy) in pixels of `features`; the output follows its
            size (h, w), position (x, y) of the flow reading around (x + dx, y + dy) of the map.
            None: zero flow (integer shifts only, h = H, w = W), GFLA's target blocks.
        kernel_size: the block side k.

    Returns:
        `[B, k*h, k*w, C]` in the dtype of `features`: entry `(k*y + i, k*x + j)` is the
        bilinear sample at `(x + dx + j - k//2, y + dy + i - k//2)`, corner indices clamped to
        the map and weights from the unclamped fraction (GFLA's CUDA `block_extractor`).
    """
    features = tf.convert_to_tensor(features)
    if flow is not None:
        flow = tf.convert_to_tensor(flow)
    kernel_size = _check_inputs(features, flow, kernel_size)
    first_offset = -(kernel_size // 2)
    shape = tf.shape(features)
    batch = shape[0]
    channels = features.shape[-1] if features.shape[-1] is not None else shape[3]

    if flow is None:
        out_height, out_width = shape[1], shape[2]
        rows, cols = tf.meshgrid(tf.range(out_height), tf.range(out_width), indexing="ij")
        rows = tf.broadcast_to(rows, tf.stack([batch, out_height, out_width]))
        cols = tf.broadcast_to(cols, tf.stack([batch, out_height, out_width]))
        blocks = _neighbourhood(features, rows, cols, kernel_size, first_offset)
        return _blocks_to_map(blocks, batch, out_height, out_width, kernel_size, channels)

    coordinate_dtype = tf.float64 if tf.float64 in (features.dtype, flow.dtype) else tf.float32
    flow = tf.cast(flow, coordinate_dtype)
    flow_shape = tf.shape(flow)
    out_height, out_width = flow_shape[1], flow_shape[2]
    grid_rows, grid_cols = tf.meshgrid(
        tf.cast(tf.range(out_height), coordinate_dtype), tf.cast(tf.range(out_width), coordinate_dtype), indexing="ij"
    )
    x = grid_cols + flow[..., 0]  # [B, h, w], unclamped sampling positions of the block centres
    y = grid_rows + flow[..., 1]
    x_floor = tf.stop_gradient(tf.floor(x))
    y_floor = tf.stop_gradient(tf.floor(y))
    x_fraction = x - x_floor
    y_fraction = y - y_floor
    # Clip far-away positions before the int cast (no overflow); every index they give is
    # clamped to the same border either way.
    margin = kernel_size + 2
    x_index = tf.cast(tf.clip_by_value(x_floor, -margin, tf.cast(shape[2] + margin, coordinate_dtype)), tf.int32)
    y_index = tf.cast(tf.clip_by_value(y_floor, -margin, tf.cast(shape[1] + margin, coordinate_dtype)), tf.int32)
    neighbourhood = _neighbourhood(features, y_index, x_index, kernel_size + 1, first_offset)

    width_k = kernel_size * channels
    top_left = neighbourhood[:, :kernel_size, :, :width_k]
    top_right = neighbourhood[:, :kernel_size, :, channels:]
    bottom_left = neighbourhood[:, 1:, :, :width_k]
    bottom_right = neighbourhood[:, 1:, :, channels:]

    def weight(fraction):
        return tf.cast(tf.reshape(fraction, tf.stack([batch * out_height, 1, out_width, 1])), features.dtype)

    wx, wy = weight(x_fraction), weight(y_fraction)
    top = top_left + wx * (top_right - top_left)
    bottom = bottom_left + wx * (bottom_right - bottom_left)
    blocks = top + wy * (bottom - top)
    return _blocks_to_map(blocks, batch, out_height, out_width, kernel_size, channels)
