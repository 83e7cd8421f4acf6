"""LeakyReLU as max(x, slope * x).

Keras' LeakyReLU lowers to the `LeakyRelu` op, which TF 2.15's oneDNN graph rewrite fuses with a
preceding Conv2D + BiasAdd + Add into one `_FusedConv2D` that drops the slope: in a
`tf.function` on CPU a residual block then computes a different function than eagerly (up to
0.5 apart on unit inputs). `max(x, slope * x)` equals LeakyReLU for 0 <= slope <= 1, is never
fused that way, and converts to TFLite's builtin MAXIMUM and MUL.

The bug is in TensorFlow's oneDNN graph rewrite, not in TFLite: TFLite's LEAKY_RELU keeps its
alpha (tests/test_export_mobile.py checks conv + bias + add + LEAKY_RELU against numpy). So with
`impl="export"` (what the TFLite export builds) the layer emits `tf.nn.leaky_relu`, one builtin
LEAKY_RELU (one memory pass, XNNPACK) instead of MUL + MAXIMUM; the values are identical.
"""
from __future__ import annotations

import tensorflow as tf

from tfrf.layers.impl import check_impl


@tf.keras.utils.register_keras_serializable(package="tfrf")
class LeakyReLU(tf.keras.layers.Layer):
    """`max(x, slope * x)` for 0 <= slope <= 1; `impl` as in `tfrf.layers.impl`."""

    def __init__(self, slope: float = 0.1, impl: str = "default", **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= slope <= 1.0:
            raise ValueError(f"LeakyReLU slope must lie in [0, 1], got {slope}")
        self.slope = slope
        self.impl = check_impl(impl, self.name)

    def call(self, inputs):
        if self.impl == "export":
            return tf.nn.leaky_relu(inputs, alpha=self.slope)
        return tf.maximum(inputs, tf.cast(self.slope, inputs.dtype) * inputs)

    def get_config(self):
        return {**super().get_config(), "slope": self.slope, "impl": self.impl}
