"""This machine's sustained 3x3-convolution rate, the yardstick of the benchmarks' `ideal` times.

A stack of float32 3x3 "SAME" convolutions (each followed by a ReLU) at a few map sizes and
channel counts (`levels`), run by TensorFlow (`runtime="tf"`) or by the TFLite interpreter
(`runtime="tflite"`, with the export's `load_interpreter` and its threads); the rate is the
analytic conv FLOPs (`tfrf.benchmarks.flops.conv2d_flops`) over the best time of `repeats` runs.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

from tfrf.benchmarks.flops import conv2d_flops
from tfrf.benchmarks.timing import best_seconds

# (map size, channels) typical of the networks' training convolutions.
TRAINING_LEVELS = ((128, 64), (64, 128), (32, 256))


def generator_levels(size: int) -> List[Tuple[int, int]]:
    """The generator's map shapes at image size `size`: (size, 32) ... (size/8, 256)."""
    return [(size, 32), (size // 2, 64), (size // 4, 128), (size // 8, 256)]


def conv_stack(levels: Sequence[Tuple[int, int]], batch: int = 1, convs_per_level: int = 1):
    """(tf.function of one input map per level, its conv FLOPs): `convs_per_level` 3x3 convs
    (channels kept) at each (size, channels) level, outputs reduced to one scalar."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    kernels = [[tf.constant(rng.normal(0, 0.05, (3, 3, c, c)).astype(np.float32)) for _ in range(convs_per_level)]
               for _, c in levels]
    specs = [tf.TensorSpec([batch, s, s, c], tf.float32, name=f"x{index}") for index, (s, c) in enumerate(levels)]

    @tf.function(input_signature=specs)
    def stack(*maps):
        outputs = []
        for x, level_kernels in zip(maps, kernels):
            for kernel in level_kernels:
                x = tf.maximum(tf.nn.conv2d(x, kernel, 1, "SAME"), 0.0)
            outputs.append(tf.reduce_mean(x))
        return tf.add_n(outputs)

    flops = sum(convs_per_level * conv2d_flops(batch * s * s * c, 3, 3, c) for s, c in levels)
    return stack, flops


def conv_throughput(levels: Sequence[Tuple[int, int]] = TRAINING_LEVELS, batch: int = 1, convs_per_level: int = 1,
                    repeats: int = 5, runtime: str = "tf", threads: int = 2) -> float:
    """FLOP/s of `conv_stack(levels, batch, convs_per_level)` run by `runtime` ("tf" or "tflite",
    the latter with `threads` interpreter threads)."""
    import tensorflow as tf

    stack, flops = conv_stack(levels, batch, convs_per_level)
    rng = np.random.default_rng(1)
    if runtime == "tf":
        maps = [tf.constant(rng.normal(size=spec.shape).astype(np.float32)) for spec in stack.input_signature]
        return flops / best_seconds(lambda: stack(*maps).numpy(), repeats)
    if runtime != "tflite":
        raise ValueError(f"conv_throughput: runtime must be 'tf' or 'tflite', got {runtime!r}")
    from tfrf.export.tflite import load_interpreter

    converter = tf.lite.TFLiteConverter.from_concrete_functions([stack.get_concrete_function()], stack)
    interpreter = load_interpreter(converter.convert(), num_threads=threads)
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], rng.normal(size=detail["shape"]).astype(np.float32))
    return flops / best_seconds(interpreter.invoke, repeats)
