"""Forward-pass latency and peak memory of the generator, per warp backend, XLA and K (`tfrf bench`).

Any architecture of `tfrf.models.build_generator` (`architecture="rf"` or `"gfla"`; GFLA
takes K = 1 only, larger K are reported as unsupported without running).

Each configuration runs in a fresh worker process (`python -m tfrf.benchmarks.forward --worker ...`) so
that its peak memory is its own: on CPU the peak resident set size of the process (with the
TensorFlow runtime's baseline reported beside it), on GPU TensorFlow's allocator peak.
Figures are printed, never asserted: timings belong in benchmarks, not in tests.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
from typing import Dict, List, Optional


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(preset: str, num_sources: int, backend: str, xla: bool, batch_size: int = 1,
            repeats: int = 5, warmup: int = 2, width: Optional[float] = None,
            mixed_precision: bool = False, architecture: Optional[str] = None) -> Dict[str, object]:
    """Time `repeats` forward passes after `warmup` ones, in this process."""
    import tensorflow as tf

    from tfrf.benchmarks.inputs import config_inputs
    from tfrf.benchmarks.timing import run_seconds
    from tfrf.config import ModelConfig
    from tfrf.models import build_generator

    if mixed_precision:
        tf.keras.mixed_precision.set_global_policy("mixed_float16")
    overrides = {"warp_backend": backend}
    if width is not None:
        overrides["width_multiplier"] = width
    if architecture is not None:
        overrides["architecture"] = architecture
    config = ModelConfig.preset(preset, **overrides)
    generator = build_generator(config)
    inputs = {key: tf.constant(value) for key, value in config_inputs(config, batch_size, num_sources).items()}
    generator(inputs)
    forward = tf.function(lambda x: generator(x), jit_compile=xla)
    gpus = tf.config.list_physical_devices("GPU")
    baseline_mb = _rss_mb()
    result = {"preset": preset, "architecture": config.architecture, "k": num_sources, "backend": backend, "xla": xla,
              "batch_size": batch_size,
              "mixed_precision": mixed_precision, "device": "GPU" if gpus else "CPU"}
    try:
        for _ in range(warmup):
            forward(inputs).numpy()
    except Exception as error:  # e.g. Addons>Resampler has no XLA kernel
        message = str(error)
        unsupported = sorted(set(re.findall(r"\b(Addons>\w+)", message)))
        if unsupported:
            result["error"] = f"no XLA kernel for {', '.join(unsupported)}"
        else:
            result["error"] = f"{type(error).__name__}: {message.splitlines()[0][:200]}"
        return result
    if gpus:
        tf.config.experimental.reset_memory_stats("GPU:0")
    times = run_seconds(lambda: forward(inputs).numpy(), repeats, warmup=0)
    result["median_ms"] = 1000.0 * statistics.median(times)
    result["images_per_s"] = batch_size / statistics.median(times)
    if gpus:
        result["peak_memory_mb"] = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    else:
        result["peak_memory_mb"] = _rss_mb()
        result["baseline_memory_mb"] = baseline_mb
    return result


def run_all(preset: str, ks: List[int], backends: List[str], xla_modes: List[bool], **kwargs) -> List[Dict]:
    """Each configuration in its own worker process; returns one result dict per configuration."""
    from tfrf.models import GENERATORS

    architecture = kwargs.get("architecture") or "rf"
    limit = getattr(GENERATORS[architecture], "max_sources", None)
    results = []
    for backend in backends:
        for xla in xla_modes:
            for k in ks:
                if limit is not None and k > limit:
                    result = {"preset": preset, "architecture": architecture, "k": k, "backend": backend, "xla": xla,
                              "error": f"the {architecture} generator takes at most {limit} source(s)"}
                    results.append(result)
                    yield result
                    continue
                command = [sys.executable, "-m", "tfrf.benchmarks.forward", "--worker", "--preset", preset,
                           "--k", str(k), "--backend", backend, "--repeats", str(kwargs.get("repeats", 5)),
                           "--batch-size", str(kwargs.get("batch_size", 1))]
                if xla:
                    command.append("--xla")
                if kwargs.get("width") is not None:
                    command += ["--width", str(kwargs["width"])]
                if kwargs.get("mixed_precision"):
                    command.append("--mixed-precision")
                if kwargs.get("architecture"):
                    command += ["--architecture", kwargs["architecture"]]
                env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
                done = subprocess.run(command, capture_output=True, text=True, env=env)
                lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
                if done.returncode or not lines:
                    tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
                    result = {"preset": preset, "k": k, "backend": backend, "xla": xla, "error": tail[0][:200]}
                else:
                    result = json.loads(lines[-1])
                results.append(result)
                yield result


def format_result(result: Dict) -> str:
    head = f"{result['preset']:<12} {result.get('architecture', 'rf'):<4} K={result['k']:<2} {result['backend']:<6} xla={'on ' if result['xla'] else 'off'}"
    if "error" in result:
        return f"{head}  unsupported: {result['error']}"
    memory = f"peak {result['peak_memory_mb']:8.0f} MB"
    if "baseline_memory_mb" in result:
        memory += f" (runtime+weights {result['baseline_memory_mb']:.0f} MB)"
    return f"{head}  median {result['median_ms']:9.1f} ms  {result['images_per_s']:7.2f} img/s  {memory}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--preset", default="deepfashion")
    parser.add_argument("--k", type=int, default=1)
    parser.add_argument("--backend", default="gather")
    parser.add_argument("--xla", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--width", type=float, default=None)
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--architecture", choices=("rf", "gfla"), default=None)
    args = parser.parse_args(argv)
    result = measure(args.preset, args.k, args.backend, args.xla, batch_size=args.batch_size, repeats=args.repeats,
                     width=args.width, mixed_precision=args.mixed_precision, architecture=args.architecture)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
