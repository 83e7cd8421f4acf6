"""GFLA's local attention (Ren et al., CVPR 2020, sec. 3.2; `ExtractorAttn` in their code).

For every target position p, with the flow w(p) of that level:

1. source blocks V: the k x k bilinear samples of the source feature around p + w(p)
   (`tfrf.ops.extract_blocks`), target blocks: the same around p on the target feature;
2. a k x k conv with stride k on concat[target blocks, source blocks] (one block per output
   pixel, 2C -> hidden) -> LeakyReLU(0.1) -> 1x1 conv (hidden -> k^2) -> softmax over the k^2;
3. the coefficients laid out as the blocks (`tfrf.ops.local_attention_reshape`), multiplied with
   V and average-pooled k x k with stride k: output = (1/k^2) * sum_o a_o V_o.

The 1/k^2 of the average pool is GFLA's: converted checkpoints depend on it.
"""
from __future__ import annotations

import tensorflow as tf

from tfrf.layers.activations import LeakyReLU
from tfrf.layers.impl import check_impl
from tfrf.models.gfla.blocks import conv
from tfrf.ops.block_extraction import extract_blocks
from tfrf.ops.local_attention import local_attention_reshape


@tf.keras.utils.register_keras_serializable(package="tfrf.gfla")
class LocalAttention(tf.keras.layers.Layer):
    """Flow-guided local attention at one feature level.

    Args:
        kernel_size: the block side k.
        hidden_filters: width of the attention network's hidden layer (GFLA: 128).
        leaky_relu_slope: slope of its LeakyReLU.
    """

    def __init__(self, kernel_size: int, hidden_filters: int = 128, leaky_relu_slope: float = 0.1,
                 impl: str = "default", **kwargs):
        super().__init__(**kwargs)
        self.impl = check_impl(impl, self.name)
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
            raise ValueError(f"{self.name}: kernel_size must be a positive int, got {kernel_size!r}")
        self.kernel_size = kernel_size
        self.hidden_filters = int(hidden_filters)
        self.leaky_relu_slope = leaky_relu_slope
        self.block_conv = conv(
            self.hidden_filters, kernel_size, strides=kernel_size, padding="valid", name="block_conv"
        )
        self.activation = LeakyReLU(leaky_relu_slope, impl=impl, name="activation")
        self.coefficient_conv = conv(kernel_size * kernel_size, 1, name="coefficient_conv")

    def call(self, source, target, flow, return_coefficients: bool = False):
        """Attend to the source feature around the flow.

        Args:
            source: source feature `[B, h, w, C]`.
            target: target feature `[B, h, w, C]`.
            flow: `[B, h, w, 2]` (dx, dy) in pixels of this level.
            return_coefficients: also return the attention coefficients.

        Returns:
            `[B, h, w, C]`, and with `return_coefficients` the softmax coefficients
            `[B, h, w, k*k]` (entry i*k + j weighs the sample at offset (j - k//2, i - k//2)).
        """
        k = self.kernel_size
        source_blocks = extract_blocks(source, flow, k)  # [B, k*h, k*w, C]
        target_blocks = extract_blocks(target, None, k)
        hidden = self.activation(self.block_conv(tf.concat([target_blocks, source_blocks], axis=-1)))
        coefficients = tf.nn.softmax(self.coefficient_conv(hidden), axis=-1)  # [B, h, w, k*k]
        weighted = local_attention_reshape(coefficients, k) * source_blocks
        output = tf.nn.avg_pool2d(weighted, k, k, "VALID")
        if return_coefficients:
            return output, coefficients
        return output

    def get_config(self):
        return {
            **super().get_config(),
            "kernel_size": self.kernel_size,
            "hidden_filters": self.hidden_filters,
            "leaky_relu_slope": self.leaky_relu_slope,
            "impl": self.impl,
        }
