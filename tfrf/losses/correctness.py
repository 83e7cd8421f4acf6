"""Sampling-correctness loss (GFLA, Ren et al. CVPR 2020, eq. 3; Lu et al. AAAI 2022, eq. 9).

A flow field is "correct" where the source VGG feature it samples resembles the target VGG
feature at the same place. For every target position l:

    sim(l)  = cos(warp(v_s, w)(l), v_t(l))          similarity of the sampled source feature
    best(l) = max over source positions q of cos(v_s(q), v_t(l))
    L_cor   = mean_l exp(-sim(l) / best(l)) - exp(-1)

so the loss is 0 where the flow samples the best-matching source feature and grows as it
samples worse ones. The flow at H/8 is scored on relu4_1 (stride 8), the one at H/4 on relu3_1
(stride 4). Sampling is bilinear with zeros outside the map by default (`sampler="bilinear"`), so
a flow pointing off the source scores exp(0) - exp(-1); `sampler="gaussian"` samples as GFLA's
code does (`tfrf.ops.gaussian_resample`: a normalised 4x4 Gaussian, sigma 2, around the sampling
point, indices clamped to the map).
"""
from __future__ import annotations

from typing import Callable, Optional

import tensorflow as tf

_EPSILON = 1e-8

# The VGG19 layer whose stride matches each flow level of the generator.
CORRECTNESS_LAYERS = {"h8": "relu4_1", "h4": "relu3_1"}

# How the flow samples the source features: bilinear (`tfrf.ops.warp`, zeros outside) or GFLA's
# Gaussian resampler (`tfrf.ops.gaussian_resample`).
SAMPLERS = ("bilinear", "gaussian")


def _default_warp(features: tf.Tensor, flow: tf.Tensor) -> tf.Tensor:
    from tfrf.ops import warp

    return warp(features, flow, backend="gather")


def _gaussian_warp(features: tf.Tensor, flow: tf.Tensor) -> tf.Tensor:
    from tfrf.ops import gaussian_resample

    return gaussian_resample(features, flow, sigma=2.0, kernel_size=4)


def _check_shapes(source_features, target_features, flow) -> None:
    rank = source_features.shape.rank
    if rank not in (4, 5):
        raise ValueError(
            f"sampling_correctness_loss: source_features must be [B, h, w, C] or [B, K, h, w, C], "
            f"got shape {source_features.shape}"
        )
    if target_features.shape.rank != 4:
        raise ValueError(
            f"sampling_correctness_loss: target_features must be [B, h, w, C], got shape {target_features.shape}"
        )
    if flow.shape.rank != rank or (flow.shape[-1] is not None and flow.shape[-1] != 2):
        expected = "[B, h, w, 2]" if rank == 4 else "[B, K, h, w, 2]"
        raise ValueError(
            f"sampling_correctness_loss: flow must be {expected} to match source_features "
            f"{source_features.shape}, got shape {flow.shape}"
        )
    source_map = source_features.shape[-3:]
    for name, shape in (("target_features", target_features.shape[-3:]), ("flow", flow.shape[-3:-1])):
        for axis in range(len(shape)):
            a, b = source_map[axis], shape[axis]
            if a is not None and b is not None and a != b:
                raise ValueError(
                    f"sampling_correctness_loss: {name} {shape} must share h, w (and C) with "
                    f"source_features {source_features.shape}; compute the flow at the VGG layer's "
                    f"resolution (relu4_1 for H/8, relu3_1 for H/4)"
                )


def best_similarity(source_unit: tf.Tensor, target_unit: tf.Tensor, tile_size: Optional[int] = None) -> tf.Tensor:
    """`max_q <source_unit[b, q], target_unit[b, l]>` `[B, Nt]` of unit features `[B, Ns, C]`, `[B, Nt, C]`.

    `tile_size` None: one `[B, Ns, Nt]` product. An int: tiles of `tile_size` target positions in
    sequence (static Nt: chained by control dependencies, so no two tiles are alive at once;
    dynamic Nt: a `map_fn` with one iteration in flight), gradient stopped.
    """
    if tile_size is None:
        return tf.reduce_max(tf.matmul(source_unit, target_unit, transpose_b=True), axis=1)
    if tile_size < 1:
        raise ValueError(f"best_similarity: tile_size must be >= 1 or None, got {tile_size}")
    source_unit, target_unit = tf.stop_gradient(source_unit), tf.stop_gradient(target_unit)

    def tile_best(tile):
        return tf.reduce_max(tf.matmul(source_unit, tile, transpose_b=True), axis=1)

    positions = target_unit.shape[1]
    if positions is not None:
        parts = []
        for begin in range(0, positions, tile_size):
            with tf.control_dependencies(parts[-1:]):
                parts.append(tile_best(target_unit[:, begin:begin + tile_size]))
        return tf.concat(parts, axis=1) if len(parts) > 1 else parts[0]
    shape = tf.shape(target_unit)
    tiles = (shape[1] + tile_size - 1) // tile_size
    padded = tf.pad(target_unit, [[0, 0], [0, tiles * tile_size - shape[1]], [0, 0]])
    stacked = tf.transpose(tf.reshape(padded, tf.stack([shape[0], tiles, tile_size, shape[2]])), [1, 0, 2, 3])
    best = tf.map_fn(tile_best, stacked, parallel_iterations=1, fn_output_signature=target_unit.dtype)
    return tf.reshape(tf.transpose(best, [1, 0, 2]), tf.stack([shape[0], -1]))[:, :shape[1]]


