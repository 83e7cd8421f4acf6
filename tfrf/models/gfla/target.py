"""GFLA's target image generator (`PoseTargetNet`, and `ShapeNetTargetNet` for view synthesis).

Ren et al., CVPR 2020, sec. 3.2. The target pose is encoded to H/8 (pose transfer: EncoderBlocks
Cp -> 64 -> 128 -> 256; view synthesis: the pose vector tiled at H/32 and decoded by two
DecoderBlocks Cp -> 64 -> 256). Then three decoder stages, H/8 -> H/4 -> H/2 -> H:

    [at an attention level: a = LocalAttention(source feature, x, flow); x = x·(1-m) + a·m]
    ResidualBlock(C) -> DecoderBlock(C -> C')          C: 256 -> 128 -> 64 -> 64

and GFLA's Output layer (LeakyReLU -> reflection pad -> conv 3x3 -> tanh).
"""
from __future__ import annotations

from typing import Mapping

import tensorflow as tf

from tfrf.config import ModelConfig
from tfrf.models.base import ConfiguredLayer
from tfrf.models.gfla.attention import LocalAttention
from tfrf.models.gfla.blocks import DecoderBlock, EncoderBlock, JumpBlock, ResidualBlock
from tfrf.models.gfla.flow import tile_vector

STAGES = (("h8", 256, 128), ("h4", 128, 64), ("h2", 64, 64))  # level, width in, width out
POSE_ENCODER_WIDTHS = (64, 128, 256)
ATTENTION_HIDDEN = 128


def pose_vector(pose_map):
    """A pose broadcast over H x W, `[B, H, W, Cp]` -> its vector `[B, Cp]` (the spatial mean)."""
    return tf.reduce_mean(pose_map, axis=[1, 2])


@tf.keras.utils.register_keras_serializable(package="tfrf.gfla")
class GFLATargetNetwork(ConfiguredLayer):
    """Target pose encoder, local attention at `config.gfla_attention_levels`, image decoder."""

    def __init__(self, config: ModelConfig, impl: str = "default", **kwargs):
        super().__init__(config, impl, **kwargs)
        config = self.config
        c, slope = config.channels, config.leaky_relu_slope
        self.view_synthesis = config.gfla_view_synthesis
        if self.view_synthesis:
            # GFLA's ShapeNet target net: hidden widths default to each block's input width.
            self.pose_blocks = [
                DecoderBlock(c(64), leaky_relu_slope=slope, impl=impl, name="pose_block0"),
                DecoderBlock(c(256), leaky_relu_slope=slope, impl=impl, name="pose_block1"),
            ]
        else:
            self.pose_blocks = [
                EncoderBlock(c(width), leaky_relu_slope=slope, impl=impl, name=f"pose_block{index}")
                for index, width in enumerate(POSE_ENCODER_WIDTHS)
            ]
        kernel_sizes = config.gfla_kernel_sizes
        self.attention = {
            level: LocalAttention(kernel_sizes[level], c(ATTENTION_HIDDEN), slope, impl=impl, name=f"attention_{level}")
            for level in config.gfla_attention_levels
        }
        self.residual_blocks = [
            ResidualBlock(c(width), leaky_relu_slope=slope, impl=impl, name=f"residual_{level}") for level, width, _ in STAGES
        ]
        self.up_blocks = [
            DecoderBlock(c(out), hidden_filters=c(width), leaky_relu_slope=slope, impl=impl, name=f"up_{level}")
            for level, width, out in STAGES
        ]
        self.output_block = JumpBlock(3, leaky_relu_slope=slope, tanh=True, impl=impl, name="output")

    def encode_pose(self, target_pose):
        """`[B, H, W, Cp]` -> the target feature at H/8."""
        if self.view_synthesis:
            shape = tf.shape(target_pose)
            x = tile_vector(pose_vector(target_pose), shape[1] // 32, shape[2] // 32)  # GFLA: 8 x 8 at 256
        else:
            x = target_pose
        for block in self.pose_blocks:
            x = block(x)
        return x

    def call(self, target_pose, source_features: Mapping[str, tf.Tensor], flow_outputs: Mapping[str, Mapping],
             return_intermediates: bool = False):
        """Generate the target image from the one source's features and flows.

        Args:
            target_pose: `[B, H, W, Cp]`.
            source_features: per level ("h8", "h4") the source features `[B, 1, h, w, C]`.
            flow_outputs: per attention level `flow` `[B, 1, h, w, 2]` and `mask` `[B, 1, h, w, 1]`.
            return_intermediates: also return per attention level the local-attention
                coefficients `[B, 1, h, w, k*k]`.

        Returns:
            image `[B, H, W, 3]` in [-1, 1] (float32), and with `return_intermediates` the
            coefficients dict.
        """
        x = self.encode_pose(target_pose)
        coefficients = {}
        for (level, _, _), residual, up in zip(STAGES, self.residual_blocks, self.up_blocks):
            if level in self.attention:
                source = tf.cast(source_features[level][:, 0], x.dtype)
                flow = flow_outputs[level]["flow"][:, 0]
                mask = tf.cast(flow_outputs[level]["mask"][:, 0], x.dtype)
                attended, coefficients[level] = self.attention[level](source, x, flow, return_coefficients=True)
                x = x * (1.0 - mask) + attended * mask
            x = up(residual(x))
        image = tf.cast(self.output_block(x), tf.float32)
        if return_intermediates:
            return image, {level: value[:, None] for level, value in coefficients.items()}
        return image
