"""Model size and cost: the layer table, parameter counts and FLOPs per generated image.

Any generator of `tfrf.models.build_generator` (the residual-flow model, GFLA). FLOPs are the
TF profiler's count on the frozen inference graph, except for transposed convolutions
(`Conv2DBackpropInput`, GFLA's up-sampling blocks), which the profiler leaves out of its total
(TF 2.15): they are counted here from the op's shapes, 2 * B * H_in * W_in * C_in * kh * kw * C_out.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import tensorflow as tf

from tfrf.config import ModelConfig


def build_generator(config: ModelConfig, num_sources: int = 1):
    """The generator of `config.architecture`, its weights created by one call on zero inputs."""
    from tfrf.models import build_generator as build

    generator = build(config)
    limit = getattr(generator, "max_sources", None)
    generator(generator.dummy_inputs(1, num_sources if limit is None else min(num_sources, limit)))
    return generator


def transposed_convolution_flops(graph) -> int:
    """FLOPs (multiply and add apart) of the transposed convolutions (`Conv2DBackpropInput`, NHWC)
    of `graph`: 2 * B * H_in * W_in * C_in * kh * kw * C_out each (every input value meets the
    whole kh x kw x C_out kernel slice). Shapes must be static."""
    total = 0
    for op in graph.get_operations():
        if op.type != "Conv2DBackpropInput":
            continue
        kernel, values = op.inputs[1].shape, op.inputs[2].shape  # [kh, kw, C_out, C_in], [B, H_in, W_in, C_in]
        if not (kernel.is_fully_defined() and values.is_fully_defined()):
            raise ValueError(f"transposed_convolution_flops: {op.name} has dynamic shapes {kernel}, {values}")
        total += 2 * values.num_elements() * kernel[0] * kernel[1] * kernel[2]
    return int(total)


def input_signature(config: ModelConfig, batch_size=None, num_sources=None) -> Dict[str, tf.TensorSpec]:
    h, w, cp = config.image_height, config.image_width, config.pose_channels
    return {
        "source_images": tf.TensorSpec([batch_size, num_sources, h, w, 3], tf.float32, name="source_images"),
        "source_poses": tf.TensorSpec([batch_size, num_sources, h, w, cp], tf.float32, name="source_poses"),
        "target_pose": tf.TensorSpec([batch_size, h, w, cp], tf.float32, name="target_pose"),
    }


def count_flops(generator, num_sources: int) -> int:
    """Floating-point operations (multiply and add counted apart) to generate one image from
    `num_sources` sources, as TensorFlow's profiler counts them on the frozen graph, plus the
    transposed convolutions it leaves out (`transposed_convolution_flops`). Warps are gathers
    and count as zero; convolutions dominate."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    config = generator.config
    concrete = tf.function(lambda inputs: generator(inputs)).get_concrete_function(
        input_signature(config, 1, num_sources)
    )
    frozen = convert_variables_to_constants_v2(concrete)
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(
        graph=frozen.graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op", options=options
    )
    # The profiler's own Conv2DBackpropInput figure (absent in TF 2.15) is replaced by ours.
    counted = sum(child.total_float_ops for child in profile.children if child.name == "Conv2DBackpropInput")
    return int(profile.total_float_ops) - int(counted) + transposed_convolution_flops(frozen.graph)


def component_table(generator) -> List[Tuple[str, str, int]]:
    """(name, class, parameter count) of the generator's components and their direct sublayers."""
    rows = []
    for component in (generator.source_extractor, generator.flow_extractor, generator.predictor):
        rows.append((component.name, type(component).__name__, component.count_params()))
        for layer in component._flatten_layers(include_self=False, recursive=False):
            rows.append((f"  {layer.name}", type(layer).__name__, layer.count_params()))
    return rows


def format_table(rows: List[Tuple[str, str, int]]) -> str:
    width = max(len(name) for name, _, _ in rows) + 2
    lines = [f"{'layer':<{width}}{'type':<28}{'params':>12}", "-" * (width + 40)]
    lines += [f"{name:<{width}}{kind:<28}{params:>12,}" for name, kind, params in rows]
    return "\n".join(lines)
