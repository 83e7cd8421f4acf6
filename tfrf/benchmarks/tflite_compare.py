"""Exported face models timed against each other: cached `render` of each `.tflite`, interleaved.

    python -m tfrf.benchmarks.tflite_compare A.tflite B.tflite [...] [--threads 2] [--rounds 40] [--calls 3]

For an A/B of two exports of the same network (e.g. before and after a change of the export
kernels): every round gives each model a turn of `--calls` consecutive `render` calls with its
sources' features encoded once beforehand, so a changing load on a shared machine hits them
alike (`tfrf.benchmarks.timing.interleaved_seconds`). Prints the best and the median call of
each model, its render op count, and each model's best against the first one's. Inputs are
random (latency does not depend on the values), shaped from each model's own signatures.
"""
from __future__ import annotations

import argparse
import os
import statistics
from typing import Dict, Sequence

import numpy as np


def signature_inputs(flatbuffer: bytes, seed: int = 0) -> Dict[str, np.ndarray]:
    """Random float32 inputs of `render`'s image and pose inputs (images in [-1, 1], poses in
    [0, 1]), shaped from the model's `render` signature."""
    from tfrf.export.tflite import RENDER_SIGNATURE, load_interpreter

    details = load_interpreter(flatbuffer).get_signature_runner(RENDER_SIGNATURE).get_input_details()
    rng = np.random.default_rng(seed)
    inputs = {}
    for name in ("source_images", "source_poses", "target_pose"):
        low = -1.0 if name == "source_images" else 0.0
        inputs[name] = rng.uniform(low, 1.0, [int(dim) for dim in details[name]["shape"]]).astype(np.float32)
    return inputs


def compare(paths: Sequence[str], threads: int, rounds: int, calls: int) -> Dict[str, Dict[str, float]]:
    """{path: {"best_ms", "median_ms", "ops"}} of the cached `render` of each model, interleaved."""
    from tfrf.benchmarks.tflite_calls import render_calls
    from tfrf.benchmarks.tflite_profile import op_census
    from tfrf.benchmarks.timing import interleaved_seconds

    runners, ops = {}, {}
    for path in paths:
        with open(path, "rb") as stream:
            flatbuffer = stream.read()
        runners[path], _ = render_calls(flatbuffer, signature_inputs(flatbuffer), threads)
        ops[path] = sum(op_census(flatbuffer, "render").values())
    times = interleaved_seconds(runners, rounds, calls)
    return {path: {"best_ms": min(values) * 1e3, "median_ms": statistics.median(values) * 1e3, "ops": ops[path]}
            for path, values in times.items()}


def main(argv: Sequence[str] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfrf.benchmarks.tflite_compare",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help=".tflite face exports (same K and size or not)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--calls", type=int, default=3, help="consecutive render calls per model and round")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from tfrf.export.tflite import runtime_name

    results = compare(args.models, args.threads, args.rounds, args.calls)
    first = results[args.models[0]]["best_ms"]
    print(f"cached render, {args.threads} threads, interleaved: {args.rounds} rounds of {args.calls} call(s) per "
          f"model, runtime {runtime_name()}")
    for path, result in results.items():
        print(f"  {path}: best {result['best_ms']:8.2f} ms, median {result['median_ms']:8.2f} ms, "
              f"{result['ops']} render ops, best/first {result['best_ms'] / first:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
