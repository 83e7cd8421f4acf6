"""Target image predictor (paper supplementary, table 7).

Encodes the target pose to f_t at H/8, fuses the warped source features there and at H/4 with
residual fusing blocks, and decodes to the image:

    pose -> ResBlockDown 64, 128, 256 -> f_t (H/8)
    RF(256, H/8) -> ResBlock -> ResBlockUp 128 (H/4)        [D^1]
    RF(128, H/4) -> ResBlock -> ResBlockUp 64 (H/2)         [D^2]
    ResBlock -> ResBlockUp 64 (H) -> 3x3 conv -> tanh

With `ModelConfig.full_resolution == "space_to_depth"` nothing convolves at H x W: the pose
encoder's first block takes SPACE_TO_DEPTH(2) of the pose (`SpaceToDepthResBlockDown`), and the
head is ResBlock -> ResBlock 64 (H/2) -> 3x3 conv -> 4 x 3 channels -> DEPTH_TO_SPACE(2) (H) ->
tanh (sub-pixel convolution, Shi et al. 2016).
"""
from __future__ import annotations

import tensorflow as tf

from tfrf.layers import LeakyReLU, ResBlock, ResBlockDown, ResBlockUp, ResidualFusingBlock
from tfrf.models.base import ConfiguredLayer
from tfrf.models.extractors import LEVELS


@tf.keras.utils.register_keras_serializable(package="tfrf")
class TargetImagePredictor(ConfiguredLayer):
    """Pose encoder, two residual fusing blocks and the image decoder."""

    def __init__(self, config, impl: str = "default", **kwargs):
        super().__init__(config, impl, **kwargs)
        config = self.config
        c = config.channels
        self.pose_encoder = [self.first_block(c(64), name="pose_down1")] + [
            self.block(ResBlockDown, c(width), name=f"pose_down{i + 2}") for i, width in enumerate((128, 256))
        ]
        self.fusing = {
            level: ResidualFusingBlock(
                use_residual_flow=config.use_residual_flow,
                use_occlusion=config.use_occlusion,
                use_attention=config.use_attention,
                warp_backend=config.warp_backend,
                order_invariant=config.order_invariant_fusion,
                impl=impl,
                name=f"fusing_{level}",
            )
            for level in LEVELS
        }
        self.decode_h8 = [self.block(ResBlock, c(256), name="decode_h8_res"),
                          self.block(ResBlockUp, c(128), name="decode_h8_up")]
        self.decode_h4 = [self.block(ResBlock, c(128), name="decode_h4_res"),
                          self.block(ResBlockUp, c(64), name="decode_h4_up")]
        # The last block: up to H, or (space_to_depth) kept at H/2 with a sub-pixel to_rgb.
        self.pixel_shuffle = config.full_resolution == "space_to_depth"
        last = (self.block(ResBlock, c(64), name="decode_h2_head") if self.pixel_shuffle
                else self.block(ResBlockUp, c(64), name="decode_h2_up"))
        self.decode_h2 = [self.block(ResBlock, c(64), name="decode_h2_res"), last]
        self.output_activation = LeakyReLU(config.leaky_relu_slope, impl=impl)
        rgb_channels = 4 * 3 if self.pixel_shuffle else 3  # depth_to_space: channel (a*2+b)*3+c -> pixel (2i+a, 2j+b)
        self.to_rgb = tf.keras.layers.Conv2D(rgb_channels, 3, padding="same", name="to_rgb")
        self.tanh = tf.keras.layers.Activation("tanh", dtype="float32", name="tanh")

    def call(self, target_pose, source_features, flow_outputs, return_intermediates: bool = False):
        """Predict the target image.

        Args:
            target_pose: `[B, H, W, Cp]`.
            source_features: per level ("h8", "h4") source appearance features `[B, K, h, w, C]`.
            flow_outputs: per level a dict with `flow` `[B, K, h, w, 2]`, `attention_logit` and
                `occlusion` `[B, K, h, w, 1]`.
            return_intermediates: also return the fusing blocks' intermediates per level.

        Returns:
            image `[B, H, W, 3]` in [-1, 1] (float32), and per level the intermediates dict.
        """
        x = target_pose
        for block in self.pose_encoder:
            x = block(x)
        intermediates = {}
        for level, decoder in (("h8", self.decode_h8), ("h4", self.decode_h4)):
            outputs = flow_outputs[level]
            x, intermediates[level] = self.fusing[level](
                x,
                source_features[level],
                outputs["flow"],
                outputs["attention_logit"],
                outputs["occlusion"],
                return_intermediates=True,
            )
            for block in decoder:
                x = block(x)
        for block in self.decode_h2:
            x = block(x)
        rgb = self.to_rgb(self.output_activation(x))
        if self.pixel_shuffle:
            rgb = tf.nn.depth_to_space(rgb, 2)  # [B, H/2, W/2, 12] -> [B, H, W, 3]
        image = self.tanh(rgb)
        if return_intermediates:
            intermediates["output_logits"] = rgb  # the pre-tanh values, for `LossWeights.saturation`
            return image, intermediates
        return image
