"""Train-step throughput (images/s) per preset, warp backend and step: `python -m tfrf.benchmarks.train_step`.

Times `TrainingModel.train_step` (stage "full" by default: generator, discriminator and the VGG
passes) on random batches, after warm-up steps, in a fresh process per configuration, and
prints beside it the step's FLOPs by part (`tfrf.benchmarks.flops`: forward and backward of the
generator, VGG19, discriminator and losses) and this machine's 3x3-conv throughput
(`tfrf.benchmarks.conv_throughput`), so that `measured / ideal` (ideal = FLOPs / conv
throughput) shows the time not spent in convolutions. `--steps-compared lean reference` times
the lean step against the straightforward reference step (`tfrf.benchmarks.reference_step`)
in the same run. Figures are printed, never asserted. VGG weights are random (nothing
downloads); that does not change the cost.

    python -m tfrf.benchmarks.train_step --presets deepfashion --backends gather --steps-compared lean reference
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from typing import Dict, List, Optional, Sequence, Tuple


def train_config(preset: str, k: int, backend: str, batch_size: Optional[int] = None, width: Optional[float] = None,
                 image_size: Optional[int] = None):
    """The `TrainConfig` of `preset` with K = `k`, the `backend` warp, random VGG weights and the
    given overrides (None keeps the preset's)."""
    from tfrf.training.config import TrainConfig

    model_overrides = {"warp_backend": backend}
    if width is not None:
        model_overrides["width_multiplier"] = width
    if image_size is not None:
        model_overrides["image_height"] = model_overrides["image_width"] = image_size
    overrides = {"num_sources": k, "vgg_weights": None, "model": model_overrides}
    if batch_size is not None:
        overrides["batch_size"] = batch_size
    return TrainConfig.preset(preset, **overrides)


def random_batch(config, batch_size: Optional[int] = None):
    """A random training batch of `config` (its batch size by default), as tensors."""
    import tensorflow as tf

    from tfrf.benchmarks.inputs import config_inputs

    values = config_inputs(config.model, batch_size or config.batch_size, config.num_sources, target_image=True)
    return {key: tf.constant(value) for key, value in values.items()}


def traced_step(model, batch, xla: bool = False) -> Tuple[object, Dict[str, Dict[str, float]]]:
    """(`model.train_step` as a `tf.function`, traced on `batch`; its FLOPs by part)."""
    import tensorflow as tf

    from tfrf.benchmarks import flops

    step = tf.function(model.train_step, jit_compile=xla)
    return step, flops.step_flops(step.get_concrete_function(batch).graph, flops.training_scopes(model))


def run_step(step, batch) -> float:
    """One train step, waited for: its first loss."""
    return float(next(iter(step(batch).values())))


def worker_result(command: Sequence[str]):
    """(the JSON after "RESULT" on the last such line of the worker's output or None, its stderr)."""
    completed = subprocess.run(list(command), capture_output=True, text=True)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT")]
    return (json.loads(lines[-1][len("RESULT"):]) if lines else None), completed.stderr


def measure(preset: str, k: int, backend: str, stage: str = "full", batch_size: Optional[int] = None,
            width: Optional[float] = None, steps: int = 5, warmup: int = 2, mixed_precision: bool = False,
            xla: bool = False, step_kinds: Sequence[str] = ("lean",),
            image_size: Optional[int] = None) -> List[Dict[str, object]]:
    """Median seconds per train step, images/s, FLOPs and conv throughput of one configuration
    per step kind, in this process. The step kinds start from the same weights, share the batch and
    are timed in turn, round after round (with the conv throughput in each round), so that a
    changing load on the machine hits them alike."""
    import tensorflow as tf

    from tfrf.benchmarks.conv_throughput import TRAINING_LEVELS, conv_throughput
    from tfrf.benchmarks.reference_step import compile_reference_stage
    from tfrf.benchmarks.timing import interleaved_seconds
    from tfrf.training import runner

    if mixed_precision:
        tf.keras.mixed_precision.set_global_policy("mixed_float16")
    config = train_config(preset, k, backend, batch_size, width, image_size)
    networks = runner.create_networks(config)
    batch = random_batch(config)
    b, h, w = config.batch_size, config.model.image_height, config.model.image_width
    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    functions, results = {}, {}
    for kind in step_kinds:
        compile_kind = compile_reference_stage if kind == "reference" else runner.compile_stage
        model = compile_kind(stage, networks, config)
        results[kind] = {"preset": preset, "k": k, "backend": backend, "stage": stage, "batch_size": b,
                         "width": config.model.width_multiplier, "mixed_precision": mixed_precision, "xla": xla,
                         "step": kind, "image_size": [h, w], "device": device}
        try:
            step, results[kind]["flops"] = traced_step(model, batch, xla)
            for _ in range(warmup):
                run_step(step, batch)
        except Exception as error:  # e.g. Addons>Resampler has no XLA kernel
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            results[kind]["error"] = f"{type(error).__name__}: {' | '.join(lines[-3:])[:600]}"
            continue
        functions[kind] = step
    rates = []

    def probe_conv_throughput():
        if device == "CPU" and functions:
            rates.append(conv_throughput(TRAINING_LEVELS, batch=4, repeats=3))

    runners = {kind: (lambda step=step: run_step(step, batch)) for kind, step in functions.items()}
    times = interleaved_seconds(runners, steps, warmup=0, after_round=probe_conv_throughput)
    for kind, values in times.items():
        results[kind]["median_s_per_step"] = statistics.median(values)
        results[kind]["images_per_s"] = b / statistics.median(values)
        if rates:
            results[kind]["conv_flops_per_s"] = statistics.median(rates)
    return [results[kind] for kind in step_kinds]


def describe(result: Dict[str, object]) -> str:
    """One table row: time, img/s, GFLOP per step by part, ideal time and the ratio."""
    from tfrf.benchmarks.flops import total_step_flops

    counts = result["flops"]
    total = total_step_flops(counts)
    parts = " ".join(f"{part[:4]} {counts[part]['forward'] / 1e9:.1f}+{counts[part]['backward'] / 1e9:.1f}"
                     for part in ("generator", "vgg", "discriminator", "losses"))
    row = (f"{result['step']:<9} {result['median_s_per_step']:8.3f} s/step {result['images_per_s']:7.2f} img/s  "
           f"GFLOP fwd+bwd: {parts} = {total / 1e9:.1f}")
    if "conv_flops_per_s" in result:
        ideal = total / result["conv_flops_per_s"]
        row += (f"  conv {result['conv_flops_per_s'] / 1e9:.0f} GFLOP/s -> ideal {ideal:.3f} s, "
                f"measured/ideal {result['median_s_per_step'] / ideal:.2f}")
    return row


def correctness_memory(tile_size: Optional[int], sources: int = 10, height: int = 64, width: int = 64,
                       channels: int = 256) -> Dict[str, object]:
    """Peak resident memory added by one sampling-correctness loss and its gradient (float32,
    `sources` = B*K maps of height x width x channels: relu3_1 at H/4 of 256x256 by default), in
    this process; `tile_size` None is the whole similarity matrix."""
    import resource

    import numpy as np
    import tensorflow as tf

    from tfrf.losses import sampling_correctness_loss

    rng = np.random.default_rng(0)
    source = tf.constant(rng.normal(size=(sources, height, width, channels)), tf.float32)
    target = tf.constant(rng.normal(size=(sources, height, width, channels)), tf.float32)
    flow = tf.Variable(rng.normal(size=(sources, height, width, 2)), dtype=tf.float32)

    @tf.function
    def loss_and_gradient():
        with tf.GradientTape() as tape:
            loss = sampling_correctness_loss(source, target, flow, warp_fn=None, tile_size=tile_size)
        return loss, tape.gradient(loss, flow)

    loss_and_gradient.get_concrete_function()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    float(loss_and_gradient()[0])
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"tile_size": tile_size, "peak_mib": (after - before) / 1024.0,
            "matrix_mib": sources * (height * width) * (height * width if tile_size is None else tile_size) * 4 / 2**20}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["synthetic", "deepfashion"])
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--backends", nargs="+", default=["tfa", "gather"])
    parser.add_argument("--stage", default="full", choices=("flow", "full"))
    parser.add_argument("--batch-size", type=int, help="default: the preset's")
    parser.add_argument("--width", type=float, help="width multiplier (default: the preset's)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--xla", action="store_true")
    parser.add_argument("--image-size", type=int, help="square image size (default: the preset's)")
    parser.add_argument("--steps-compared", nargs="+", default=["lean"], choices=("lean", "reference"),
                        help="the training steps to time: lean (default) and/or reference (the straightforward step)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--correctness-memory", action="store_true",
                        help="only measure the peak memory of the correctness loss (B*K = 10 maps of relu3_1 at "
                             "H/4 of 256x256), whole similarity matrix vs tiles of the lean step")
    parser.add_argument("--tile-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.correctness_memory:
        if args.worker:
            print("RESULT" + json.dumps(correctness_memory(args.tile_size or None)))
            return 0
        from tfrf.training.model import CORRECTNESS_TILE

        for tile in (0, CORRECTNESS_TILE):
            result, stderr = worker_result([sys.executable, "-m", "tfrf.benchmarks.train_step", "--worker",
                                            "--correctness-memory", "--tile-size", str(tile)])
            if result is None:
                print(f"tile {tile}: worker failed\n{stderr[-2000:]}")
                continue
            print(f"correctness loss + gradient, B*K = 10, 64x64x256 (relu3_1 at H/4 of 256x256), "
                  f"{'whole matrix' if not tile else f'tiles of {tile}'}: similarity block "
                  f"{result['matrix_mib']:.0f} MiB, peak resident memory +{result['peak_mib']:.0f} MiB")
        return 0
    options = dict(stage=args.stage, batch_size=args.batch_size, width=args.width, steps=args.steps,
                   warmup=args.warmup, mixed_precision=args.mixed_precision, xla=args.xla,
                   image_size=args.image_size)
    if args.worker:
        print("RESULT" + json.dumps(measure(args.presets[0], args.k, args.backends[0],
                                            step_kinds=tuple(args.steps_compared), **options)))
        return 0
    results = []
    for preset in args.presets:
        for backend in args.backends:
            print(f"{preset} K={args.k} {backend} stage {args.stage}"
                  f"{', mixed_float16' if args.mixed_precision else ''}{', XLA' if args.xla else ''}:")
            command = [sys.executable, "-m", "tfrf.benchmarks.train_step", "--worker", "--presets", preset,
                       "--backends", backend, "--k", str(args.k), "--stage", args.stage,
                       "--steps", str(args.steps), "--warmup", str(args.warmup),
                       "--steps-compared", *args.steps_compared]
            for flag, value in (("--batch-size", args.batch_size), ("--width", args.width),
                                ("--image-size", args.image_size)):
                if value is not None:
                    command += [flag, str(value)]
            command += ["--mixed-precision"] * args.mixed_precision + ["--xla"] * args.xla
            measured, stderr = worker_result(command)
            if measured is None:
                print(f"  worker failed\n{stderr[-2000:]}")
                continue
            rows = {}
            for result in measured:
                results.append(result)
                if "error" in result:
                    print(f"  {result['step']}: {result['error']}")
                    continue
                rows[result["step"]] = result
                print(f"  batch {result['batch_size']} width {result['width']} {result['image_size'][0]}x"
                      f"{result['image_size'][1]} {result['device']}: {describe(result)}")
            if {"lean", "reference"} <= set(rows):
                print(f"  lean / reference: {rows['lean']['images_per_s'] / rows['reference']['images_per_s']:.2f}x "
                      "images/s")
    if args.json:
        from tfrf.io import atomic_write_text

        atomic_write_text(args.json, json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
