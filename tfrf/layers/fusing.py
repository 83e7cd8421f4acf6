"""Residual fusing (RF) block: residual flow correction and attention fusion of K sources.

Lu et al., AAAI 2022, eq. 3-6. For each source k (weights shared across k):

    fw_k  = warp(f_k, w_k)                                   (eq. 3)
    r_k   = R(concat[f_t, fw_k])                             (eq. 4, R: one 3x3 conv -> 2)
    fw'_k = warp(f_k, w_k + r_k)                             (eq. 5)
    out   = sum_k softmax_k(a_k) * (fw'_k * (1 - m_k) + f_t * m_k)   (eq. 6)

The decode layer D^i (ResBlock + ResBlockUp) follows the block in the target image predictor.
K is folded into the batch, so one graph serves every K and the output does not depend on the
order of the sources.
"""
from __future__ import annotations

from typing import Dict, Tuple, Union

import tensorflow as tf

from tfrf.ops.sources import fold_sources, unfold_sources
from tfrf.ops.warp import BACKENDS, warp






@tf.keras.utils.register_keras_serializable(package="tfrf")
class ResidualFusingBlock(tf.keras.layers.Layer):
    """Fuse K warped source features into the target feature (paper eq. 3-6).

    Args:
        use_residual_flow: predict and apply a residual flow r_k (eq. 4-5). Off: fw' = fw and
            the block has no trainable weights.
        use_occlusion: blend in the target feature by the occlusion mask m_k. Off: m = 0.
        use_attention: weight sources by softmax over K of the attention logits. Off: 1/K each.
        warp_backend: "tfa" or "gather" (see `tfrf.ops.warp`).
        residual_init_stddev: stddev of the residual conv's initial kernel (small, so training
            starts from the extractor's flow).
        order_invariant: compute the softmax over K and the sum over K in float64. A float32
            sum depends on the order of its terms at the 1e-7 level, which the decoder can
            amplify past 1e-5; in float64 the rounded result no longer depends on the order of
            the sources. TFLite has no float64 kernels, so its export switches this off.
    """

    def __init__(
        self,
        use_residual_flow: bool = True,
        use_occlusion: bool = True,
        use_attention: bool = True,
        warp_backend: str = "tfa",
        residual_init_stddev: float = 1e-3,
        order_invariant: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if warp_backend not in BACKENDS:
            raise ValueError(f"{self.name}: warp_backend must be one of {BACKENDS}, got {warp_backend!r}")
        self.use_residual_flow = use_residual_flow
        self.use_occlusion = use_occlusion
        self.use_attention = use_attention
        self.warp_backend = warp_backend
        self.residual_init_stddev = residual_init_stddev
        self.order_invariant = order_invariant
        self.residual_conv = None
        if use_residual_flow:
            self.residual_conv = tf.keras.layers.Conv2D(
                2,
                3,
                padding="same",
                kernel_initializer=tf.keras.initializers.RandomNormal(stddev=residual_init_stddev),
                name="residual_flow",
            )

    def build(self, input_shape):
        channels = input_shape[-1] if not isinstance(input_shape, (list, tuple)) else None
        if self.residual_conv is not None and channels is not None:
            self.residual_conv.build(tf.TensorShape([None, None, None, 2 * channels]))
        super().build(input_shape)

    @staticmethod
    def _check(target_feature, source_features, flows, attention_logits, occlusions):
        t, s = target_feature.shape, source_features.shape
        if t.rank is not None and t.rank != 4:
            raise ValueError(f"target_feature must be [B, h, w, C], got {t}")
        if s.rank is not None and s.rank != 5:
            raise ValueError(f"source_features must be [B, K, h, w, C], got {s}")
        if s[-1] is not None and t[-1] is not None and s[-1] != t[-1]:
            raise ValueError(f"source_features must be [B, K, h, w, {t[-1]}] (C of target_feature), got {s}")
        if s.rank is not None and s[1] == 0:
            raise ValueError(f"source_features must hold K >= 1 sources, got {s}")
        for name, tensor, channels in (
            ("flows", flows, 2),
            ("attention_logits", attention_logits, 1),
            ("occlusions", occlusions, 1),
        ):
            shape = tensor.shape
            expected = f"[B, K, h, w, {channels}]"
            if shape.rank is not None and shape.rank != 5:
                raise ValueError(f"{name} must be {expected}, got {shape}")
            if shape[-1] is not None and shape[-1] != channels:
                raise ValueError(f"{name} must be {expected}, got {shape}")
            for axis in range(4):
                if s.rank == 5 and shape[axis] is not None and s[axis] is not None and shape[axis] != s[axis]:
                    raise ValueError(
                        f"{name} must be {expected} matching source_features {s}, got {shape}"
                    )

    def call(
        self,
        target_feature,
        source_features,
        flows,
        attention_logits,
        occlusions,
        return_intermediates: bool = False,
    ) -> Union[tf.Tensor, Tuple[tf.Tensor, Dict[str, tf.Tensor]]]:
        """Fuse the sources.

        Args:
            target_feature: f_t `[B, h, w, C]`.
            source_features: f_k `[B, K, h, w, C]`.
            flows: w_k `[B, K, h, w, 2]` (dx, dy in pixels of this level).
            attention_logits: a_k `[B, K, h, w, 1]`, before the softmax over K.
            occlusions: m_k `[B, K, h, w, 1]` in [0, 1] (1: take the target feature).
            return_intermediates: also return a dict with `residual_flows` `[B, K, h, w, 2]`,
                `attention` (after the softmax) `[B, K, h, w, 1]` and `occlusions` as used.

        Returns:
            The fused feature `[B, h, w, C]` (before D^i), and the dict when asked.
        """
        target_feature, source_features, flows, attention_logits, occlusions = (
            tf.convert_to_tensor(x) for x in (target_feature, source_features, flows, attention_logits, occlusions)
        )
        self._check(target_feature, source_features, flows, attention_logits, occlusions)
        dtype = source_features.dtype
        batch_and_sources = tf.shape(source_features)[:2]
        features = fold_sources(source_features)  # [B*K, h, w, C]
        flow = tf.cast(fold_sources(flows), dtype)
        target = tf.expand_dims(target_feature, 1)  # [B, 1, h, w, C]

        if self.use_residual_flow:
            warped = warp(features, flow, backend=self.warp_backend)
            target_per_source = fold_sources(tf.broadcast_to(target, tf.shape(source_features)))
            residual = tf.cast(self.residual_conv(tf.concat([target_per_source, warped], axis=-1)), dtype)
            corrected = warp(features, flow + residual, backend=self.warp_backend)
        else:
            residual = tf.zeros_like(flow)
            corrected = warp(features, flow, backend=self.warp_backend)
        corrected = unfold_sources(corrected, batch_and_sources)  # [B, K, h, w, C]

        if self.use_occlusion:
            mask = tf.cast(occlusions, dtype)
            blended = corrected * (1.0 - mask) + target * mask
        else:
            mask = tf.zeros_like(tf.cast(occlusions, dtype))
            blended = corrected

        accumulate = tf.float64 if self.order_invariant else dtype
        logits = tf.cast(attention_logits, accumulate)
        if self.use_attention:
            weights = tf.nn.softmax(logits, axis=1)
        else:
            weights = tf.ones_like(logits) / tf.cast(batch_and_sources[1], accumulate)
        fused = tf.cast(tf.reduce_sum(weights * tf.cast(blended, accumulate), axis=1), dtype)
        weights = tf.cast(weights, dtype)

        if not return_intermediates:
            return fused
        return fused, {
            "residual_flows": unfold_sources(residual, batch_and_sources),
            "attention": weights,
            "occlusions": mask,
        }

    def get_config(self):
        return {
            **super().get_config(),
            "use_residual_flow": self.use_residual_flow,
            "use_occlusion": self.use_occlusion,
            "use_attention": self.use_attention,
            "warp_backend": self.warp_backend,
            "residual_init_stddev": self.residual_init_stddev,
            "order_invariant": self.order_invariant,
        }
