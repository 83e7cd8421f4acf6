"""Image discriminator: a stack of spectrally normalised ResBlockDown blocks (as in GFLA).

Five blocks take the image to H/32 (64, 128, 256, 256, 512 channels at width 1.0); a 3x3 conv
then gives one realism logit per H/32 patch.
"""
from __future__ import annotations

import tensorflow as tf

from tfrf.config import ModelConfig
from tfrf.layers import LeakyReLU, ResBlockDown, SpectralNormalization
from tfrf.models.base import ConfiguredModel
from tfrf.ops.snapshot import snapshot

DISCRIMINATOR_WIDTHS = (64, 128, 256, 256, 512)


@tf.keras.utils.register_keras_serializable(package="tfrf")
class Discriminator(ConfiguredModel):
    """Patch discriminator on `[B, H, W, 3]` images in [-1, 1] -> logits `[B, H/32, W/32, 1]`.

    Args:
        config: the generator's `ModelConfig` (width multiplier, LeakyReLU slope).
        spectral_norm: wrap every convolution in spectral normalisation
            (`tfrf.layers.SpectralNormalization`, PyTorch's semantics: u, v advance one
            power-iteration step per `training=True` call; inference uses the stored ones).
    """

    def __init__(self, config: ModelConfig, spectral_norm: bool = True, **kwargs):
        kwargs.setdefault("name", "discriminator")
        super().__init__(config, **kwargs)
        config = self.config
        self.spectral_norm = spectral_norm
        self.blocks = [
            ResBlockDown(
                config.channels(width),
                spectral_norm=spectral_norm,
                leaky_relu_slope=config.leaky_relu_slope,
                name=f"down{i + 1}",
            )
            for i, width in enumerate(DISCRIMINATOR_WIDTHS)
        ]
        self.activation = LeakyReLU(config.leaky_relu_slope)
        head = tf.keras.layers.Conv2D(1, 3, padding="same", name="logits")
        if spectral_norm:
            head = SpectralNormalization(head, name="logits_sn")
        self.head = head
        self.to_float32 = tf.keras.layers.Activation("linear", dtype="float32")

    def call(self, images, training=None):
        """images `[B, H, W, 3]` -> realism logits `[B, H/32, W/32, 1]` (float32)."""
        if images.shape.rank is not None and images.shape.rank != 4 or images.shape[-1] not in (None, 3):
            raise ValueError(f"discriminator input must be [B, H, W, 3], got shape {images.shape}")
        # A single-output copy of the input (Snapshot, which grappler keeps): fed straight from a
        # multi-output `IteratorGetNext` (the real images in `fit`/`evaluate`), TF 2.15's oneDNN
        # rewrite makes the fused LeakyReLU read another output of that node (see `Generator`).
        x = snapshot(images)
        for block in self.blocks:
            x = block(x, training=training)
        return self.to_float32(self.head(self.activation(x), training=training))

    def constructor_arguments(self) -> dict:
        return {"spectral_norm": self.spectral_norm}
