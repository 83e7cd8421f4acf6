"""What TFLite's GPU delegate would refuse in an export, and the float16 export's float32 biases.

`gpu_warnings(model)` runs `tf.lite.experimental.Analyzer.analyze(model_content=...,
gpu_compatibility=True)` (TFLite's own GPU compatibility check, the rules of its GPU delegate)
and returns the `GPU COMPATIBILITY WARNING` lines it prints; every face export has none (tested
for the voxceleb2 and voxceleb2_mobile presets in float32 and float16).

Three export choices keep it so:
- the warps' GATHERs take 1-D indices (`tfrf.ops.warp.gather_rows`): the delegate has no
  gather of N-D indices;
- `float32_biases`: TFLite's float16 quantisation stores every constant, biases included, as
  float16 behind a DEQUANTIZE, so a CONV_2D sees three non-constant inputs, which the check
  refuses. The float16 export turns the dequantised biases back into float32 constants (the
  same values, a few hundred bytes); the weights stay float16;
- `uint8_inputs_dequantized`: the check has no CAST from uint8, so the face export's uint8
  crops enter through a DEQUANTIZE of scale 1 (the same float values).
`gpu_ready` applies the last two to every export.
"""
from __future__ import annotations

import contextlib
import io
from collections import defaultdict
from typing import List, Union

import numpy as np

# Operators with a bias input, and which input it is.
BIAS_INPUTS = {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2, "TRANSPOSE_CONV": 3}
WARNING = "GPU COMPATIBILITY WARNING"
BUFFER_ALIGNMENT = 16  # what TFLite's converter gives constant buffers


def analyzer_report(model: Union[bytes, bytearray]) -> str:
    """The text `tf.lite.experimental.Analyzer.analyze(model_content=model,
    gpu_compatibility=True)` prints (the model's structure and the GPU delegate's verdicts)."""
    import tensorflow as tf

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        tf.lite.experimental.Analyzer.analyze(model_content=bytes(model), gpu_compatibility=True)
    return printed.getvalue()


def gpu_warnings(model: Union[bytes, bytearray]) -> List[str]:
    """The analyzer's `GPU COMPATIBILITY WARNING` lines for `model`; [] when the GPU delegate
    takes every op."""
    return [line.strip() for line in analyzer_report(model).splitlines() if WARNING in line]


def _aligned_builder():
    """A flatbuffers Builder that aligns byte vectors (TFLite buffers) to 16 bytes, as the
    converter does, so that float data stays aligned after a rewrite."""
    import flatbuffers

    class AlignedBuilder(flatbuffers.Builder):
        def CreateNumpyVector(self, x):  # noqa: N802 (flatbuffers' name)
            if x.dtype == np.uint8:
                self.Prep(BUFFER_ALIGNMENT, x.size)  # the data that follows starts 16-aligned
            return super().CreateNumpyVector(x)

    return AlignedBuilder(1024)


def gpu_ready(model: Union[bytes, bytearray]) -> bytes:
    """`model` in the form TFLite's GPU delegate check accepts, with the same values: float16
    biases as float32 constants (`float32_biases`) and each CAST of a uint8 signature input to
    float32 as a DEQUANTIZE of scale 1, zero point 0 (`uint8_inputs_dequantized`); the model
    unchanged when neither applies."""
    from tensorflow.lite.tools import flatbuffer_utils

    parsed = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    changed = float32_biases(parsed) + uint8_inputs_dequantized(parsed)
    if not changed:
        return bytes(model)
    builder = _aligned_builder()
    builder.Finish(parsed.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def float32_biases(parsed) -> int:
    """Replaces, in a `ModelT`, every DEQUANTIZE of a float16 constant that feeds a bias input
    (`BIAS_INPUTS`) by the float32 constant it computes; returns how many."""
    from tensorflow.lite.python import schema_py_generated as schema

    names = [_builtin_name(code) for code in parsed.operatorCodes]
    folded = 0
    for subgraph in parsed.subgraphs:
        uses = defaultdict(list)  # tensor index -> [(op name, input position)]
        for op in subgraph.operators:
            for position, tensor in enumerate(op.inputs):
                if tensor >= 0:
                    uses[tensor].append((names[op.opcodeIndex], position))
        kept = []
        for op in subgraph.operators:
            if names[op.opcodeIndex] == "DEQUANTIZE" and _folds(parsed, subgraph, op, uses):
                source = subgraph.tensors[op.inputs[0]]
                values = np.frombuffer(bytes(parsed.buffers[source.buffer].data), np.float16).astype(np.float32)
                buffer = schema.BufferT()
                buffer.data = np.frombuffer(values.tobytes(), np.uint8)
                parsed.buffers.append(buffer)
                subgraph.tensors[op.outputs[0]].buffer = len(parsed.buffers) - 1
                folded += 1
                continue
            kept.append(op)
        subgraph.operators = kept
    return folded


def uint8_inputs_dequantized(parsed) -> int:
    """Turns, in a `ModelT`, each CAST of a uint8 subgraph input to float32 into a DEQUANTIZE
    with scale 1 and zero point 0 on the input (the same values; the GPU delegate's check takes
    no uint8 CAST); returns how many."""
    from tensorflow.lite.python import schema_py_generated as schema

    names = [_builtin_name(code) for code in parsed.operatorCodes]
    dequantize = None
    changed = 0
    for subgraph in parsed.subgraphs:
        for op in subgraph.operators:
            if names[op.opcodeIndex] != "CAST" or op.inputs[0] not in subgraph.inputs:
                continue
            source, target = subgraph.tensors[op.inputs[0]], subgraph.tensors[op.outputs[0]]
            if source.type != schema.TensorType.UINT8 or target.type != schema.TensorType.FLOAT32:
                continue
            if dequantize is None:
                dequantize = _opcode_index(parsed, names, schema.BuiltinOperator.DEQUANTIZE, "DEQUANTIZE")
            quantization = schema.QuantizationParametersT()
            quantization.scale, quantization.zeroPoint = [1.0], [0]
            source.quantization = quantization
            op.opcodeIndex = dequantize
            op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.NONE, None
            changed += 1
    return changed


def _opcode_index(parsed, names, builtin: int, name: str) -> int:
    """The index of `builtin`'s operator code in a `ModelT`, added when missing."""
    from tensorflow.lite.python import schema_py_generated as schema

    if name in names:
        return names.index(name)
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 1
    parsed.operatorCodes.append(code)
    names.append(name)
    return len(parsed.operatorCodes) - 1


def _builtin_name(code) -> str:
    from tensorflow.lite.python import schema_py_generated as schema

    value = max(code.builtinCode, code.deprecatedBuiltinCode)
    for name, number in vars(schema.BuiltinOperator).items():
        if number == value and not name.startswith("_"):
            return name
    return f"UNKNOWN_{value}"


def _folds(parsed, subgraph, op, uses) -> bool:
    """Whether DEQUANTIZE `op` reads a float16 constant and its output feeds a bias input (the
    converter shares one constant between equal values, e.g. the zeros of a bias and of a SUB)."""
    from tensorflow.lite.python import schema_py_generated as schema

    source = subgraph.tensors[op.inputs[0]]
    data = parsed.buffers[source.buffer].data if source.buffer < len(parsed.buffers) else None
    output = op.outputs[0]
    consumers = uses.get(output, [])
    return (source.type == schema.TensorType.FLOAT16 and data is not None and len(data) > 0
            and output not in subgraph.outputs and bool(consumers)
            and any(BIAS_INPUTS.get(name) == position for name, position in consumers))
