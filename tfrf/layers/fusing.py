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

from tfrf.layers.impl import check_impl
from tfrf.ops.sources import fold_sources, unfold_sources
from tfrf.ops.warp import BACKENDS, gather_rows, pad_for_warp, warp, warp_corners, warp_padded


def coverage_shares(attention, occlusions) -> tf.Tensor:
    """Eq. 6 read as shares of the fused feature: `[B, h, w, K + 1]`.

    The fused feature is `sum_k a_k (1 - m_k) fw'_k + (sum_k a_k m_k) f_t`: source k contributes
    `a_k (1 - m_k)`, the target feature (what the decoder invents) `sum_k a_k m_k`; with the
    attention a summing to 1 over K the K + 1 shares sum to 1.

    Args:
        attention: a_k after the softmax over K (1/K without attention) `[B, K, h, w, 1]`.
        occlusions: m_k as used (0 without occlusion) `[B, K, h, w, 1]`.
    """
    attention = tf.cast(attention, tf.float32)
    occlusions = tf.cast(occlusions, tf.float32)
    sources = tf.transpose((attention * (1.0 - occlusions))[..., 0], [0, 2, 3, 1])  # [B, h, w, K]
    invented = tf.reduce_sum(attention * occlusions, axis=1)  # [B, h, w, 1]
    return tf.concat([sources, invented], axis=-1)


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
        order_invariant: at inference, compute the softmax over K and the sum over K in float64. A float32
            sum depends on the order of its terms at the 1e-7 level, which the decoder can
            amplify past 1e-5; in float64 the rounded result no longer depends on the order of
            the sources. TFLite has no float64 kernels, so its export switches this off.
        impl: which path the block traces (`tfrf.layers.impl`), fixed when it is built:
            - "default": flows in float32 under mixed precision; R's kernel split so that its f_t
              half runs once per example instead of once per source on a concatenated copy; in
              training the sum over K in the compute dtype.
            - "export" (`_call_export`, static shapes): the source map is zero-padded once and
              both warps are corner gathers (`tfrf.ops.warp.warp_corners`); eq. 6 is folded into
              the second warp's weights, `out = sum_{k,c} a_k (1 - m_k) w_kc f_k[i_kc] +
              (sum_k a_k m_k) f_t`, one gather of all 4K corners and one weighted sum.
            - "reference" (`_call_reference`): the equations as written, flows in the compute
              dtype, R on concat[f_t, fw_k] per source, float64 fusion also in training.
            All three are equal up to float32 rounding (tested).
    """

    def __init__(
        self,
        use_residual_flow: bool = True,
        use_occlusion: bool = True,
        use_attention: bool = True,
        warp_backend: str = "tfa",
        residual_init_stddev: float = 1e-3,
        order_invariant: bool = True,
        impl: str = "default",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.impl = check_impl(impl, self.name)
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
        training=None,
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
            training: in training the sum over K runs in the compute dtype even when
                `order_invariant` (float64 costs time and buys nothing there).

        Returns:
            The fused feature `[B, h, w, C]` (before D^i), and the dict when asked.
        """
        target_feature, source_features, flows, attention_logits, occlusions = (
            tf.convert_to_tensor(x) for x in (target_feature, source_features, flows, attention_logits, occlusions)
        )
        self._check(target_feature, source_features, flows, attention_logits, occlusions)
        if self.impl == "export":
            return self._call_export(target_feature, source_features, flows, attention_logits, occlusions,
                                     return_intermediates)
        if self.impl == "reference":
            return self._call_reference(target_feature, source_features, flows, attention_logits, occlusions,
                                     return_intermediates)
        dtype = source_features.dtype
        batch_and_sources = tf.shape(source_features)[:2]
        features = fold_sources(source_features)  # [B*K, h, w, C]
        # Flows stay float32 under mixed precision: float16 resolves 1/32 px at |flow| >= 32.
        flow = tf.cast(fold_sources(flows), tf.float32)
        target = tf.expand_dims(target_feature, 1)  # [B, 1, h, w, C]

        if self.use_residual_flow:
            warped = warp(features, flow, backend=self.warp_backend)
            residual = fold_sources(self._residual(target_feature, unfold_sources(warped, batch_and_sources)))
            corrected = warp(features, flow + residual, backend=self.warp_backend)
        else:
            residual = tf.zeros_like(flow)
            corrected = warp(features, flow, backend=self.warp_backend)
        corrected = unfold_sources(corrected, batch_and_sources)  # [B, K, h, w, C]

        # float64 only where the order of the sources must not show (inference); training sums in
        # the compute dtype, where the 1e-7 order dependence is far below the gradient noise.
        accumulate = tf.float64 if self.order_invariant and not training else dtype
        fused, weights, mask = self._blend_and_fuse(corrected, target, attention_logits, occlusions, accumulate)

        if not return_intermediates:
            return fused
        return fused, {
            "residual_flows": tf.cast(unfold_sources(residual, batch_and_sources), dtype),
            "attention": weights,
            "occlusions": mask,
        }

    def _blend_and_fuse(self, corrected, target, attention_logits, occlusions, accumulate):
        """Eq. 6: blend each warped source `[B, K, h, w, C]` with f_t `[B, 1, h, w, C]` by its
        occlusion mask and sum over K with the softmax of the attention logits, accumulated in
        `accumulate`. Returns (fused `[B, h, w, C]`, attention weights, mask as used), in the
        features' dtype."""
        dtype = corrected.dtype
        if self.use_occlusion:
            mask = tf.cast(occlusions, dtype)
            blended = corrected * (1.0 - mask) + target * mask
        else:
            mask = tf.zeros_like(tf.cast(occlusions, dtype))
            blended = corrected
        logits = tf.cast(attention_logits, accumulate)
        if self.use_attention:
            weights = tf.nn.softmax(logits, axis=1)
        else:
            weights = tf.ones_like(logits) / tf.cast(tf.shape(corrected)[1], accumulate)
        fused = tf.cast(tf.reduce_sum(weights * tf.cast(blended, accumulate), axis=1), dtype)
        return fused, tf.cast(weights, dtype), mask

    def _residual(self, target_feature, warped):
        """R(concat[f_t, fw_k]) `[B, K, h, w, 2]` float32 without the concatenated copy: the 3x3
        conv's kernel is split, so its f_t half runs once per example and is broadcast over K."""
        channels = target_feature.shape[-1]
        kernel = tf.cast(self.residual_conv.kernel, tf.float32)
        target_part = tf.nn.conv2d(tf.cast(target_feature, tf.float32), kernel[:, :, :channels], 1, "SAME")
        target_part = target_part + tf.cast(self.residual_conv.bias, tf.float32)  # [B, h, w, 2]
        batch_and_sources = tf.shape(warped)[:2]
        source_part = tf.nn.conv2d(tf.cast(fold_sources(warped), tf.float32), kernel[:, :, channels:], 1, "SAME")
        residual = unfold_sources(source_part, batch_and_sources) + tf.expand_dims(target_part, 1)
        # (unfold_sources reshapes by a dynamic shape: keep the static h, w, which exports report)
        return tf.ensure_shape(residual, warped.shape[:-1].concatenate([2]))

    def _call_reference(self, target_feature, source_features, flows, attention_logits, occlusions,
                        return_intermediates):
        """The equations as written: flows in the compute dtype, R on a concatenated copy of f_t
        per source, float64 fusion in training too (`impl="reference"`)."""
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

        accumulate = tf.float64 if self.order_invariant else dtype
        fused, weights, mask = self._blend_and_fuse(corrected, target, attention_logits, occlusions, accumulate)

        if not return_intermediates:
            return fused
        return fused, {
            "residual_flows": unfold_sources(residual, batch_and_sources),
            "attention": weights,
            "occlusions": mask,
        }

    def _call_export(self, target_feature, source_features, flows, attention_logits, occlusions,
                     return_intermediates):
        """`call` with `impl="export"` (static K, h, w, C; float32)."""
        _, num_sources, height, width, channels = source_features.shape
        if None in (num_sources, height, width, channels):
            raise ValueError(f"export kernels need static [B, K, h, w, C] source_features, got {source_features.shape}")
        dtype = source_features.dtype
        batch_and_sources = tf.shape(source_features)[:2]
        padded = pad_for_warp(fold_sources(source_features))  # [(B*K*h'*w'), C]
        flow = tf.cast(fold_sources(flows), tf.float32)  # [B*K, h, w, 2]
        if self.use_residual_flow:
            warped = unfold_sources(warp_padded(padded, flow, height, width), batch_and_sources)
            kernel, bias = self.residual_conv.kernel, self.residual_conv.bias
            target_part = tf.nn.conv2d(target_feature, kernel[:, :, :channels], 1, "SAME") + bias  # [B, h, w, 2]
            source_part = tf.nn.conv2d(fold_sources(warped), kernel[:, :, channels:], 1, "SAME")
            residual = unfold_sources(source_part, batch_and_sources) + tf.expand_dims(target_part, 1)
            flow = flow + fold_sources(residual)
        else:
            residual = tf.zeros_like(flows)
        indices, weights = warp_corners(flow, height, width)  # [B*K, h, w, 4]
        logits = tf.cast(attention_logits, tf.float32)
        if self.use_attention:
            attention = tf.nn.softmax(logits, axis=1)
        else:
            attention = tf.ones_like(logits) / float(num_sources)
        mask = tf.cast(occlusions, tf.float32) if self.use_occlusion else tf.zeros_like(logits)
        source_weight = attention * (1.0 - mask)  # [B, K, h, w, 1]
        weights = unfold_sources(weights, batch_and_sources) * source_weight  # [B, K, h, w, 4]
        indices = unfold_sources(indices, batch_and_sources)
        # [B, K, h, w, 4] -> [B, h, w, 4K]: all corners of all sources of one pixel together.
        weights = tf.reshape(tf.transpose(weights, [0, 2, 3, 1, 4]), [-1, height, width, 4 * num_sources])
        indices = tf.reshape(tf.transpose(indices, [0, 2, 3, 1, 4]), [-1, height, width, 4 * num_sources])
        values = gather_rows(padded, indices)  # [B, h, w, 4K, C]
        fused = tf.reduce_sum(values * tf.expand_dims(tf.cast(weights, dtype), -1), axis=3)
        if self.use_occlusion:
            target_weight = tf.reduce_sum(attention * mask, axis=1)  # [B, h, w, 1]
            fused = fused + tf.cast(target_weight, dtype) * target_feature
        if not return_intermediates:
            return fused
        return fused, {
            "residual_flows": tf.cast(residual, dtype),
            "attention": tf.cast(attention, dtype),
            "occlusions": tf.cast(mask, dtype),
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
            "impl": self.impl,
        }
