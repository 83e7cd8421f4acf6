"""GFLA's generator (`PoseGenerator` / `ShapeNetGenerator`) behind tfrf's generator contract.

Ren, Yu, Xiao, Li, Liu — *Deep Image Spatial Transformation for Person Image Generation*, CVPR
2020: a global flow field estimator, a source encoder and a target generator with flow-guided
local attention. The single-source baseline of the residual-flow paper.

It takes the same input dict as `tfrf.models.Generator` with K = 1 (a ValueError naming K
otherwise) and offers the methods every export calls (`encode_sources`, `extract_flows`,
`predictor(target_pose, source_features, flow_outputs)`, `dummy_inputs`), so SavedModel and
TFLite export work unchanged. Its three attributes carry the rf model's names:
`source_extractor` (GFLA's source net), `flow_extractor` (flow net), `predictor` (target net).
"""
from __future__ import annotations

from typing import Dict, Mapping

import tensorflow as tf

from tfrf.config import ModelConfig
from tfrf.models.generator import GeneratorModel, validate_inputs
from tfrf.models.gfla.flow import GFLAFlowNetwork
from tfrf.models.gfla.source import GFLASourceEncoder
from tfrf.models.gfla.target import GFLATargetNetwork, pose_vector
from tfrf.models.gfla.torch_state import load_torch_weights


def single_source(tensor: tf.Tensor, name: str) -> tf.Tensor:
    """`[B, 1, ...]` -> `[B, ...]`; a static K != 1 is a ValueError, a dynamic one fails at run time."""
    k = tensor.shape[1] if tensor.shape.rank is not None else None
    if k is not None and k != 1:
        raise ValueError(
            f"GFLAGenerator takes exactly one source: {name} must be [B, K=1, ...], got K = {k} "
            f"(shape {tensor.shape}); use architecture='rf' for several sources"
        )
    if k is None:
        check = tf.debugging.assert_equal(
            tf.shape(tensor)[1], 1, message=f"GFLAGenerator takes exactly one source: {name} must be [B, K=1, ...]"
        )
        with tf.control_dependencies([check]):
            tensor = tf.identity(tensor)
    return tensor[:, 0]


@tf.keras.utils.register_keras_serializable(package="tfrf")
class GFLAGenerator(GeneratorModel):
    """GFLA: source encoder + global flow field estimator + target network with local attention.

    Args:
        config: a `tfrf.ModelConfig` (`architecture="gfla"`; `gfla_attention_levels`,
            `gfla_attention_kernel_sizes` and `gfla_view_synthesis` pick GFLA's variant).

    Call:
        `generator({"source_images": [B,1,H,W,3], "source_poses": [B,1,H,W,Cp],
        "target_pose": [B,H,W,Cp]})` -> image `[B,H,W,3]` in [-1, 1].
        With `return_intermediates=True`: a dict with `image` and, per attention level
        (`generator.levels`, e.g. "h8", "h4"), `flows` `[B,1,h,w,2]`, `occlusions` `[B,1,h,w,1]`
        (1 - m: the weight of the target feature, as in the rf model), `masks` (GFLA's own m,
        the weight of the attention output) and `local_attention` `[B,1,h,w,k*k]` (the softmax
        coefficients, entry i*k + j for the source sample at offset (j - k//2, i - k//2)).
    """

    max_sources = 1  # GFLA is a single-source model; callers can check K before tracing

    def __init__(self, config: ModelConfig, impl: str = "default", **kwargs):
        kwargs.setdefault("name", "gfla_generator")
        super().__init__(config, impl, **kwargs)
        config = self.config
        self.source_extractor = GFLASourceEncoder(config, impl, name="source")
        self.flow_extractor = GFLAFlowNetwork(config, impl, name="flow_net")
        self.predictor = GFLATargetNetwork(config, impl, name="target")

    @property
    def levels(self):
        """The levels with a flow, a mask and local attention, coarse first."""
        return tuple(self.config.gfla_attention_levels)

    def encode_sources(self, source_images) -> Dict[str, tf.Tensor]:
        """Source features per level ("h8", "h4"), `[B, 1, h, w, C]`."""
        images = single_source(tf.convert_to_tensor(source_images), "source_images")
        features = self.source_extractor(images)
        return {level: value[:, None] for level, value in features.items()}

    def extract_flows(self, inputs: Mapping[str, tf.Tensor]) -> Dict[str, Dict[str, tf.Tensor]]:
        """The flow network: per attention level `flow` `[B, 1, h, w, 2]` and `mask` `[B, 1, h, w, 1]`."""
        source_image = single_source(tf.convert_to_tensor(inputs["source_images"]), "source_images")
        source_pose = tf.cast(single_source(tf.convert_to_tensor(inputs["source_poses"]), "source_poses"),
                              source_image.dtype)
        target_pose = tf.cast(inputs["target_pose"], source_image.dtype)
        if self.config.gfla_view_synthesis:
            difference = pose_vector(source_pose) - pose_vector(target_pose)
            outputs = self.flow_extractor(source_image, pose_difference=difference)
        else:
            outputs = self.flow_extractor(tf.concat([source_image, source_pose, target_pose], axis=-1))
        return {level: {name: value[:, None] for name, value in values.items()} for level, values in outputs.items()}

    def check_inputs(self, inputs) -> None:
        validate_inputs(inputs, self.config)
        single_source(tf.convert_to_tensor(inputs["source_images"]), "source_images")  # K = 1, statically

    def intermediates(self, flow_outputs, coefficients) -> Dict[str, Dict[str, tf.Tensor]]:
        result = {}
        for level in self.levels:
            mask = flow_outputs[level]["mask"]
            result[level] = {
                "flows": flow_outputs[level]["flow"],
                "occlusions": 1.0 - mask,
                "masks": mask,
                "local_attention": coefficients[level],
            }
        return result

    def load_torch_weights(self, state) -> None:
        """Load GFLA's own generator state dict (`latest_net_G.pth`, or the same as `.npz` or a
        mapping of numpy arrays in PyTorch layout); builds the model first if needed.

        Raises:
            ValueError: missing, unused or mis-shaped keys (named), or duplicated Jump/Output
                convolutions that differ.
        """
        load_torch_weights(self, state)

