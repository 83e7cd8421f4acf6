"""GFLA's building blocks (Ren et al., CVPR 2020; `model/networks/base_function.py` of their code).

N = instance norm (affine, eps 1e-5), A = LeakyReLU (max(x, 0.1 x)), as GFLA's generators use:

- `EncoderBlock`: N -> A -> conv 4x4 stride 2 -> N -> A -> conv 3x3 (halves H and W, no shortcut).
- `ResidualBlock`: N -> A -> conv 3x3 (in -> hidden) -> N -> A -> conv 3x3 (hidden -> out), plus
  the input (a 1x1 conv when in != out).
- `DecoderBlock`: N -> A -> conv 3x3 (in -> hidden) -> N -> A -> transposed conv 3x3 stride 2
  (hidden -> out), plus a transposed conv 3x3 stride 2 of the raw input (doubles H and W).
- `JumpBlock` (GFLA's `Jump`, a skip connection): A -> reflection pad 1 -> conv 3x3; with
  `tanh=True` it is GFLA's `Output` layer: A -> reflection pad 1 -> conv 3x3 -> tanh.

PyTorch's `ConvTranspose2d(k=3, stride=2, padding=1, output_padding=1)` is not TF's 'SAME'
transposed conv (that one keeps rows [0, 2H)); it keeps rows and columns [1, 2H] of the full
(2H + 1)-row result, so the transposed convs here are 'VALID' and drop the first row and column.
PyTorch's 4x4 stride-2 conv with padding 1 on an even map pads one pixel on every side, which
is what 'SAME' does there (H and W are multiples of 32).
"""
from __future__ import annotations

import tensorflow as tf

from tfrf.layers.activations import LeakyReLU
from tfrf.layers.impl import check_impl
from tfrf.layers.normalization import InstanceNormalization

_PACKAGE = "tfrf.gfla"


def gfla_initializer() -> tf.keras.initializers.Initializer:
    """GFLA's weight initialisation: orthogonal with gain 0.02 (biases start at zero)."""
    return tf.keras.initializers.Orthogonal(gain=0.02)


def conv(filters: int, kernel_size: int, strides: int = 1, padding: str = "same", name: str = None, **kwargs):
    """A Conv2D with GFLA's initialisation (`kwargs` go to the layer, e.g. `dtype`)."""
    return tf.keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding=padding, kernel_initializer=gfla_initializer(), name=name,
        **kwargs
    )


def transposed_conv(filters: int, name: str):
    """The 'VALID' k=3 stride-2 Conv2DTranspose that `transposed_conv_torch` crops."""
    return tf.keras.layers.Conv2DTranspose(
        filters, 3, strides=2, padding="valid", kernel_initializer=gfla_initializer(), name=name
    )


def _channels(input_shape, name: str) -> int:
    channels = input_shape[-1]
    if channels is None:
        raise ValueError(f"{name}: the channel dimension must be known, got {input_shape}")
    return int(channels)


class _GFLABlock(tf.keras.layers.Layer):
    """Holds `filters`, `hidden_filters` and `leaky_relu_slope` and their config."""

    def __init__(self, filters: int, hidden_filters=None, leaky_relu_slope: float = 0.1, impl: str = "default",
                 **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.hidden_filters = None if hidden_filters is None else int(hidden_filters)
        self.leaky_relu_slope = leaky_relu_slope
        self.impl = check_impl(impl, self.name)
        self.activation = LeakyReLU(leaky_relu_slope, impl=impl, name="activation")

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "hidden_filters": self.hidden_filters,
            "leaky_relu_slope": self.leaky_relu_slope,
            "impl": self.impl,
        }


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class EncoderBlock(_GFLABlock):
    """N -> A -> conv 4x4 stride 2 -> N -> A -> conv 3x3: `[B, H, W, Cin]` -> `[B, H/2, W/2, filters]`."""

    def build(self, input_shape):
        self.norm_in = InstanceNormalization(name="norm_in", impl=self.impl)
        self.conv_down = conv(self.filters, 4, strides=2, name="conv_down")
        self.norm_hidden = InstanceNormalization(name="norm_hidden", impl=self.impl)
        self.conv = conv(self.filters, 3, name="conv")
        super().build(input_shape)

    def call(self, inputs):
        x = self.conv_down(self.activation(self.norm_in(inputs)))
        return self.conv(self.activation(self.norm_hidden(x)))


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class ResidualBlock(_GFLABlock):
    """`[B, H, W, Cin]` -> `[B, H, W, filters]`; hidden width `hidden_filters` (default Cin)."""

    def build(self, input_shape):
        in_channels = _channels(input_shape, self.name)
        hidden = self.hidden_filters or in_channels
        self.norm_in = InstanceNormalization(name="norm_in", impl=self.impl)
        self.conv1 = conv(hidden, 3, name="conv1")
        self.norm_hidden = InstanceNormalization(name="norm_hidden", impl=self.impl)
        self.conv2 = conv(self.filters, 3, name="conv2")
        self.shortcut = (
            conv(self.filters, 1, name="shortcut") if in_channels != self.filters else None
        )
        super().build(input_shape)

    def call(self, inputs):
        x = self.conv1(self.activation(self.norm_in(inputs)))
        x = self.conv2(self.activation(self.norm_hidden(x)))
        return x + (self.shortcut(inputs) if self.shortcut is not None else inputs)


def transposed_conv_torch(layer: tf.keras.layers.Conv2DTranspose, inputs) -> tf.Tensor:
    """A 'VALID' k=3 stride-2 `Conv2DTranspose` cropped to PyTorch's (padding 1, output_padding 1)
    result: `[B, H, W, C]` -> `[B, 2H, 2W, filters]` (rows and columns 1..2H of the full output)."""
    return layer(inputs)[:, 1:, 1:, :]


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class DecoderBlock(_GFLABlock):
    """`[B, H, W, Cin]` -> `[B, 2H, 2W, filters]`; hidden width `hidden_filters` (default Cin)."""

    def build(self, input_shape):
        hidden = self.hidden_filters or _channels(input_shape, self.name)
        self.norm_in = InstanceNormalization(name="norm_in", impl=self.impl)
        self.conv = conv(hidden, 3, name="conv")
        self.norm_hidden = InstanceNormalization(name="norm_hidden", impl=self.impl)
        self.conv_up = transposed_conv(self.filters, name="conv_up")
        self.shortcut = transposed_conv(self.filters, name="shortcut")
        super().build(input_shape)

    def call(self, inputs):
        x = self.conv(self.activation(self.norm_in(inputs)))
        x = transposed_conv_torch(self.conv_up, self.activation(self.norm_hidden(x)))
        return x + transposed_conv_torch(self.shortcut, inputs)


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class JumpBlock(_GFLABlock):
    """A -> reflection pad 1 -> conv 3x3 'VALID': `[B, H, W, Cin]` -> `[B, H, W, filters]`.
    With `tanh=True` it is GFLA's `Output` layer."""

    def __init__(self, filters: int, leaky_relu_slope: float = 0.1, tanh: bool = False, impl: str = "default",
                 **kwargs):
        kwargs.pop("hidden_filters", None)
        super().__init__(filters, None, leaky_relu_slope, impl, **kwargs)
        self.tanh = tanh
        self.conv = conv(filters, 3, padding="valid", name="conv")

    def call(self, inputs):
        x = tf.pad(self.activation(inputs), [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
        x = self.conv(x)
        return tf.tanh(x) if self.tanh else x

    def get_config(self):
        return {**super().get_config(), "tanh": self.tanh}
