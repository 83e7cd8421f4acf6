"""Per-op-type profile of a TFLite signature: time per op type against its share of FLOPs.

    python -m tfrf.benchmarks.tflite_profile [--size 256] [--widths 1.0 0.125] [--k 2] [--threads 2]
                                             [--kernels export|training] [--quantize none]

TFLite's Python interpreters have no op profiler, so this times sub-graphs: every operator of
the signature becomes a one-operator model (its constant inputs copied, its other inputs fed
with the values they take in a real run of the whole signature, captured with
`experimental_preserve_all_tensors`), run by the same interpreter and threads, default
delegates included (XNNPACK takes it when it supports the op). Each op's time is the best of
`--repeats` invocations minus the best time of an empty invocation (one ADD on one element).
The per-op sum misses the whole graph's cache reuse and delegate-partition hand-offs; the
printout gives both, so the difference is visible.

FLOPs per op are analytic, in the TF profiler's convention (`tfrf.benchmarks.flops.tflite_op_flops`).
"""
from __future__ import annotations

import argparse
import collections
import copy
import os
from typing import Dict, List, Mapping, NamedTuple, Sequence

import numpy as np

from tfrf.benchmarks.flops import tflite_op_flops
from tfrf.benchmarks.timing import best_seconds

class OpTiming(NamedTuple):
    index: int
    op_type: str
    seconds: float
    flops: float


def _schema():
    from tensorflow.lite.python import schema_py_generated as schema

    return schema


