"""Per-source networks of the generator (paper supplementary, tables 5 and 6).

Both run on `[N, H, W, ...]` with N = B*K: the generator folds the K sources into the batch,
so the weights are shared across sources and one graph serves every K.
"""
from __future__ import annotations

from typing import Dict

import tensorflow as tf

from tfrf.layers import LeakyReLU, ResBlockDown, ResBlockUp
from tfrf.layers.impl import check_impl
from tfrf.models.base import ConfiguredLayer, flow_dtype

LEVELS = ("h8", "h4")


@tf.keras.utils.register_keras_serializable(package="tfrf")
class SourceAppearanceExtractor(ConfiguredLayer):
    """ResBlockDown 3->64 (H/2) -> 128 (H/4) -> 256 (H/8); the H/4 and H/8 maps feed fusing.

    The first block is `first_block`: with `full_resolution="space_to_depth"` it runs at H/2.
    """

    def __init__(self, config, impl: str = "default", **kwargs):
        super().__init__(config, impl, **kwargs)
        c = self.config.channels
        self.down1 = self.first_block(c(64), name="down1")
        self.down2 = self.block(ResBlockDown, c(128), name="down2")
        self.down3 = self.block(ResBlockDown, c(256), name="down3")

    def call(self, images) -> Dict[str, tf.Tensor]:
        """images `[N, H, W, 3]` -> {"h4": `[N, H/4, W/4, c(128)]`, "h8": `[N, H/8, W/8, c(256)]`}."""
        h4 = self.down2(self.down1(images))
        return {"h4": h4, "h8": self.down3(h4)}


@tf.keras.utils.register_keras_serializable(package="tfrf")
class FlowHeads(tf.keras.layers.Layer):
    """Three 3x3 convs on one decoder level: flow (2), attention logit (1), occlusion (1, sigmoid)."""

    def __init__(self, leaky_relu_slope: float = 0.1, flow_init_stddev: float = 1e-3, impl: str = "default",
                 **kwargs):
        super().__init__(**kwargs)
        self.leaky_relu_slope = leaky_relu_slope
        self.flow_init_stddev = flow_init_stddev
        self.impl = check_impl(impl, self.name)
        small = tf.keras.initializers.RandomNormal(stddev=flow_init_stddev)
        self.activation = LeakyReLU(leaky_relu_slope, impl=impl)
        self.flow = tf.keras.layers.Conv2D(2, 3, padding="same", kernel_initializer=small, name="flow",
                                           dtype=flow_dtype())
        self.attention = tf.keras.layers.Conv2D(1, 3, padding="same", name="attention_logit")
        self.occlusion = tf.keras.layers.Conv2D(1, 3, padding="same", name="occlusion")

    def call(self, features) -> Dict[str, tf.Tensor]:
        """features `[N, h, w, C]` -> flow `[N,h,w,2]`, attention_logit and occlusion `[N,h,w,1]`."""
        x = self.activation(features)
        return {
            "flow": self.flow(x),
            "attention_logit": self.attention(x),
            "occlusion": tf.sigmoid(self.occlusion(x)),
        }

    def get_config(self):
        return {
            **super().get_config(),
            "leaky_relu_slope": self.leaky_relu_slope,
            "flow_init_stddev": self.flow_init_stddev,
            "impl": self.impl,
        }


@tf.keras.utils.register_keras_serializable(package="tfrf")
class FlowConfidenceExtractor(ConfiguredLayer):
    """U-Net of residual blocks on concat(I_s, P_s, P_t): flows, attention and occlusion.

    Encoder: ResBlockDown to 32 (H/2), 64 (H/4), 128 (H/8), 256 (H/16), 512 (H/32).
    Decoder: ResBlockUp + skip to 256 (H/16); to 128 (H/8) -> heads; to 64 (H/4) -> heads.
    Skips are added to the upsampled features (same channel count). The first block is
    `first_block`: with `full_resolution="space_to_depth"` it runs at H/2.
    """

    def __init__(self, config, impl: str = "default", **kwargs):
        super().__init__(config, impl, **kwargs)
        c = self.config.channels
        self.encoder = [self.first_block(c(32), name="down1")] + [
            self.block(ResBlockDown, c(width), name=f"down{i + 2}") for i, width in enumerate((64, 128, 256, 512))
        ]
        self.up16 = self.block(ResBlockUp, c(256), name="up16")
        self.up8 = self.block(ResBlockUp, c(128), name="up8")
        self.up4 = self.block(ResBlockUp, c(64), name="up4")
        self.heads = {level: FlowHeads(self.config.leaky_relu_slope, impl=self.impl, name=f"heads_{level}")
                      for level in LEVELS}

    levels = LEVELS  # the levels with a flow, coarse first

    @property
    def affine_patch_sizes(self) -> Dict[str, int]:
        """The window of the affine regularisation per level (paper: 3x3 at H/8, 5x5 at H/4)."""
        from tfrf.losses.regularization import AFFINE_PATCH_SIZES

        return dict(AFFINE_PATCH_SIZES)

    def flow_variables(self):
        """The trainable variables L_flow reaches: all but the attention and occlusion heads,
        which only the image losses train (stage 2)."""
        unreached = {variable.ref() for heads in self.heads.values()
                     for layer in (heads.attention, heads.occlusion) for variable in layer.trainable_variables}
        return [variable for variable in self.trainable_variables if variable.ref() not in unreached]

    def call(self, inputs) -> Dict[str, Dict[str, tf.Tensor]]:
        """inputs `[N, H, W, 3 + 2*Cp]` -> per level ("h8", "h4") the `FlowHeads` outputs."""
        skips = []
        x = inputs
        for block in self.encoder:
            x = block(x)
            skips.append(x)  # H/2, H/4, H/8, H/16, H/32
        x = self.up16(x) + skips[3]
        h8 = self.up8(x) + skips[2]
        h4 = self.up4(h8) + skips[1]
        return {"h8": self.heads["h8"](h8), "h4": self.heads["h4"](h4)}
