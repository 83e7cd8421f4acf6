"""BigGAN-style pre-activation residual blocks (Brock et al. 2019), LeakyReLU for ReLU.

Used throughout the paper's networks (supplementary tables 5-7):
- `ResBlockDown` halves H and W (average pooling), no normalisation by default;
- `ResBlockUp` doubles H and W (nearest upsampling), instance norm by default;
- `ResBlock` keeps the resolution, instance norm by default.
Every block can wrap its convolutions in spectral normalisation (the discriminator does).
"""
from __future__ import annotations

import tensorflow as tf

from tfrf.layers.activations import LeakyReLU
from tfrf.layers.impl import check_impl
from tfrf.layers.normalization import InstanceNormalization

NORMALIZATIONS = ("none", "instance")


def _conv(filters: int, kernel_size: int, spectral_norm: bool, name: str):
    conv = tf.keras.layers.Conv2D(filters, kernel_size, padding="same", name=name)
    if spectral_norm:
        from tfrf.layers.spectral_norm import SpectralNormalization

        return SpectralNormalization(conv, name=f"{name}_sn")
    return conv


def _norm(normalization: str, name: str, impl: str):
    if normalization == "instance":
        return InstanceNormalization(name=name, impl=impl)
    if normalization == "none":
        return tf.keras.layers.Activation("linear", name=name)
    raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")


