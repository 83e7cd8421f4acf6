"""GFLA's `local_attn_reshape`: per-position k^2 attention coefficients laid out as k x k blocks.

Ren et al., CVPR 2020 (GFLA), sec. 3.2: the attention network gives, for every target position,
k^2 coefficients over the k x k source block that `extract_blocks` samples there. Their CUDA
`local_attn_reshape` writes coefficient `i*k + j` of position (y, x) to pixel (k*y + i, k*x + j)
of a one-channel map, so that it multiplies the block layout of `extract_blocks` element-wise.
In channels-last TensorFlow that is exactly `tf.nn.depth_to_space` with block size k (TFLite
builtin DEPTH_TO_SPACE).
"""
from __future__ import annotations

import tensorflow as tf


def local_attention_reshape(coefficients, kernel_size: int) -> tf.Tensor:
    """`[B, h, w, k*k]` -> `[B, k*h, k*w, 1]`, out(k*y + i, k*x + j) = in(y, x, i*k + j).

    Args:
        coefficients: the k^2 attention coefficients per position (after the softmax).
        kernel_size: the block side k.
    """
    coefficients = tf.convert_to_tensor(coefficients)
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
        raise ValueError(f"local_attention_reshape: kernel_size must be a positive int, got {kernel_size!r}")
    shape = coefficients.shape
    if shape.rank is not None and shape.rank != 4:
        raise ValueError(f"local_attention_reshape: coefficients must be [B, h, w, k*k], got shape {shape}")
    if shape.rank is not None and shape[-1] is not None and shape[-1] != kernel_size * kernel_size:
        raise ValueError(
            f"local_attention_reshape: coefficients must be [B, h, w, {kernel_size * kernel_size}] for kernel_size "
            f"{kernel_size}, got shape {shape}"
        )
    if kernel_size == 1:
        return coefficients
    return tf.nn.depth_to_space(coefficients, kernel_size)
