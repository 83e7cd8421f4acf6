"""The multi-source generator: K source images and poses + a target pose -> the target image.

Lu et al., AAAI 2022 (supplementary tables 5-7). The K sources are folded into the batch
(`[B, K, ...]` -> `[B*K, ...]`) for the per-source extractors, so the weights are shared, one
graph serves every K >= 1, and the result does not depend on the order of the sources.
"""
from __future__ import annotations

from typing import Dict, Mapping

import tensorflow as tf

from tfrf.config import ModelConfig
from tfrf.layers.fusing import coverage_shares
from tfrf.layers.impl import check_impl
from tfrf.models.base import ConfiguredModel
from tfrf.models.extractors import LEVELS, FlowConfidenceExtractor, SourceAppearanceExtractor
from tfrf.models.predictor import TargetImagePredictor
from tfrf.ops.snapshot import snapshot
from tfrf.ops.sources import fold_sources, unfold_sources

INPUT_KEYS = ("source_images", "source_poses", "target_pose")


def validate_inputs(inputs: Mapping[str, tf.Tensor], config: ModelConfig) -> None:
    """Raise a ValueError naming the tensor and the expected shape for malformed inputs.

    Only static (known) dimensions are checked, so traced functions with unknown B, K, H or W
    pass through.
    """
    if not isinstance(inputs, Mapping):
        raise ValueError(f"generator inputs must be a dict with keys {INPUT_KEYS}, got {type(inputs).__name__}")
    missing = [key for key in INPUT_KEYS if key not in inputs]
    if missing:
        raise ValueError(f"generator inputs lack {missing}; expected keys {INPUT_KEYS}")
    cp = config.pose_channels
    images = tf.TensorShape(inputs["source_images"].shape)
    poses = tf.TensorShape(inputs["source_poses"].shape)
    target = tf.TensorShape(inputs["target_pose"].shape)
    for name, shape, expected in (
        ("source_images", images, "[B, K, H, W, 3]"),
        ("source_poses", poses, f"[B, K, H, W, {cp}]"),
        ("target_pose", target, f"[B, H, W, {cp}]"),
    ):
        rank = expected.count(",") + 1
        if shape.rank is not None and shape.rank != rank:
            raise ValueError(f"{name} must be {expected}, got shape {shape}")
    if images.rank is None:
        return
    if images[-1] is not None and images[-1] != 3:
        raise ValueError(f"source_images must be [B, K, H, W, 3], got shape {images}")
    if images[1] == 0:
        raise ValueError(f"source_images must hold K >= 1 sources: expected [B, K>=1, H, W, 3], got {images}")
    for axis, label in ((2, "H"), (3, "W")):
        if images[axis] is not None and images[axis] % 32:
            raise ValueError(
                f"source_images must be [B, K, H, W, 3] with H and W multiples of 32, got {images} "
                f"({label} = {images[axis]})"
            )
    if poses.rank is not None:
        if poses[1] is not None and images[1] is not None and poses[1] != images[1]:
            raise ValueError(
                f"source_poses must be [B, K={images[1]}, H, W, {cp}] to match source_images {images}, "
                f"got {poses} (K differs)"
            )
        if poses[-1] is not None and poses[-1] != cp:
            raise ValueError(
                f"source_poses must be [B, K, H, W, {cp}] (pose channels of config {config.name!r}), got {poses}"
            )
        for axis in (0, 2, 3):
            if poses[axis] is not None and images[axis] is not None and poses[axis] != images[axis]:
                raise ValueError(f"source_poses must be [B, K, H, W, {cp}] matching source_images {images}, got {poses}")
    if target.rank is not None:
        if target[-1] is not None and target[-1] != cp:
            raise ValueError(
                f"target_pose must be [B, H, W, {cp}] (pose channels of config {config.name!r}), got {target}"
            )
        for axis_t, axis_i in ((0, 0), (1, 2), (2, 3)):
            if target[axis_t] is not None and images[axis_i] is not None and target[axis_t] != images[axis_i]:
                raise ValueError(f"target_pose must be [B, H, W, {cp}] matching source_images {images}, got {target}")


