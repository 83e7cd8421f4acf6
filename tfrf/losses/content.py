"""Content losses of the generated image (Lu et al. AAAI 2022, eq. 7-8; as in GFLA).

L_con = lambda_l1 * L1 + lambda_per * L_per + lambda_sty * L_sty, where
- `l1_loss`: mean absolute pixel error;
- `perceptual_loss`: sum over VGG19 relu1_1 ... relu5_1 of the mean absolute feature error;
- `style_loss`: sum over the same layers of the mean absolute error between Gram matrices
  `G = F^T F / (C H W)` of the features F `[HW, C]`.
The VGG features are computed once per image by `tfrf.losses.VGGFeatures` and passed in as
dicts, so the perceptual and style losses share one forward pass. Everything is float32.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from tfrf.losses.vgg import PERCEPTUAL_LAYERS


def l1_loss(prediction: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """Mean absolute error over all elements, a float32 scalar."""
    prediction = tf.cast(prediction, tf.float32)
    target = tf.cast(target, tf.float32)
    if prediction.shape.is_fully_defined() and target.shape.is_fully_defined() and prediction.shape != target.shape:
        raise ValueError(f"l1_loss: prediction {prediction.shape} and target {target.shape} must have the same shape")
    return tf.reduce_mean(tf.abs(prediction - target))


# The smallest pre-activation whose tanh output rounds to 255 (or 0) in an 8-bit image:
# (tanh(x) + 1) * 127.5 >= 254.5, i.e. tanh(x) >= 1 - 1 / 255.
SATURATION_LIMIT = float(np.arctanh(1.0 - 1.0 / 255.0))


def saturation_loss(logits: tf.Tensor, limit: float = SATURATION_LIMIT) -> tf.Tensor:
    """Mean of max(|logits| - limit, 0): the output layer's pre-tanh values beyond the point
    where an 8-bit image can still tell them apart (`SATURATION_LIMIT`, 3.12), a float32 scalar.

    Not in the paper. Targets at exactly +-1 (a white background) are reached by tanh only at
    infinity, and Adam's first steps can push the pre-activation far past them, where tanh's
    gradient vanishes and the output stays saturated; this hinge gives such pixels a gradient
    back toward `limit` and is zero for every output an 8-bit image can show.
    """
    logits = tf.cast(logits, tf.float32)
    return tf.reduce_mean(tf.nn.relu(tf.abs(logits) - limit))


def _selected(features_a: Mapping[str, tf.Tensor], features_b: Mapping[str, tf.Tensor], layers, loss_name: str):
    layers = tuple(layers) if layers is not None else tuple(name for name in PERCEPTUAL_LAYERS if name in features_a)
    if not layers:
        raise ValueError(f"{loss_name}: no VGG layers to compare; the feature dicts hold {sorted(features_a)}")
    for name in layers:
        for which, features in (("features_a", features_a), ("features_b", features_b)):
            if name not in features:
                raise ValueError(f"{loss_name}: {which} has no layer {name!r}; it holds {sorted(features)}")
    return layers


def perceptual_loss(
    features_a: Mapping[str, tf.Tensor],
    features_b: Mapping[str, tf.Tensor],
    layers: Optional[Sequence[str]] = None,
) -> tf.Tensor:
    """Sum over layers of the mean absolute difference of VGG activations, a float32 scalar.

    Args:
        features_a, features_b: `{layer name: [B, h, w, C]}` from `VGGFeatures`.
        layers: the layers to compare; default relu1_1 ... relu5_1 (those present).
    """
    layers = _selected(features_a, features_b, layers, "perceptual_loss")
    return tf.add_n([l1_loss(features_a[name], features_b[name]) for name in layers])


def gram_matrix(features: tf.Tensor) -> tf.Tensor:
    """`F^T F / (C H W)` of features `[B, H, W, C]` -> `[B, C, C]` float32."""
    features = tf.cast(features, tf.float32)
    if features.shape.rank != 4:
        raise ValueError(f"gram_matrix: features must be [B, H, W, C], got shape {features.shape}")
    shape = tf.shape(features)
    flat = tf.reshape(features, tf.stack([shape[0], shape[1] * shape[2], shape[3]]))
    size = tf.cast(shape[1] * shape[2] * shape[3], tf.float32)
    return tf.matmul(flat, flat, transpose_a=True) / size


def style_loss(
    features_a: Mapping[str, tf.Tensor],
    features_b: Mapping[str, tf.Tensor],
    layers: Optional[Sequence[str]] = None,
) -> tf.Tensor:
    """Sum over layers of the mean absolute difference of Gram matrices, a float32 scalar.

    The papers' text defines the style loss on the perceptual layers (relu1_1 ... relu5_1),
    the default here; GFLA's released code uses relu2_2, relu3_4, relu4_4 and relu5_2, which
    `layers` (with a `VGGFeatures` built on them) reproduces.
    """
    layers = _selected(features_a, features_b, layers, "style_loss")
    return tf.add_n([l1_loss(gram_matrix(features_a[name]), gram_matrix(features_b[name])) for name in layers])