def _opcode_names(model) -> List[str]:
    schema = _schema()
    builtin = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    return [builtin.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM") for code in model.operatorCodes]


def _subgraph_index(model, signature: str) -> int:
    for definition in model.signatureDefs:
        key = definition.signatureKey.decode() if isinstance(definition.signatureKey, bytes) else definition.signatureKey
        if key == signature:
            return definition.subgraphIndex
    raise ValueError(f"the TFLite model has no signature {signature!r}")


def op_census(flatbuffer: bytes, signature: str) -> Dict[str, int]:
    """Operator count per op type of one signature's subgraph."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    names = _opcode_names(model)
    subgraph = model.subgraphs[_subgraph_index(model, signature)]
    return dict(collections.Counter(names[op.opcodeIndex] for op in subgraph.operators))


def _shape(tensor) -> List[int]:
    return [int(d) for d in (tensor.shape if tensor.shape is not None else [])]


def _single_op_model(model, subgraph, op) -> bytes:
    """A one-operator flatbuffer: constant inputs copied, other inputs become model inputs."""
    from tensorflow.lite.tools import flatbuffer_utils

    schema = _schema()
    single = schema.ModelT()
    single.version = model.version
    single.description = "tfrf single-op profile"
    single.operatorCodes = [copy.deepcopy(model.operatorCodes[op.opcodeIndex])]
    single.buffers = [schema.BufferT()]
    new_subgraph = schema.SubGraphT()
    new_subgraph.tensors, new_subgraph.inputs = [], []
    mapping: Dict[int, int] = {}

    def add(index: int) -> int:
        if index < 0:
            return index
        if index not in mapping:
            tensor = copy.deepcopy(subgraph.tensors[index])
            buffer = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
            if buffer is not None and buffer.data is not None and len(buffer.data):
                single.buffers.append(copy.deepcopy(buffer))
                tensor.buffer = len(single.buffers) - 1
            else:
                tensor.buffer = 0
                if index not in op.outputs:
                    new_subgraph.inputs.append(len(new_subgraph.tensors))
            mapping[index] = len(new_subgraph.tensors)
            new_subgraph.tensors.append(tensor)
        return mapping[index]

    new_op = copy.deepcopy(op)
    new_op.opcodeIndex = 0
    new_op.inputs = [add(int(i)) for i in op.inputs]
    new_op.outputs = [add(int(i)) for i in op.outputs]
    new_op.intermediates = None
    new_subgraph.outputs = list(new_op.outputs)
    new_subgraph.operators = [new_op]
    new_subgraph.name = "single"
    single.subgraphs = [new_subgraph]
    single.signatureDefs = []
    single.metadata = None
    single.metadataBuffer = None
    return bytes(flatbuffer_utils.convert_object_to_bytearray(single))


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        import tensorflow as tf

        Interpreter, OpResolverType = tf.lite.Interpreter, tf.lite.experimental.OpResolverType
    return Interpreter, OpResolverType


def profile_signature(flatbuffer: bytes, signature: str, inputs: Mapping[str, np.ndarray], threads: int = 2,
                      repeats: int = 5) -> List[OpTiming]:
    """Time every operator of `signature` as a one-operator model (see the module docstring).

    Args:
        flatbuffer: the TFLite model.
        signature: the signature key, e.g. "render".
        inputs: the signature's inputs by name (their values feed the capture run).
        threads: interpreter threads.
        repeats: timed invocations per op (the best counts).
    """
    from tensorflow.lite.tools import flatbuffer_utils

    Interpreter, OpResolverType = _interpreter_class()
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    names = _opcode_names(model)
    subgraph_index = _subgraph_index(model, signature)
    subgraph = model.subgraphs[subgraph_index]
    capture = Interpreter(model_content=bytes(flatbuffer), experimental_preserve_all_tensors=True,
                          experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    capture.get_signature_runner(signature)(**inputs)

    def value(index: int) -> np.ndarray:
        return capture.get_tensor(index, subgraph_index)

    empty = Interpreter(model_content=_empty_model(), num_threads=threads)
    empty.allocate_tensors()
    overhead = best_seconds(empty.invoke, max(repeats, 20), budget_seconds=None)
    timings = []
    for index, op in enumerate(subgraph.operators):
        op_type = names[op.opcodeIndex]
        interpreter = Interpreter(model_content=_single_op_model(model, subgraph, op), num_threads=threads)
        interpreter.allocate_tensors()
        constant = {int(i) for i in op.inputs if i >= 0 and model.buffers[subgraph.tensors[i].buffer].data is not None
                    and len(model.buffers[subgraph.tensors[i].buffer].data)}
        fed = [int(i) for i in op.inputs if i >= 0 and int(i) not in constant]
        fed = list(dict.fromkeys(fed))
        for detail, original in zip(interpreter.get_input_details(), fed):
            interpreter.set_tensor(detail["index"], value(original))
        seconds = max(0.0, best_seconds(interpreter.invoke, repeats, budget_seconds=None) - overhead)
        input_shapes = [_shape(subgraph.tensors[i]) for i in op.inputs if i >= 0]
        output_shapes = [_shape(subgraph.tensors[i]) for i in op.outputs]
        timings.append(OpTiming(index, op_type, seconds, tflite_op_flops(op_type, input_shapes, output_shapes)))
    return timings


def _empty_model() -> bytes:
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1], tf.float32)])
    def add_one(x):
        return x + 1.0

    return tf.lite.TFLiteConverter.from_concrete_functions([add_one.get_concrete_function()], add_one).convert()


def summarize(timings: Sequence[OpTiming]) -> List[Dict[str, float]]:
    """Per op type: count, milliseconds, time share and FLOP share, slowest first."""
    total_time = sum(t.seconds for t in timings) or 1.0
    total_flops = sum(t.flops for t in timings) or 1.0
    rows = collections.defaultdict(lambda: {"count": 0, "seconds": 0.0, "flops": 0.0})
    for timing in timings:
        row = rows[timing.op_type]
        row["count"] += 1
        row["seconds"] += timing.seconds
        row["flops"] += timing.flops
    table = [
        {"op_type": name, "count": row["count"], "ms": row["seconds"] * 1e3, "time_share": row["seconds"] / total_time,
         "flop_share": row["flops"] / total_flops, "gflops": row["flops"] / 1e9}
        for name, row in rows.items()
    ]
    return sorted(table, key=lambda row: -row["ms"])


def format_table(table: Sequence[Mapping], whole_ms: float = None) -> str:
    lines = ["| op type | count | ms | time share | FLOP share |", "|---|---:|---:|---:|---:|"]
    for row in table:
        lines.append(f"| {row['op_type']} | {row['count']} | {row['ms']:.2f} | {row['time_share']:.1%} | "
                     f"{row['flop_share']:.1%} |")
    total = sum(row["ms"] for row in table)
    count = sum(row["count"] for row in table)
    suffix = f" (whole signature {whole_ms:.1f} ms)" if whole_ms is not None else ""
    lines.append(f"| all | {count} | {total:.2f}{suffix} | 100% | 100% |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tfrf.benchmarks.tflite_profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--widths", type=float, nargs="+", default=[1.0, 0.125])
    parser.add_argument("--preset", default="voxceleb2")
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quantize", default="none")
    parser.add_argument("--kernels", choices=("export", "training"), default="export",
                        help="export: the TFLite export kernels (default); training: the graph as trained")
    parser.add_argument("--signatures", nargs="+", default=["render", "encode_sources"])
    return parser.parse_args(argv)


def main(argv: Sequence[str] = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tfrf
    from tfrf.benchmarks.inputs import config_inputs
    from tfrf.export import export_generator
    from tfrf.export.tflite import convert, load_interpreter

    for width in args.widths:
        config = tfrf.ModelConfig.preset(args.preset, image_height=args.size, image_width=args.size,
                                         width_multiplier=width)
        generator = export_generator(config, tflite=True)
        flatbuffer = convert(generator, args.k, args.quantize, export_kernels=args.kernels == "export")
        inputs = config_inputs(config, 1, args.k)
        interpreter = load_interpreter(flatbuffer, num_threads=args.threads)
        features = interpreter.get_signature_runner("encode_sources")(source_images=inputs["source_images"])
        feeds = {"render": {**inputs, **features}, "encode_sources": {"source_images": inputs["source_images"]}}
        for signature in args.signatures:
            runner = interpreter.get_signature_runner(signature)
            whole = best_seconds(lambda: runner(**feeds[signature]), args.repeats)
            timings = profile_signature(flatbuffer, signature, feeds[signature], args.threads, args.repeats)
            print(f"\n{args.preset} {args.size}x{args.size} width {width:g}, K={args.k}, {args.threads} threads, "
                  f"{args.quantize}, {args.kernels} kernels: `{signature}`")
            print(format_table(summarize(timings), whole * 1e3), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