class GeneratorModel(ConfiguredModel):
    """What every generator architecture shares: the config, the `impl` its layers trace
    (`tfrf.layers.impl`), input checks and the forward pass

        source features = encode_sources(source images)
        flow outputs    = extract_flows(inputs)            per level
        image, fused    = predictor(target pose, source features, flow outputs)

    with `intermediates(flow_outputs, fused)` naming what `return_intermediates=True` returns per
    level. Subclasses build `source_extractor`, `flow_extractor` and `predictor`.
    """

    levels = LEVELS  # the fusing levels, coarse first; `coverage` comes from the last (finest)

    def __init__(self, config: ModelConfig, impl: str = "default", **kwargs):
        super().__init__(config, **kwargs)
        self.impl = check_impl(impl, self.name)

    def constructor_arguments(self) -> dict:
        return {"impl": self.impl}

    def check_inputs(self, inputs) -> None:
        """Raise a ValueError naming a tensor of the wrong shape."""
        validate_inputs(inputs, self.config)

    def call(self, inputs, training=None, return_intermediates: bool = False):
        self.check_inputs(inputs)
        # One single-output node per input (Snapshot, which grappler keeps; Identity it would
        # remove). Without it TF 2.15's oneDNN rewrite of the inference graph feeds the wrong
        # output of a multi-output producer (`IteratorGetNext` in `predict`/`evaluate`) to the
        # pose encoder: "input depth must be evenly divisible by filter depth: 3 vs 21".
        inputs = {key: snapshot(inputs[key]) for key in INPUT_KEYS}
        source_features = self.encode_sources(inputs["source_images"])
        flow_outputs = self.extract_flows(inputs)
        image, fused = self.predictor(
            tf.cast(inputs["target_pose"], source_features["h8"].dtype),
            source_features,
            flow_outputs,
            return_intermediates=True,
        )
        if not return_intermediates:
            return image
        result = {"image": image, **self.intermediates(flow_outputs, fused)}
        result["coverage"] = upsampled_coverage(result[self.levels[-1]], tf.shape(image)[1:3])
        if "output_logits" in fused:
            result["output_logits"] = fused["output_logits"]
        return result

    def dummy_inputs(self, batch_size: int = 1, num_sources: int = 1, dtype=tf.float32) -> Dict[str, tf.Tensor]:
        """Zero inputs of the configured size, e.g. to build the weights."""
        return dummy_inputs(self.config, batch_size, num_sources, dtype)


