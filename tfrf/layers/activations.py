"""LeakyReLU as max(x, slope * x).

Keras' LeakyReLU lowers to the `LeakyRelu` op, which TF 2.15's oneDNN graph rewrite fuses with a
preceding Conv2D + BiasAdd + Add into one `_FusedConv2D` that drops the slope: in a
`tf.function` on CPU a residual block then computes a different function than eagerly (up to
0.5 apart on unit inputs). `max(x, slope * x)` equals LeakyReLU for 0 <= slope <= 1, is never
fused that way, and converts to TFLite's builtin MAXIMUM and MUL.
"""
from __future__ import annotations

import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="tfrf")
class LeakyReLU(tf.keras.layers.Layer):
    """`max(x, slope * x)` for 0 <= slope <= 1."""

    def __init__(self, slope: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= slope <= 1.0:
            raise ValueError(f"LeakyReLU slope must lie in [0, 1], got {slope}")
        self.slope = slope

    def call(self, inputs):
        return tf.maximum(inputs, tf.cast(self.slope, inputs.dtype) * inputs)

    def get_config(self):
        return {**super().get_config(), "slope": self.slope}
