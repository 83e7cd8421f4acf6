"""GFLA's image discriminator (`ResDiscriminator`, Ren et al. CVPR 2020, `discriminator.py`).

A stack of residual down blocks, no normalisation, spectral normalisation (PyTorch semantics,
`tfrf.layers.SpectralNormalization`) on every convolution:

    block(in -> out, hidden):  LeakyReLU -> conv 3x3 (in -> hidden) -> LeakyReLU
                               -> conv 4x4 stride 2 pad 1 (hidden -> out)
                             + avg-pool 2 -> conv 1x1 (in -> out)
    blocks: 3 -> 32 (hidden 32), then per further block channels double up to the cap, hidden =
            the block's input width; head: LeakyReLU -> conv 1x1 -> one logit per patch.

GFLA uses width 32, cap 128, LeakyReLU(0.1), 4 blocks for DeepFashion (3->32->64->128->128,
logits at H/16) and 3 for Market-1501 (logits at H/8); the block count is a constructor
argument, never a dataset switch. Weights start orthogonal with gain 0.02 and zero biases
(GFLA's `init_type='orthogonal'`).
"""
from __future__ import annotations

import tensorflow as tf

from tfrf.layers.activations import LeakyReLU
from tfrf.layers.spectral_norm import SpectralNormalization
from tfrf.ops.shapes import check_rank
from tfrf.ops.snapshot import snapshot


def _conv(filters: int, kernel_size: int, stride: int, spectral_norm: bool, name: str):
    conv = tf.keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=stride,
        padding="valid",
        kernel_initializer=tf.keras.initializers.Orthogonal(gain=0.02),
        bias_initializer="zeros",
        name=name,
    )
    return SpectralNormalization(conv, name=f"{name}_sn") if spectral_norm else conv


@tf.keras.utils.register_keras_serializable(package="tfrf")
class GFLAResBlockDown(tf.keras.layers.Layer):
    """GFLA's `ResBlockEncoder` without norm: `[B, H, W, C_in]` -> `[B, H/2, W/2, filters]`.

    Args:
        filters: output channels.
        hidden_filters: channels of the first 3x3 conv.
        spectral_norm: wrap the three convolutions in spectral normalisation.
        leaky_relu_slope: LeakyReLU slope (GFLA: 0.1).
    """

    def __init__(self, filters: int, hidden_filters: int, spectral_norm: bool = True,
                 leaky_relu_slope: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.hidden_filters = int(hidden_filters)
        self.spectral_norm = bool(spectral_norm)
        self.leaky_relu_slope = float(leaky_relu_slope)
        self.activation = LeakyReLU(self.leaky_relu_slope)
        self.conv1 = _conv(self.hidden_filters, 3, 1, self.spectral_norm, "conv1")
        self.conv2 = _conv(self.filters, 4, 2, self.spectral_norm, "conv2")
        self.shortcut = _conv(self.filters, 1, 1, self.spectral_norm, "shortcut")
        self.pad = tf.keras.layers.ZeroPadding2D(1)  # PyTorch's padding=1 (TF 'same' differs on odd sizes)
        self.pool = tf.keras.layers.AveragePooling2D(2)

    def call(self, inputs, training=None):
        """inputs `[B, H, W, C_in]` -> `[B, floor(H/2), floor(W/2), filters]`."""
        x = self.conv1(self.pad(self.activation(inputs)), training=training)
        x = self.conv2(self.pad(self.activation(x)), training=training)
        return x + self.shortcut(self.pool(inputs), training=training)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "hidden_filters": self.hidden_filters,
            "spectral_norm": self.spectral_norm,
            "leaky_relu_slope": self.leaky_relu_slope,
        }


@tf.keras.utils.register_keras_serializable(package="tfrf")
class GFLADiscriminator(tf.keras.Model):
    """GFLA's patch discriminator: `[B, H, W, 3]` in [-1, 1] -> logits `[B, H/2^n, W/2^n, 1]`.

    Args:
        num_blocks: residual down blocks n (GFLA's `layers`: 4 for DeepFashion, 3 for Market).
        base_channels: width of the first block (GFLA's `ndf`, 32).
        max_channels: channel cap (GFLA's `img_f`, 128).
        spectral_norm: spectral normalisation on every convolution (GFLA: yes).
        leaky_relu_slope: LeakyReLU slope (0.1).
        input_channels: image channels (3).
    """

    def __init__(self, num_blocks: int = 4, base_channels: int = 32, max_channels: int = 128,
                 spectral_norm: bool = True, leaky_relu_slope: float = 0.1, input_channels: int = 3, **kwargs):
        kwargs.setdefault("name", "gfla_discriminator")
        super().__init__(**kwargs)
        if int(num_blocks) < 1:
            raise ValueError(f"GFLADiscriminator: num_blocks must be >= 1, got {num_blocks}")
        if int(base_channels) < 1 or int(max_channels) < int(base_channels):
            raise ValueError(
                f"GFLADiscriminator: need 1 <= base_channels <= max_channels, got {base_channels}, {max_channels}"
            )
        self.num_blocks = int(num_blocks)
        self.base_channels = int(base_channels)
        self.max_channels = int(max_channels)
        self.spectral_norm = bool(spectral_norm)
        self.leaky_relu_slope = float(leaky_relu_slope)
        self.input_channels = int(input_channels)
        widths = self.block_widths()
        common = dict(spectral_norm=self.spectral_norm, leaky_relu_slope=self.leaky_relu_slope)
        self.blocks = [GFLAResBlockDown(widths[0], widths[0], name="block0", **common)]
        self.blocks += [
            GFLAResBlockDown(widths[i + 1], widths[i], name=f"encoder{i}", **common) for i in range(self.num_blocks - 1)
        ]
        self.activation = LeakyReLU(self.leaky_relu_slope)
        self.head = _conv(1, 1, 1, self.spectral_norm, "conv")
        self.to_float32 = tf.keras.layers.Activation("linear", dtype="float32")

    def block_widths(self):
        """Output channels of each block: base * min(2^i, max / base) (GFLA's `mult`)."""
        cap = self.max_channels // self.base_channels
        return [self.base_channels * min(2**i, cap) for i in range(self.num_blocks)]

    def call(self, images, training=None):
        """images `[B, H, W, C]` -> realism logits `[B, H/2^n, W/2^n, 1]` (float32)."""
        channels = self.input_channels
        check_rank(images, 4, "GFLADiscriminator", "images", f"[B, H, W, {channels}]", last=channels)
        # A single-output copy of the input: TF 2.15's oneDNN rewrite otherwise lets the fused
        # LeakyReLU read another output of a multi-output `IteratorGetNext` (see `Generator`).
        x = snapshot(images)
        for block in self.blocks:
            x = block(x, training=training)
        return self.to_float32(self.head(self.activation(x), training=training))

    def get_config(self):
        return {
            "num_blocks": self.num_blocks,
            "base_channels": self.base_channels,
            "max_channels": self.max_channels,
            "spectral_norm": self.spectral_norm,
            "leaky_relu_slope": self.leaky_relu_slope,
            "input_channels": self.input_channels,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**config)
