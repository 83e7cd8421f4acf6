"""The FLOP counter of every benchmark: traced TF graphs, whole generators and TFLite operators.

One convention throughout: a multiply-add is 2 FLOPs; a convolution counts
2 * outputs * kh * kw * C_in (`conv2d_flops`), a transposed convolution 2 * inputs * kh * kw * C_out.

- `step_flops(graph)`: the convolutions and matrix products a traced `tf.function` graph really
  runs (a training step), by part and direction. Ops whose results reach nothing (the filter
  gradients of the frozen VGG19, the discriminator's weight gradients in the generator update,
  which the runtime prunes) are not counted. Elementwise ops, normalisation, gathers and the
  optimiser's update are left out: they are memory-bound, and the ratio `measured time / (FLOPs /
  conv throughput)` shows how much time goes to them. Parts: "generator", "vgg" (VGG19:
  `block{i}_conv{j}`), "discriminator", "losses" (the rest: the correctness loss's similarity
  products, Gram matrices), each split into "forward" and "backward" (ops under the gradient
  tape's name scope).
- `graph_flops(graph)` / `generator_flops(generator, K)`: every float op, as TensorFlow's
  profiler counts them (convolutions plus elementwise ops; gathers count zero), except the
  transposed convolutions (`Conv2DBackpropInput`, GFLA's up-sampling blocks), which the profiler
  leaves out of its total (TF 2.15): they are counted here from the op's shapes.
- `tflite_op_flops(op_type, ...)`: one TFLite operator in the profiler's convention: an
  elementwise op one per output element, MEAN/SUM one per input element, AVERAGE_POOL_2D k*k per
  output; data movement (GATHER, RESHAPE, CONCATENATION, TRANSPOSE, CAST, resizes, slices,
  comparisons) counts zero.

Shapes must be static (trace with a concrete batch).
"""
from __future__ import annotations

import re
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

PARTS = ("generator", "vgg", "discriminator", "losses")
_VGG = re.compile(r"(^|/)block\d_conv\d(/|$)")
# Ops with effects beyond their outputs: what a step is run for.
_SINK_TYPES = ("AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp", "ResourceApply",
               "ResourceScatter", "WriteSummary")
TFLITE_ELEMENTWISE = {
    "ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", "RSQRT", "SQRT", "LOGISTIC", "TANH",
    "LEAKY_RELU", "RELU", "PRELU", "FLOOR", "NEG", "EXP", "SQUARE", "ABS",
}


def _product(values: Iterable) -> float:
    result = 1.0
    for value in values:
        if value is None:
            raise ValueError("FLOP count: shapes must be static; trace the step with a concrete batch")
        result *= float(value)
    return result


def conv2d_flops(outputs: float, kh: int, kw: int, c_in: int) -> float:
    """FLOPs of a convolution with `outputs` output elements (N * Ho * Wo * C_out)."""
    return 2.0 * outputs * kh * kw * c_in


def op_flops(op) -> float:
    """FLOPs of one TF graph op (2 per multiply-add); 0 for the op types not counted."""
    kind = op.type
    if kind == "Conv2D":  # output [N, Ho, Wo, Co], filter [kh, kw, Ci, Co]
        return conv2d_flops(_product(op.outputs[0].shape), *op.inputs[1].shape[:3])
    if kind == "Conv2DBackpropInput":  # out_backprop [N, Ho, Wo, Co], filter [kh, kw, Ci, Co]
        return 2.0 * _product(op.inputs[2].shape) * _product(op.inputs[1].shape[:3])
    if kind == "Conv2DBackpropFilter":  # out_backprop [N, Ho, Wo, Co]; output = filter [kh, kw, Ci, Co]
        return 2.0 * _product(op.inputs[2].shape) * _product(op.outputs[0].shape[:3])
    if kind.startswith("DepthwiseConv2dNative"):  # same count for forward and both gradients
        output = op.outputs[0].shape if kind == "DepthwiseConv2dNative" else op.inputs[2].shape
        filter_shape = op.inputs[1].shape if kind != "DepthwiseConv2dNativeBackpropFilter" else op.outputs[0].shape
        return 2.0 * _product(output) * _product(filter_shape[:2])
    if kind == "MatMul":
        a, product = op.inputs[0].shape, op.outputs[0].shape
        inner = a[0] if op.get_attr("transpose_a") else a[1]
        return 2.0 * _product(product) * _product([inner])
    if kind in ("BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"):
        a, product = op.inputs[0].shape, op.outputs[0].shape
        inner = a[-2] if op.get_attr("adj_x") else a[-1]
        return 2.0 * _product(product) * _product([inner])
    return 0.0


def live_ops(graph):
    """The ops of `graph` whose results reach its outputs or an effect (variable updates)."""
    pending = [tensor.op for tensor in graph.outputs]
    pending += [op for op in graph.get_operations() if op.type.startswith(_SINK_TYPES)]
    seen = set()
    while pending:
        op = pending.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        pending.extend(tensor.op for tensor in op.inputs)
        pending.extend(op.control_inputs)
    return [op for op in graph.get_operations() if op.name in seen]


