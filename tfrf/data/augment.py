"""GFLA's Market-1501 training augmentation: a random affine map per image, keypoints moved along.

GFLA (Ren et al. CVPR 2020, `data/base_dataset.py`, Market options) warps every training pair:
the source with a rotation uniform in ±5°, a shift uniform in ±5 px per axis and a scale uniform
in [0.95, 1.05]; the target with its own draw, 0.2 × the rotation, 0.5 × the shift and no
scaling; uncovered pixels are grey (128, 128, 128) and the interpolation is PIL's nearest
(torchvision 0.2.1 `F.affine` defaults). Its keypoints go through the same map before the
heatmaps are drawn. Here the source parameters apply to each of the K sources (independent
draws) and the target parameters to the last image of the tuple.

The map, in pixel coordinates with pixel centres at integers (x right, y down), about the image
centre c = ((W − 1)/2, (H − 1)/2): p_out = c + scale · R(angle) (p_in − c) + shift, R rotating
clockwise on screen for a positive angle. (GFLA rotates about (W/2 + 0.5, H/2 + 0.5) in PIL's
coordinates and truncates the moved keypoints to integers; both differ by under a pixel.)
Image and keypoints use the same map, so a keypoint stays on the pixel it marked. A keypoint
that leaves the image becomes missing (−1) — GFLA still draws the part of its Gaussian that
falls inside, which the −1 convention of `tfrf.pose` cannot express for negative coordinates.

Why not keras-cv: keras-cv 0.9's geometric layers (RandomRotation, RandomTranslation,
RandomZoom) transform images, boxes and segmentation masks but not keypoints, and chaining the
three resamples the image three times; this module composes one affine map and applies it with
core TF's `ImageProjectiveTransformV3` (what those layers call), and moves the keypoints with the
same matrix.

Use it on the raw tuple, before pose encoding: `augment_example(images, raw_keypoints, seed,
config)` with images `[K+1, H, W, 3]` (the target last) and keypoints `[K+1, 18, 2]` (y, x).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Tuple

import tensorflow as tf

from tfrf.ops.shapes import check_rank, check_same_first_dimension

INTERPOLATIONS = ("nearest", "bilinear")
# GFLA's grey fill (128, 128, 128) for images in [-1, 1].
GREY = 128.0 / 127.5 - 1.0


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Ranges of GFLA's Market augmentation (the defaults) or any other.

    Attributes:
        rotation_degrees: sources rotate by an angle uniform in ±this.
        shift_pixels: sources shift by an amount uniform in ±this, per axis, in pixels.
        scale_range: sources scale by a factor uniform in this (low, high).
        target_rotation_factor: the target's angle is its own draw times this (GFLA 0.2).
        target_shift_factor: the target's shift is its own draw times this (GFLA 0.5).
        target_scaling: whether the target is scaled too (GFLA: no).
        fill_value: the value of uncovered pixels, in the images' units (GFLA's grey in [-1, 1]).
        interpolation: "nearest" (GFLA, PIL's default) or "bilinear".
    """

    rotation_degrees: float = 5.0
    shift_pixels: float = 5.0
    scale_range: Tuple[float, float] = (0.95, 1.05)
    target_rotation_factor: float = 0.2
    target_shift_factor: float = 0.5
    target_scaling: bool = False
    fill_value: float = GREY
    interpolation: str = "nearest"

    def __post_init__(self):
        low, high = (float(value) for value in self.scale_range)
        if not 0 < low <= high:
            raise ValueError(f"AugmentConfig.scale_range must be (low, high) with 0 < low <= high, got {self.scale_range}")
        if self.rotation_degrees < 0 or self.shift_pixels < 0:
            raise ValueError(
                f"AugmentConfig: rotation_degrees and shift_pixels must be >= 0, got "
                f"{self.rotation_degrees}, {self.shift_pixels}"
            )
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"AugmentConfig.interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")

    @classmethod
    def identity(cls, **changes) -> "AugmentConfig":
        """No augmentation: angle 0, shift 0, scale 1."""
        return cls(**{"rotation_degrees": 0.0, "shift_pixels": 0.0, "scale_range": (1.0, 1.0), **changes})


def _seed(seed) -> tf.Tensor:
    seed = tf.convert_to_tensor(seed)
    if seed.shape.rank == 0:
        seed = tf.stack([tf.cast(seed, tf.int64), tf.constant(0, tf.int64)])
    return tf.cast(seed, tf.int64)


def sample_parameters(seed, num_images, config: AugmentConfig = AugmentConfig()):
    """Random affine parameters for `num_images` images, the last one the target.

    Args:
        seed: a stateless seed, int or int `[2]` (e.g. `(seed, example index)`).
        num_images: K + 1.
        config: the ranges.

    Returns:
        (angles `[N]` in radians, shifts `[N, 2]` (dx, dy) in pixels, scales `[N]`), float32.
    """
    seeds = tf.random.experimental.stateless_split(_seed(seed), 3)
    angle_limit = math.radians(float(config.rotation_degrees))
    angles = tf.random.stateless_uniform([num_images], seeds[0], -angle_limit, angle_limit)
    shifts = tf.random.stateless_uniform([num_images, 2], seeds[1], -float(config.shift_pixels), float(config.shift_pixels))
    low, high = (float(value) for value in config.scale_range)
    scales = tf.random.stateless_uniform([num_images], seeds[2], low, high) if high > low else tf.fill([num_images], low)
    is_target = tf.equal(tf.range(num_images), num_images - 1)
    angles = tf.where(is_target, angles * config.target_rotation_factor, angles)
    shifts = tf.where(is_target[:, None], shifts * config.target_shift_factor, shifts)
    if not config.target_scaling:
        scales = tf.where(is_target, tf.ones_like(scales), scales)
    return angles, shifts, scales


