"""Image quality metrics on images in [-1, 1]: L1, PSNR, SSIM, one value per image.

PSNR and SSIM are TensorFlow's (`tf.image.psnr` / `tf.image.ssim`) with `max_val = 2`, the
dynamic range of [-1, 1] images, so they equal the usual [0, 1] or [0, 255] figures. L1 is the
mean absolute error in [-1, 1] units (twice the [0, 1] value).
"""
from __future__ import annotations

from typing import Dict

import numpy as np
import tensorflow as tf

METRICS = ("l1", "psnr", "ssim")
MAX_VALUE = 2.0


def _pair(prediction, target):
    prediction = tf.cast(tf.convert_to_tensor(prediction), tf.float32)
    target = tf.cast(tf.convert_to_tensor(target), tf.float32)
    if prediction.shape.rank != 4 or prediction.shape[-1] != 3:
        raise ValueError(f"metrics: prediction must be [B, H, W, 3] in [-1, 1], got shape {prediction.shape}")
    if prediction.shape != target.shape:
        raise ValueError(f"metrics: target {target.shape} must match prediction {prediction.shape}")
    return prediction, target


def l1(prediction, target) -> tf.Tensor:
    """Mean absolute error per image, float32 [B]."""
    prediction, target = _pair(prediction, target)
    return tf.reduce_mean(tf.abs(prediction - target), axis=[1, 2, 3])


def psnr(prediction, target) -> tf.Tensor:
    """Peak signal-to-noise ratio in dB per image, float32 [B] (inf for identical images)."""
    prediction, target = _pair(prediction, target)
    return tf.image.psnr(prediction, target, max_val=MAX_VALUE)


def ssim(prediction, target) -> tf.Tensor:
    """Structural similarity per image (11x11 Gaussian window, sigma 1.5), float32 [B]."""
    prediction, target = _pair(prediction, target)
    return tf.image.ssim(prediction, target, max_val=MAX_VALUE)


def image_metrics(prediction, target) -> Dict[str, np.ndarray]:
    """All of `METRICS` per image, as numpy float arrays [B]."""
    return {name: fn(prediction, target).numpy() for name, fn in (("l1", l1), ("psnr", psnr), ("ssim", ssim))}


class MetricAccumulator:
    """Running means of `METRICS` over batches of images."""

    def __init__(self):
        self.values = {name: [] for name in METRICS}

    def update(self, prediction, target) -> None:
        for name, values in image_metrics(prediction, target).items():
            self.values[name].append(values)

    @property
    def count(self) -> int:
        return int(sum(len(values) for values in self.values["l1"]))

    def result(self) -> Dict[str, float]:
        """Means over every image seen, plus `examples` (the image count)."""
        if not self.count:
            raise ValueError("MetricAccumulator: no images were added")
        result = {name: float(np.mean(np.concatenate(values))) for name, values in self.values.items()}
        result["examples"] = self.count
        return result