def sampling_correctness_loss(
    source_features: tf.Tensor,
    target_features: tf.Tensor,
    flow: tf.Tensor,
    mask: Optional[tf.Tensor] = None,
    warp_fn: Optional[Callable[[tf.Tensor, tf.Tensor], tf.Tensor]] = None,
    sampler: str = "bilinear",
    tile_size: Optional[int] = None,
) -> tf.Tensor:
    """GFLA's sampling-correctness loss of a flow field, a float32 scalar.

    Args:
        source_features: VGG features of the source image(s), `[B, h, w, C]`, or `[B, K, h, w, C]`
            for K sources of one target.
        target_features: VGG features of the target image at the same layer, `[B, h, w, C]`.
        flow: `[B, h, w, 2]` (or `[B, K, h, w, 2]`), dx then dy in pixels of this map; target
            pixel (x, y) reads the source at (x + dx, y + dy).
        mask: optional `[B, h, w]` or `[B, h, w, 1]` weights over target positions (e.g. the
            foreground); the loss becomes the mask-weighted mean.
        warp_fn: `(features, flow) -> warped` for `sampler="bilinear"`; defaults to
            `tfrf.ops.warp(..., backend="gather")`.
        sampler: "bilinear" (default) or "gaussian" (GFLA's resample2d, kernel 4, sigma 2, via
            `tfrf.ops.gaussian_resample`; takes no `warp_fn`).
        tile_size: None: `best` from the whole `[B, Ns, Nt]` similarity (its memory grows with the
            square of the map: 640 MiB at H/4 of 256x256 for B*K = 10). An int: `best` over tiles of
            `tile_size` target positions, one after the other, as a constant (no gradient through
            the max; `TrainingModel`'s features are constants anyway): at most
            B*K * Ns * tile_size floats at a time, 80 MiB for 512 at H/4 of 256x256, B*K = 10.

    Returns:
        mean over target positions (and sources) of `exp(-sim / best) - exp(-1)`.
    """
    source_features = tf.cast(tf.convert_to_tensor(source_features), tf.float32)
    target_features = tf.cast(tf.convert_to_tensor(target_features), tf.float32)
    flow = tf.cast(tf.convert_to_tensor(flow), tf.float32)
    _check_shapes(source_features, target_features, flow)
    if sampler not in SAMPLERS:
        raise ValueError(f"sampling_correctness_loss: sampler must be one of {SAMPLERS}, got {sampler!r}")
    if sampler == "gaussian":
        if warp_fn is not None:
            raise ValueError("sampling_correctness_loss: warp_fn applies to sampler='bilinear' only")
        warp_fn = _gaussian_warp
    warp_fn = warp_fn or _default_warp

    if source_features.shape.rank == 5:
        num_sources = tf.shape(source_features)[1]
        target_features = tf.repeat(target_features, num_sources, axis=0)
        source_features = tf.reshape(source_features, tf.concat([[-1], tf.shape(source_features)[2:]], 0))
        flow = tf.reshape(flow, tf.concat([[-1], tf.shape(flow)[2:]], 0))
        if mask is not None:
            mask = tf.repeat(tf.convert_to_tensor(mask), num_sources, axis=0)

    shape = tf.shape(target_features)
    batch, channels = shape[0], shape[3]
    source_flat = tf.reshape(source_features, tf.stack([batch, -1, channels]))  # [B, Ns, C]
    target_flat = tf.reshape(target_features, tf.stack([batch, -1, channels]))  # [B, Nt, C]
    source_unit = source_flat / (tf.norm(source_flat, axis=-1, keepdims=True) + _EPSILON)
    target_unit = target_flat / (tf.norm(target_flat, axis=-1, keepdims=True) + _EPSILON)
    best = best_similarity(source_unit, target_unit, tile_size)  # [B, Nt]

    sampled = tf.reshape(warp_fn(source_features, flow), tf.stack([batch, -1, channels]))
    norms = tf.norm(sampled, axis=-1) * tf.norm(target_flat, axis=-1)
    similarity = tf.reduce_sum(sampled * target_flat, axis=-1) / tf.maximum(norms, _EPSILON)  # [B, Nt]

    loss_map = tf.exp(-similarity / (best + _EPSILON)) - tf.exp(-1.0)
    if mask is None:
        return tf.reduce_mean(loss_map)
    mask = tf.reshape(tf.cast(mask, tf.float32), tf.stack([batch, -1]))
    return tf.reduce_sum(mask * loss_map) / (tf.reduce_sum(mask) + _EPSILON)