def forward_matrices(angles, shifts, scales, height, width) -> tf.Tensor:
    """`[N, 3, 3]` maps taking input pixel (x, y, 1) to output pixel (see the module docstring)."""
    angles = tf.convert_to_tensor(angles, tf.float32)
    shifts = tf.convert_to_tensor(shifts, tf.float32)
    scales = tf.convert_to_tensor(scales, tf.float32)
    center_x = (tf.cast(width, tf.float32) - 1.0) / 2.0
    center_y = (tf.cast(height, tf.float32) - 1.0) / 2.0
    cos, sin = scales * tf.cos(angles), scales * tf.sin(angles)
    # p_out = c + A (p_in - c) + t with A = scale * [[cos, -sin], [sin, cos]].
    offset_x = center_x - (cos * center_x - sin * center_y) + shifts[:, 0]
    offset_y = center_y - (sin * center_x + cos * center_y) + shifts[:, 1]
    zeros, ones = tf.zeros_like(cos), tf.ones_like(cos)
    rows = [tf.stack([cos, -sin, offset_x], -1), tf.stack([sin, cos, offset_y], -1), tf.stack([zeros, zeros, ones], -1)]
    return tf.stack(rows, axis=1)


def transform_images(images, matrices, config: AugmentConfig = AugmentConfig()) -> tf.Tensor:
    """Warp `[N, H, W, C]` images by their forward `[N, 3, 3]` maps (one resampling each)."""
    images = tf.convert_to_tensor(images)
    inverse = tf.linalg.inv(matrices)
    inverse = inverse / inverse[:, 2:3, 2:3]
    transforms = tf.reshape(inverse, [-1, 9])[:, :8]  # output pixel -> input pixel
    shape = tf.shape(images)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=tf.cast(transforms, tf.float32),
        output_shape=shape[1:3],
        fill_value=tf.cast(config.fill_value, tf.float32),
        interpolation=config.interpolation.upper(),
        fill_mode="CONSTANT",
    )


def transform_keypoints(keypoints, matrices, height, width) -> tf.Tensor:
    """Move `[N, P, 2]` (y, x) keypoints by `[N, 3, 3]` maps; missing (negative) points stay −1,
    points that leave the pixel grid become −1, and those within half a pixel of it stay on it."""
    keypoints = tf.cast(tf.convert_to_tensor(keypoints), tf.float32)
    present = tf.reduce_all(keypoints >= 0, axis=-1)  # [N, P]
    points = tf.stack([keypoints[..., 1], keypoints[..., 0], tf.ones_like(keypoints[..., 0])], axis=-1)
    moved = tf.einsum("nij,npj->npi", matrices, points)
    x, y = moved[..., 0], moved[..., 1]
    width = tf.cast(width, tf.float32)
    height = tf.cast(height, tf.float32)
    inside = (x >= -0.5) & (x < width - 0.5) & (y >= -0.5) & (y < height - 0.5)
    moved = tf.stack([tf.clip_by_value(y, 0.0, height - 1.0), tf.clip_by_value(x, 0.0, width - 1.0)], axis=-1)
    return tf.where((present & inside)[..., None], moved, -tf.ones_like(moved))


def augment_example(images, raw_keypoints, seed, config: AugmentConfig = AugmentConfig()):
    """GFLA's augmentation of one K+1 tuple (sources first, the target last).

    Args:
        images: `[K+1, H, W, C]` (float in [-1, 1] for the default grey fill).
        raw_keypoints: `[K+1, P, 2]` (y, x) pixel keypoints of those images, −1 where missing.
        seed: stateless seed, int or int `[2]`; equal seeds give equal augmentations.
        config: the ranges (`AugmentConfig()` is GFLA's Market setting).

    Returns:
        (images `[K+1, H, W, C]`, keypoints `[K+1, P, 2]` float32), to be encoded as heatmaps.
    """
    images = tf.convert_to_tensor(images)
    raw_keypoints = tf.convert_to_tensor(raw_keypoints)
    check_rank(images, 4, "augment_example", "images", "[K+1, H, W, C]")
    check_rank(raw_keypoints, 3, "augment_example", "raw_keypoints", "[K+1, P, 2] (y, x)", last=2)
    check_same_first_dimension("augment_example", "images", images, "raw_keypoints", raw_keypoints, "K+1")
    shape = tf.shape(images)
    num_images, height, width = shape[0], shape[1], shape[2]
    angles, shifts, scales = sample_parameters(seed, num_images, config)
    matrices = forward_matrices(angles, shifts, scales, height, width)
    return transform_images(images, matrices, config), transform_keypoints(raw_keypoints, matrices, height, width)
