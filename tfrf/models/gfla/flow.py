"""GFLA's global flow field estimator (`PoseFlowNet`, and `ShapeNetFlowNet` for view synthesis).

Ren et al., CVPR 2020, sec. 3.1. Width 32, cap 256, five EncoderBlocks:

    input -> 32 (H/2) -> 64 (H/4) -> 128 (H/8) -> 256 (H/16) -> 256 (H/32)
    DecoderBlock 256 -> 256 (H/16) + Jump(encoder H/16)
    DecoderBlock 256 -> 128 (H/8)  + Jump(encoder H/8)   -> flow (2) and mask (1, sigmoid) if attended
    DecoderBlock 128 -> 64  (H/4)  + Jump(encoder H/4)   -> flow (2) and mask (1, sigmoid) if attended

The decoder stops at the finest attention level. Pose transfer: the input is concat(source
image, source pose, target pose). View synthesis (`config.gfla_view_synthesis`): the input is the
source image alone; the pose difference (source - target, a vector) is tiled over the H/32
bottleneck, concatenated, and passed through one ResidualBlock back to 256 channels.

Flows are (dx, dy) in pixels of their level's map: output pixel p reads the source at p + flow.
The mask m weighs the local-attention output against the target feature: out·(1-m) + attn·m.
"""
from __future__ import annotations

from typing import Dict, Optional

import tensorflow as tf

from tfrf.config import ModelConfig
from tfrf.models.base import ConfiguredLayer, flow_dtype
from tfrf.models.gfla.blocks import DecoderBlock, EncoderBlock, JumpBlock, ResidualBlock, conv

ENCODER_WIDTHS = (32, 64, 128, 256, 256)
DECODER_LEVELS = ("h16", "h8", "h4")  # what each decoder block outputs
DECODER_WIDTHS = (256, 128, 64)


def tile_vector(vector, height, width):
    """`[B, C]` -> `[B, height, width, C]` (GFLA's `repeat` of a pose vector over a map)."""
    return tf.tile(vector[:, None, None, :], tf.stack([1, height, width, 1]))


@tf.keras.utils.register_keras_serializable(package="tfrf.gfla")
class GFLAFlowNetwork(ConfiguredLayer):
    """Flow fields and masks at `config.gfla_attention_levels`."""

    def __init__(self, config: ModelConfig, impl: str = "default", **kwargs):
        super().__init__(config, impl, **kwargs)
        config = self.config
        c, slope = config.channels, config.leaky_relu_slope
        self.levels = tuple(config.gfla_attention_levels)
        self.encoder = [
            EncoderBlock(c(width), leaky_relu_slope=slope, impl=impl, name=f"encoder{index}")
            for index, width in enumerate(ENCODER_WIDTHS)
        ]
        # GFLA's ResBlocks(1, 256 + Cp, 256): hidden width = its input width.
        self.pose_fusion = (
            ResidualBlock(c(256), leaky_relu_slope=slope, impl=impl, name="pose_fusion") if config.gfla_view_synthesis else None
        )
        depth = max(DECODER_LEVELS.index(level) for level in self.levels) + 1
        self.decoders = [
            DecoderBlock(c(width), hidden_filters=c(width), leaky_relu_slope=slope, impl=impl, name=f"decoder_{level}")
            for level, width in zip(DECODER_LEVELS[:depth], DECODER_WIDTHS)
        ]
        self.jumps = [
            JumpBlock(c(width), leaky_relu_slope=slope, impl=impl, name=f"jump_{level}")
            for level, width in zip(DECODER_LEVELS[:depth], DECODER_WIDTHS)
        ]
        self.flow_heads = {level: conv(2, 3, name=f"flow_{level}", dtype=flow_dtype()) for level in self.levels}
        self.mask_heads = {level: conv(1, 3, name=f"mask_{level}") for level in self.levels}

    @property
    def affine_patch_sizes(self) -> Dict[str, int]:
        """The window of GFLA's affine regularisation per level: its local-attention patch size
        (3 at H/8, 5 at H/4 for DeepFashion; 3 at H/4 for Market)."""
        return dict(self.config.gfla_kernel_sizes)

    def flow_variables(self):
        """The trainable variables the flow losses reach: all but the mask heads, which only the
        image losses train (GFLA's end-to-end stage)."""
        unreached = {variable.ref() for head in self.mask_heads.values() for variable in head.trainable_variables}
        return [variable for variable in self.trainable_variables if variable.ref() not in unreached]

    def call(self, inputs, pose_difference: Optional[tf.Tensor] = None) -> Dict[str, Dict[str, tf.Tensor]]:
        """Estimate the flows.

        Args:
            inputs: pose transfer: concat(source image, source pose, target pose)
                `[N, H, W, 3 + 2*Cp]`; view synthesis: the source image `[N, H, W, 3]`.
            pose_difference: view synthesis only: source pose - target pose, `[N, Cp]`.

        Returns:
            Per attention level a dict with `flow` `[N, h, w, 2]` and `mask` `[N, h, w, 1]`.
        """
        skips = []
        x = inputs
        for block in self.encoder:
            x = block(x)
            skips.append(x)  # H/2, H/4, H/8, H/16, H/32
        if self.pose_fusion is not None:
            if pose_difference is None:
                raise ValueError(f"{self.name}: the view-synthesis flow network needs pose_difference [N, Cp]")
            shape = tf.shape(x)
            pose = tf.cast(tile_vector(pose_difference, shape[1], shape[2]), x.dtype)
            x = self.pose_fusion(tf.concat([x, pose], axis=-1))
        outputs = {}
        for index, (decoder, jump) in enumerate(zip(self.decoders, self.jumps)):
            x = decoder(x) + jump(skips[3 - index])
            level = DECODER_LEVELS[index]
            if level in self.levels:
                outputs[level] = {"flow": self.flow_heads[level](x), "mask": tf.sigmoid(self.mask_heads[level](x))}
        return outputs
