"""Instance normalisation built from core ops (MEAN, SQUARED_DIFFERENCE, RSQRT in TFLite)."""
from __future__ import annotations

import tensorflow as tf

from tfrf.layers.impl import check_impl


@tf.keras.utils.register_keras_serializable(package="tfrf")
class InstanceNormalization(tf.keras.layers.Layer):
    """Normalise each channel of each example over H and W, then a learned affine map.

    Statistics are computed in float32 under a mixed-precision policy.

    Args:
        epsilon: added to the variance.
        affine: learn a per-channel scale and offset.
        impl: "export" (what the TFLite export builds) folds the normalisation and the affine map
            into one per-channel scale and shift on `[B, 1, 1, C]`, `x * scale + shift`: two
            full-size passes after the statistics instead of four. Equal up to float32 rounding
            (tested). See `tfrf.layers.impl`.
    """

    def __init__(self, epsilon: float = 1e-5, affine: bool = True, impl: str = "default", **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon
        self.affine = affine
        self.impl = check_impl(impl, self.name)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"{self.name}: the channel dimension must be known, got {input_shape}")
        if self.affine:
            self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="ones")
            self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros")
        super().build(input_shape)

    def call(self, inputs):
        """inputs `[B, H, W, C]` -> `[B, H, W, C]`."""
        x = tf.cast(inputs, tf.float32)
        mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
        if self.impl == "export":
            # SUB + MUL instead of SQUARED_DIFFERENCE: the same values, and TFLite's int8
            # SQUARED_DIFFERENCE has no fast kernel (a third of a full-int8 mobile render).
            centred = x - mean
            variance = tf.reduce_mean(centred * centred, axis=[1, 2], keepdims=True)
            scale = tf.math.rsqrt(variance + self.epsilon)
            if self.affine:
                scale = scale * tf.cast(self.gamma, tf.float32)
            shift = tf.cast(self.beta, tf.float32) - mean * scale if self.affine else -(mean * scale)
            return tf.cast(x * scale + shift, self.compute_dtype)
        variance = tf.reduce_mean(tf.math.squared_difference(x, mean), axis=[1, 2], keepdims=True)
        x = (x - mean) * tf.math.rsqrt(variance + self.epsilon)
        if self.affine:
            x = x * tf.cast(self.gamma, tf.float32) + tf.cast(self.beta, tf.float32)
        return tf.cast(x, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon, "affine": self.affine, "impl": self.impl}