# Nearest 2x upsampling then a 3x3 "same" conv: output row 2i + a reads low-res rows i - 1, i, i
# (a = 0) or i, i, i + 1 (a = 1). _PHASE_TAPS[a][u, d]: tap d of the 3x3 kernel lands on low-res
# offset u - 1 for phase a.
_PHASE_TAPS = ([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0]], [[0.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def _upsampling_conv(x, conv):
    """`conv(nearest_upsample_2x(x))` for a 3x3 "same" Conv2D, computed at x's resolution:
    `[B, h, w, C]` -> `[B, 2h, 2w, filters]`."""
    if not conv.built:
        conv.build(x.shape)
    kernel = conv.kernel  # [3, 3, C, F]
    phases = tf.constant(_PHASE_TAPS, kernel.dtype)  # [2, 3, 3]
    # [a, b, u, v, C, F]: the low-res kernel of output phase (a, b).
    combined = tf.einsum("aud,bve,deio->abuvio", phases, phases, kernel)
    filters = kernel.shape[-1]
    # depth_to_space reads channel (a * 2 + b) * F + f into position (a, b).
    combined = tf.reshape(tf.transpose(combined, [2, 3, 4, 0, 1, 5]), [3, 3, kernel.shape[2], 4 * filters])
    y = tf.nn.conv2d(x, tf.cast(combined, x.dtype), 1, "SAME")
    if conv.use_bias:
        y = y + tf.tile(tf.cast(conv.bias, x.dtype), [4])
    return tf.nn.depth_to_space(y, 2)


@tf.custom_gradient
def _nearest_upsample_2x(x):
    """Nearest 2x upsampling `[B, h, w, C]` -> `[B, 2h, 2w, C]`: the forward pass is Keras's
    `UpSampling2D` op (ResizeNearestNeighbor); the gradient sums each 2x2 output block, which XLA
    compiles (ResizeNearestNeighborGrad has no XLA kernel: `tfrf train --xla`)."""
    shape = tf.shape(x)
    height, width = x.shape[1], x.shape[2]
    # Static sizes where known, so the graph (and an exported signature) keeps them.
    size = [2 * height, 2 * width] if height is not None and width is not None else shape[1:3] * 2
    y = tf.image.resize(x, size, method="nearest")

    def gradient(upstream):
        blocks = tf.reshape(upstream, [shape[0], shape[1], 2, shape[2], 2, shape[3]])
        return tf.reduce_sum(blocks, axis=[2, 4])

    return y, gradient


class _ResidualBlock(tf.keras.layers.Layer):
    """Shared anatomy: norm -> act -> [resample] -> conv3x3 -> norm -> act -> conv3x3 (+ shortcut)."""

    resample = None  # "down", "up" or None

    def __init__(
        self,
        filters: int,
        normalization: str = "none",
        spectral_norm: bool = False,
        leaky_relu_slope: float = 0.1,
        impl: str = "default",
        **kwargs,
    ):
        """`impl` (`tfrf.layers.impl`): "export" traces `_call_export`, the same function in cheaper
        TFLite ops (not with spectral norm), and builds the export kernels of its layers."""
        super().__init__(**kwargs)
        self.impl = check_impl(impl, self.name)
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"{self.name}: normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        self.filters = int(filters)
        self.normalization = normalization
        self.spectral_norm = spectral_norm
        self.leaky_relu_slope = leaky_relu_slope

    def build(self, input_shape):
        in_channels = input_shape[-1]
        if in_channels is None:
            raise ValueError(f"{self.name}: the channel dimension must be known, got {input_shape}")
        self.norm1 = _norm(self.normalization, "norm1", self.impl)
        self.conv1 = _conv(self.filters, 3, self.spectral_norm, "conv1")
        self.norm2 = _norm(self.normalization, "norm2", self.impl)
        self.conv2 = _conv(self.filters, 3, self.spectral_norm, "conv2")
        self.activation = LeakyReLU(self.leaky_relu_slope, impl=self.impl)
        self.learned_shortcut = in_channels != self.filters or self.resample is not None
        if self.learned_shortcut:
            self.conv_shortcut = _conv(self.filters, 1, self.spectral_norm, "conv_shortcut")
        if self.resample == "down":
            self.pool = tf.keras.layers.AveragePooling2D(2)
        elif self.resample == "up":
            self.upsample = tf.keras.layers.UpSampling2D(2, interpolation="nearest")
        super().build(input_shape)

    def call(self, inputs):
        """inputs `[B, H, W, C_in]` -> `[B, H', W', filters]` (H' = H/2, H or 2H)."""
        if self.impl == "export" and not self.spectral_norm:
            return self._call_export(inputs)
        x = self.activation(self.norm1(inputs))
        if self.resample == "up":
            x = _nearest_upsample_2x(x)
        x = self.conv1(x)
        x = self.conv2(self.activation(self.norm2(x)))
        if self.resample == "down":
            x = self.pool(x)

        shortcut = inputs
        if self.resample == "up":
            shortcut = _nearest_upsample_2x(shortcut)
        if self.learned_shortcut:
            shortcut = self.conv_shortcut(shortcut)
        if self.resample == "down":
            shortcut = self.pool(shortcut)
        return x + shortcut

    def _call_export(self, inputs):
        """`call` for TFLite, equal up to float32 rounding: the linear shortcut commutes with the
        resampling, so it runs at the lower resolution (pool before, upsample after the 1x1
        conv); nearest upsampling + 3x3 conv becomes one 3x3 conv at the low resolution with the
        four output phases' summed taps as 4x the channels, then DEPTH_TO_SPACE."""
        x = self.activation(self.norm1(inputs))
        x = _upsampling_conv(x, self.conv1) if self.resample == "up" else self.conv1(x)
        x = self.conv2(self.activation(self.norm2(x)))
        shortcut = inputs
        if self.resample == "down":
            x = self.pool(x)
            shortcut = self.pool(shortcut)
        if self.learned_shortcut:
            shortcut = self.conv_shortcut(shortcut)
        if self.resample == "up":
            shortcut = self.upsample(shortcut)
        return x + shortcut

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "normalization": self.normalization,
            "spectral_norm": self.spectral_norm,
            "leaky_relu_slope": self.leaky_relu_slope,
            "impl": self.impl,
        }


@tf.keras.utils.register_keras_serializable(package="tfrf")
class ResBlockDown(_ResidualBlock):
    """Residual block that halves H and W (BigGAN discriminator block)."""

    resample = "down"


@tf.keras.utils.register_keras_serializable(package="tfrf")
class ResBlockUp(_ResidualBlock):
    """Residual block that doubles H and W, instance norm (BigGAN generator block)."""

    resample = "up"

    def __init__(self, filters: int, normalization: str = "instance", **kwargs):
        super().__init__(filters, normalization=normalization, **kwargs)


@tf.keras.utils.register_keras_serializable(package="tfrf")
class ResBlock(_ResidualBlock):
    """Residual block at constant resolution, instance norm."""

    resample = None

    def __init__(self, filters: int, normalization: str = "instance", **kwargs):
        super().__init__(filters, normalization=normalization, **kwargs)


@tf.keras.utils.register_keras_serializable(package="tfrf")
class SpaceToDepthResBlockDown(_ResidualBlock):
    """A `ResBlockDown` replacement with no convolution at the input resolution.

    `[B, H, W, C]` -> SPACE_TO_DEPTH(2) -> `[B, H/2, W/2, 4C]` -> residual block at H/2
    (norm -> act -> conv3x3 -> norm -> act -> conv3x3, plus a 1x1 shortcut) -> `[B, H/2, W/2,
    filters]`: the output shape of `ResBlockDown(filters)` on the same input, with both 3x3
    convolutions at a quarter of the pixels. The pooled 1x1 shortcut of `ResBlockDown` is one
    particular 1x1 conv of the space-to-depth input, so the shortcut here is at least as
    expressive. Used for the generator's first blocks when `ModelConfig.full_resolution` is
    "space_to_depth" (TFLite: one SPACE_TO_DEPTH builtin in front of the block). Channel
    `(a * 2 + b) * C + c` of the block's input is input pixel (2i + a, 2j + b), channel c
    (`tf.nn.space_to_depth`'s layout).
    """

    resample = None
    block_size = 2

    def build(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        if input_shape[-1] is None:
            raise ValueError(f"{self.name}: the channel dimension must be known, got {input_shape}")
        super().build(input_shape[:-1].concatenate([input_shape[-1] * self.block_size**2]))
        self._build_input_shape = input_shape

    def call(self, inputs):
        """inputs `[B, H, W, C]` (H, W even) -> `[B, H/2, W/2, filters]`."""
        return super().call(tf.nn.space_to_depth(inputs, self.block_size))
