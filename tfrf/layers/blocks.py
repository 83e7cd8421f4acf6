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
from tfrf.layers.normalization import InstanceNormalization

NORMALIZATIONS = ("none", "instance")


def _conv(filters: int, kernel_size: int, spectral_norm: bool, name: str):
    conv = tf.keras.layers.Conv2D(filters, kernel_size, padding="same", name=name)
    if spectral_norm:
        from tfrf.layers.spectral_norm import SpectralNormalization

        return SpectralNormalization(conv, name=f"{name}_sn")
    return conv


def _norm(normalization: str, name: str):
    if normalization == "instance":
        return InstanceNormalization(name=name)
    if normalization == "none":
        return tf.keras.layers.Activation("linear", name=name)
    raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")


class _ResidualBlock(tf.keras.layers.Layer):
    """Shared anatomy: norm -> act -> [resample] -> conv3x3 -> norm -> act -> conv3x3 (+ shortcut)."""

    resample = None  # "down", "up" or None

    def __init__(
        self,
        filters: int,
        normalization: str = "none",
        spectral_norm: bool = False,
        leaky_relu_slope: float = 0.1,
        **kwargs,
    ):
        super().__init__(**kwargs)
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
        self.norm1 = _norm(self.normalization, "norm1")
        self.conv1 = _conv(self.filters, 3, self.spectral_norm, "conv1")
        self.norm2 = _norm(self.normalization, "norm2")
        self.conv2 = _conv(self.filters, 3, self.spectral_norm, "conv2")
        self.activation = LeakyReLU(self.leaky_relu_slope)
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
        x = self.activation(self.norm1(inputs))
        if self.resample == "up":
            x = self.upsample(x)
        x = self.conv1(x)
        x = self.conv2(self.activation(self.norm2(x)))
        if self.resample == "down":
            x = self.pool(x)

        shortcut = inputs
        if self.resample == "up":
            shortcut = self.upsample(shortcut)
        if self.learned_shortcut:
            shortcut = self.conv_shortcut(shortcut)
        if self.resample == "down":
            shortcut = self.pool(shortcut)
        return x + shortcut

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "normalization": self.normalization,
            "spectral_norm": self.spectral_norm,
            "leaky_relu_slope": self.leaky_relu_slope,
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