@tf.keras.utils.register_keras_serializable(package="tfrf")
class Generator(GeneratorModel):
    """Source appearance extractor + flow confidence extractor + target image predictor.

    Args:
        config: a `tfrf.ModelConfig` (e.g. `ModelConfig.preset("deepfashion")`).
        impl: the implementation its layers trace (`tfrf.layers.impl`): "default", "export"
            (what the TFLite export builds) or "reference".

    Call:
        `generator({"source_images": [B,K,H,W,3], "source_poses": [B,K,H,W,Cp],
        "target_pose": [B,H,W,Cp]})` -> image `[B,H,W,3]` in [-1, 1].
        With `return_intermediates=True`: a dict with `image` and, per level (`h8`, `h4`),
        `flows` and `residual_flows` `[B,K,h,w,2]`, `attention` (after the softmax over K) and
        `occlusions` `[B,K,h,w,1]`, `coverage` `[B,H,W,K+1]` (`upsampled_coverage`) and
        `output_logits` `[B,H,W,3]` (the values the last tanh maps to the image).
    """

    def __init__(self, config: ModelConfig, impl: str = "default", **kwargs):
        kwargs.setdefault("name", "generator")
        super().__init__(config, impl, **kwargs)
        config = self.config
        self.source_extractor = SourceAppearanceExtractor(config, impl, name="source_appearance_extractor")
        self.flow_extractor = FlowConfidenceExtractor(config, impl, name="flow_confidence_extractor")
        self.predictor = TargetImagePredictor(config, impl, name="target_image_predictor")

    def extract_flows(self, inputs: Mapping[str, tf.Tensor]) -> Dict[str, Dict[str, tf.Tensor]]:
        """Flow confidence extractor on every source: per level flow, attention logit, occlusion
        as `[B, K, h, w, c]`."""
        source_images = tf.convert_to_tensor(inputs["source_images"])
        source_poses = tf.cast(inputs["source_poses"], source_images.dtype)
        target_pose = tf.cast(inputs["target_pose"], source_images.dtype)
        batch_and_sources = tf.shape(source_images)[:2]
        target_per_source = tf.broadcast_to(tf.expand_dims(target_pose, 1), tf.shape(source_poses))
        flow_input = tf.concat([fold_sources(source_images), fold_sources(source_poses), fold_sources(target_per_source)], axis=-1)
        outputs = self.flow_extractor(flow_input)
        return {
            level: {name: unfold_sources(value, batch_and_sources) for name, value in outputs[level].items()}
            for level in LEVELS
        }

    def encode_sources(self, source_images) -> Dict[str, tf.Tensor]:
        """Source appearance features per level, `[B, K, h, w, C]`."""
        source_images = tf.convert_to_tensor(source_images)
        batch_and_sources = tf.shape(source_images)[:2]
        features = self.source_extractor(fold_sources(source_images))
        return {level: unfold_sources(features[level], batch_and_sources) for level in LEVELS}

    def intermediates(self, flow_outputs, fused) -> Dict[str, Dict[str, tf.Tensor]]:
        return {
            level: {
                "flows": flow_outputs[level]["flow"],
                "residual_flows": fused[level]["residual_flows"],
                "attention": fused[level]["attention"],
                "occlusions": fused[level]["occlusions"],
            }
            for level in LEVELS
        }


def upsampled_coverage(level: Mapping[str, tf.Tensor], size) -> tf.Tensor:
    """Who made each output pixel: float32 `[B, H, W, K + 1]`.

    Args:
        level: the finest fusing level's intermediates: `occlusions` `[B, K, h, w, 1]` (m_k as
            used) and `attention` (softmax over K; absent for a single-source model: 1).
        size: (H, W) of the image.

    Returns:
        `tfrf.layers.fusing.coverage_shares` (source k: a_k (1 - m_k); last: the decoder's own
        share sum_k a_k m_k) upsampled bilinearly to H x W; every share in [0, 1], the K + 1
        shares of a pixel summing to 1.
    """
    occlusions = tf.cast(level["occlusions"], tf.float32)
    attention = level.get("attention")
    attention = tf.ones_like(occlusions) if attention is None else tf.cast(attention, tf.float32)
    shares = coverage_shares(attention, occlusions)  # [B, h, w, K + 1]
    # Bilinear weights are convex: shares stay in [0, 1] and sum to 1 up to rounding, fixed here.
    shares = tf.clip_by_value(tf.image.resize(shares, size, method="bilinear"), 0.0, 1.0)
    return shares / tf.reduce_sum(shares, axis=-1, keepdims=True)


def dummy_inputs(config: ModelConfig, batch_size: int = 1, num_sources: int = 1, dtype=tf.float32) -> Dict[str, tf.Tensor]:
    """Zero generator inputs of `config`'s size (the input dict of every architecture)."""
    h, w, cp = config.image_height, config.image_width, config.pose_channels
    return {
        "source_images": tf.zeros([batch_size, num_sources, h, w, 3], dtype),
        "source_poses": tf.zeros([batch_size, num_sources, h, w, cp], dtype),
        "target_pose": tf.zeros([batch_size, h, w, cp], dtype),
    }
