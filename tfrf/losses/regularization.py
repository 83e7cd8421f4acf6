"""Affine regularisation of a flow field (GFLA, Ren et al. CVPR 2020, eq. 4; Lu et al. eq. 10).

Within every k x k patch, the sampling grid `base + flow` should be close to an affine
transform of the patch: fit x' = a1 x + a2 y + a3 (and y' likewise) by least squares and
penalise the squared residual. With the patch's design matrix A = [x, y, 1] (k^2 x 3), the
residual of the grid values g is (A A^+ - I) g, a fixed linear map of the patch, so the
residuals of all patches come out of one VALID convolution with k^2 output channels. The base
grid is itself affine, so its residual is zero and the map is applied to the flow directly.

Loss = mean over patches of the summed squared residuals, x and y coordinates added: zero for
any affine flow, positive otherwise. 3 x 3 patches for the H/8 flow, 5 x 5 for the H/4 flow.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

# Patch size k of the affine fit at each flow level of the generator.
AFFINE_PATCH_SIZES = {"h8": 3, "h4": 5}


def affine_residual_matrix(patch_size: int) -> np.ndarray:
    """`(A A^+ - I)`, `[k^2, k^2]`: residuals of the least-squares affine fit of a row-major patch."""
    rows, cols = np.meshgrid(np.arange(patch_size), np.arange(patch_size), indexing="ij")
    design = np.stack([cols.ravel(), rows.ravel(), np.ones(patch_size * patch_size)], axis=1).astype(np.float64)
    projection = design @ np.linalg.pinv(design)
    return projection - np.eye(patch_size * patch_size)


def affine_regularization_loss(flow: tf.Tensor, patch_size: int) -> tf.Tensor:
    """Least-squares residual of a local affine fit of the sampling grid, a float32 scalar.

    Args:
        flow: `[B, h, w, 2]` (or `[B, K, h, w, 2]`), dx then dy in pixels of the flow map.
        patch_size: k of the k x k patches (3 at H/8, 5 at H/4); every fully inside patch counts.

    Returns:
        mean over patches and batch of the summed squared residuals of x and y.
    """
    if patch_size < 2:
        raise ValueError(f"affine_regularization_loss: patch_size must be >= 2, got {patch_size}")
    flow = tf.cast(tf.convert_to_tensor(flow), tf.float32)
    if flow.shape.rank not in (4, 5) or (flow.shape[-1] is not None and flow.shape[-1] != 2):
        raise ValueError(f"affine_regularization_loss: flow must be [B, h, w, 2] or [B, K, h, w, 2], got {flow.shape}")
    for axis in (-3, -2):
        if flow.shape[axis] is not None and flow.shape[axis] < patch_size:
            raise ValueError(
                f"affine_regularization_loss: flow {flow.shape} is smaller than the {patch_size}x{patch_size} patch"
            )
    shape = tf.shape(flow)
    height, width = shape[-3], shape[-2]
    # Both coordinates as single-channel images stacked along the batch: [2N, h, w, 1].
    coordinates = tf.reshape(tf.transpose(tf.reshape(flow, tf.stack([-1, height, width, 2])), [3, 0, 1, 2]),
                             tf.stack([-1, height, width, 1]))
    residual = affine_residual_matrix(patch_size)  # [k^2 (outputs), k^2 (patch pixels)]
    kernel = residual.T.reshape(patch_size, patch_size, 1, patch_size * patch_size)
    residuals = tf.nn.conv2d(coordinates, tf.constant(kernel, tf.float32), strides=1, padding="VALID")
    per_patch = tf.reduce_sum(tf.square(residuals), axis=-1)  # [2N, h-k+1, w-k+1]
    return 2.0 * tf.reduce_mean(per_patch)  # x and y summed, averaged over patches
