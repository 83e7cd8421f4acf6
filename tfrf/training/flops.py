"""FLOPs of a traced training step, by part, and this machine's convolution throughput.

`step_flops(graph)` counts the multiply-adds (2 FLOPs each) of the convolutions and matrix
products a traced `tf.function` graph really runs: ops whose results reach nothing (the filter
gradients of the frozen VGG19, the discriminator's weight gradients in the generator update, which
the runtime prunes) are not counted. Elementwise ops, normalisation, gathers and the optimiser's
update are left out: they are memory-bound, and the ratio `measured time / (FLOPs / conv
throughput)` shows how much time goes to them. Shapes must be static (trace with a concrete batch).

Parts: "generator", "vgg" (VGG19: `block{i}_conv{j}`), "discriminator", "losses" (the rest: the
correctness loss's similarity products, Gram matrices), each split into "forward" and "backward"
(ops under the gradient tape's name scope).

    python -m tfrf.training.benchmark --presets deepfashion --steps-compared lean reference
"""
from __future__ import annotations

import re
import time
from typing import Dict, Iterable, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

PARTS = ("generator", "vgg", "discriminator", "losses")
_VGG = re.compile(r"(^|/)block\d_conv\d(/|$)")
# Ops with effects beyond their outputs: what a step is run for.
_SINK_TYPES = ("AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp", "ResourceApply",
               "ResourceScatter", "WriteSummary")


def _product(values: Iterable) -> float:
    result = 1.0
    for value in values:
        if value is None:
            raise ValueError("step_flops: shapes must be static; trace the step with a concrete batch")
        result *= float(value)
    return result


def op_flops(op) -> float:
    """FLOPs of one op (2 per multiply-add); 0 for the op types not counted."""
    kind = op.type
    if kind == "Conv2D":  # output [N, Ho, Wo, Co], filter [kh, kw, Ci, Co]
        return 2.0 * _product(op.outputs[0].shape) * _product(op.inputs[1].shape[:3])
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


def conv_throughput(repeats: int = 5) -> float:
    """This machine's sustained float32 3x3-convolution rate in FLOP/s: the best over three shapes
    typical of the networks (64 channels at 128x128, 128 at 64x64, 256 at 32x32; batch 4),
    each the median of `repeats` timed runs after a warm-up."""
    rates = []
    rng = np.random.default_rng(0)
    for channels, size in ((64, 128), (128, 64), (256, 32)):
        images = tf.constant(rng.normal(size=(4, size, size, channels)), tf.float32)
        kernel = tf.constant(rng.normal(size=(3, 3, channels, channels)), tf.float32)
        conv = tf.function(lambda x, k: tf.nn.conv2d(x, k, 1, "SAME"))
        conv(images, kernel).numpy()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            conv(images, kernel).numpy()
            times.append(time.perf_counter() - start)
        rates.append(2.0 * 4 * size * size * channels * 9 * channels / float(np.median(times)))
    return max(rates)
