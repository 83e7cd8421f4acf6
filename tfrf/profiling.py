"""Model size and cost: the layer table, parameter counts and FLOPs per generated image."""
from __future__ import annotations

from typing import Dict, List, Tuple

import tensorflow as tf

from tfrf.config import ModelConfig


def build_generator(config: ModelConfig, num_sources: int = 1):
    """A generator with its weights created by one call on zero inputs."""
    from tfrf.models import Generator

    generator = Generator(config)
    generator(generator.dummy_inputs(1, num_sources))
    return generator


def input_signature(config: ModelConfig, batch_size=None, num_sources=None) -> Dict[str, tf.TensorSpec]:
    h, w, cp = config.image_height, config.image_width, config.pose_channels
    return {
        "source_images": tf.TensorSpec([batch_size, num_sources, h, w, 3], tf.float32, name="source_images"),
        "source_poses": tf.TensorSpec([batch_size, num_sources, h, w, cp], tf.float32, name="source_poses"),
        "target_pose": tf.TensorSpec([batch_size, h, w, cp], tf.float32, name="target_pose"),
    }


def count_flops(generator, num_sources: int) -> int:
    """Floating-point operations (multiply and add counted apart) to generate one image from
    `num_sources` sources, as TensorFlow's profiler counts them on the frozen graph. Warps are
    gathers and count as zero; convolutions dominate."""
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
    return int(profile.total_float_ops)


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
