"""Timed calls of an exported TFLite face model: `render` with the sources' encoding cached, and
`encode_sources` + `render` per frame."""
from __future__ import annotations

from typing import Callable, Dict

import numpy as np

from tfrf.benchmarks.timing import best_seconds


def render_calls(flatbuffer: bytes, inputs: Dict[str, np.ndarray], threads: int):
    """(cached render, encode_sources + render): calls rendering one frame of `inputs`, the first
    with the sources' features encoded once beforehand."""
    from tfrf.export.tflite import load_interpreter

    interpreter = load_interpreter(flatbuffer, num_threads=threads)
    encode = interpreter.get_signature_runner("encode_sources")
    render = interpreter.get_signature_runner("render")
    features = encode(source_images=inputs["source_images"])

    def cached():
        return render(**inputs, **features)

    def uncached():
        return render(**inputs, **encode(source_images=inputs["source_images"]))

    return cached, uncached


def tflite_latency(flatbuffer: bytes, inputs: Dict[str, np.ndarray], threads: int, repeats: int,
                   seconds: Callable[[Callable[[], object], int], float] = best_seconds):
    """(cached render seconds, encode_sources + render seconds) per frame; `seconds(function,
    repeats)` times each (the best of the runs by default)."""
    cached, uncached = render_calls(flatbuffer, inputs, threads)
    return seconds(cached, repeats), seconds(uncached, repeats)
