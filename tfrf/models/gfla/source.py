"""GFLA's source network (`PoseSourceNet`): the source image's features at H/4 and H/8.

Ren et al., CVPR 2020: EncoderBlocks 3 -> 64 (H/2) -> 128 (H/4) -> 256 (H/8). The local
attention of the target network reads these features at the flow's positions.
"""
from __future__ import annotations

from typing import Dict

import tensorflow as tf

from tfrf.config import ModelConfig
from tfrf.models.base import ConfiguredLayer
from tfrf.models.gfla.blocks import EncoderBlock

SOURCE_WIDTHS = (64, 128, 256)


@tf.keras.utils.register_keras_serializable(package="tfrf.gfla")
class GFLASourceEncoder(ConfiguredLayer):
    """Three EncoderBlocks on the source image (widths scaled by `config.width_multiplier`)."""

    def __init__(self, config: ModelConfig, impl: str = "default", **kwargs):
        super().__init__(config, impl, **kwargs)
        c, slope = self.config.channels, self.config.leaky_relu_slope
        self.blocks = [
            EncoderBlock(c(width), leaky_relu_slope=slope, impl=impl, name=f"block{index}")
            for index, width in enumerate(SOURCE_WIDTHS)
        ]

    def call(self, images) -> Dict[str, tf.Tensor]:
        """images `[N, H, W, 3]` -> {"h4": `[N, H/4, W/4, c(128)]`, "h8": `[N, H/8, W/8, c(256)]`}."""
        h2 = self.blocks[0](images)
        h4 = self.blocks[1](h2)
        return {"h4": h4, "h8": self.blocks[2](h4)}