def part_of(name: str, scopes: Optional[Mapping[str, Sequence[str]]] = None) -> str:
    """The part an op (name without the gradient tape's scope) belongs to: "vgg" for VGG19's
    `block{i}_conv{j}`, else the part whose `scopes` (outermost name scopes, e.g. the generator's
    and its sub-networks' names: stage 1 calls the flow extractor outside the generator's scope)
    hold the op's outermost scope, else by name ("...discriminator...", "...generator..."),
    else "losses"."""
    if _VGG.search(name):
        return "vgg"
    scope = re.sub(r"_\d+$", "", name.split("/")[0])  # a layer called twice: "generator_1"
    for part, names in (scopes or {}).items():
        if scope in names:
            return part
    if "discriminator" in scope:
        return "discriminator"
    if "generator" in scope:
        return "generator"
    return "losses"


def training_scopes(model) -> Dict[str, Tuple[str, ...]]:
    """The outermost name scopes of a `TrainingModel`'s generator and discriminator ops."""
    scopes = {}
    for part, network in (("generator", model.generator), ("discriminator", model.discriminator)):
        if network is not None:
            scopes[part] = (network.name, *(layer.name for layer in network.layers))
    return scopes


def step_flops(graph, scopes: Optional[Mapping[str, Sequence[str]]] = None) -> Dict[str, Dict[str, float]]:
    """`{part: {"forward": FLOPs, "backward": FLOPs}}` of the live ops of a traced step, and
    `"total"`; `scopes` as in `part_of` (e.g. `training_scopes(model)`)."""
    counts = {part: {"forward": 0.0, "backward": 0.0} for part in PARTS}
    for op in live_ops(graph):
        flops = op_flops(op)
        if flops:
            backward = op.name.startswith("gradient_tape/")
            name = op.name[len("gradient_tape/"):] if backward else op.name
            counts[part_of(name, scopes)]["backward" if backward else "forward"] += flops
    counts["total"] = {"forward": sum(counts[p]["forward"] for p in PARTS),
                       "backward": sum(counts[p]["backward"] for p in PARTS)}
    return counts


def total_step_flops(counts: Mapping[str, Mapping[str, float]]) -> float:
    """Forward plus backward FLOPs of a `step_flops` count."""
    return counts["total"]["forward"] + counts["total"]["backward"]


def transposed_convolution_flops(graph) -> int:
    """FLOPs of the transposed convolutions (`Conv2DBackpropInput`, NHWC) of `graph`:
    2 * B * H_in * W_in * C_in * kh * kw * C_out each (every input value meets the whole
    kh x kw x C_out kernel slice). Shapes must be static."""
    return int(sum(op_flops(op) for op in graph.get_operations() if op.type == "Conv2DBackpropInput"))


def graph_flops(graph) -> int:
    """Float operations of `graph` as TensorFlow's profiler counts them, with the transposed
    convolutions it leaves out counted by `transposed_convolution_flops`."""
    import tensorflow as tf

    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph=graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op",
                                            options=options)
    # The profiler's own Conv2DBackpropInput figure (absent in TF 2.15) is replaced by ours.
    counted = sum(child.total_float_ops for child in profile.children if child.name == "Conv2DBackpropInput")
    return int(profile.total_float_ops) - int(counted) + transposed_convolution_flops(graph)


def generator_flops(generator, num_sources: int) -> int:
    """Float operations to generate one image from `num_sources` sources (`graph_flops` of the
    frozen inference graph). Warps are gathers and count as zero; convolutions dominate."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    concrete = tf.function(lambda inputs: generator(inputs)).get_concrete_function(
        generator.dummy_inputs(1, num_sources))
    return graph_flops(convert_variables_to_constants_v2(concrete).graph)


def tflite_op_flops(op_type: str, input_shapes: Sequence[List[int]], output_shapes: Sequence[List[int]]) -> float:
    """FLOPs of one TFLite operator (see the module docstring for the convention)."""
    outputs = float(np.prod(output_shapes[0])) if output_shapes else 0.0
    if op_type == "CONV_2D":
        _, kh, kw, cin = input_shapes[1]
        return conv2d_flops(outputs, kh, kw, cin)
    if op_type == "DEPTHWISE_CONV_2D":
        _, kh, kw, _ = input_shapes[1]
        return 2.0 * outputs * kh * kw
    if op_type in ("FULLY_CONNECTED",):
        return 2.0 * outputs * input_shapes[1][-1]
    if op_type == "BATCH_MATMUL":
        return 2.0 * outputs * input_shapes[0][-1]
    if op_type in ("MEAN", "SUM"):
        return float(np.prod(input_shapes[0]))
    if op_type == "AVERAGE_POOL_2D":
        return 4.0 * outputs  # 2x2 pools throughout the generator
    if op_type == "SOFTMAX":
        return 3.0 * outputs
    if op_type in TFLITE_ELEMENTWISE:
        return outputs
    return 0.0
