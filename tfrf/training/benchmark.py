"""Train-step throughput (images/s) per preset, warp backend and step: `python -m tfrf.training.benchmark`.

Times `TrainingModel.train_step` (stage "full" by default: generator, discriminator and the VGG
passes) on random batches, after warm-up steps, in a fresh process per configuration, and
prints beside it the step's FLOPs by part (`tfrf.training.flops`: forward and backward of the
generator, VGG19, discriminator and losses) and this machine's 3x3-conv throughput, so that
`measured / ideal` (ideal = FLOPs / conv throughput) shows the time not spent in convolutions.
`--steps-compared lean reference` times the lean step against the straightforward one it
replaced (`TrainingModel(step="reference")`) in the same run. Figures are printed, never
asserted. VGG weights are random (nothing downloads); that does not change the cost.

    python -m tfrf.training.benchmark --presets deepfashion --backends gather --steps-compared lean reference
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence


def measure(preset: str, k: int, backend: str, stage: str = "full", batch_size: Optional[int] = None,
            width: Optional[float] = None, steps: int = 5, warmup: int = 2, mixed_precision: bool = False,
            xla: bool = False, step_kinds: Sequence[str] = ("lean",),
            image_size: Optional[int] = None) -> List[Dict[str, object]]:
    """Median seconds per train step, images/s, FLOPs and conv throughput of one configuration
    per step kind, in this process. The step kinds share the networks and the batch and are
    timed in turn, round after round (with the conv throughput in each round), so that a
    changing load on the machine hits them alike."""
    import numpy as np
    import tensorflow as tf

    from tfrf.training import flops, runner
    from tfrf.training.config import TrainConfig

    if mixed_precision:
        tf.keras.mixed_precision.set_global_policy("mixed_float16")
    model_overrides = {"warp_backend": backend}
    if width is not None:
        model_overrides["width_multiplier"] = width
    if image_size is not None:
        model_overrides["image_height"] = model_overrides["image_width"] = image_size
    overrides = {"num_sources": k, "vgg_weights": None, "model": model_overrides}
    if batch_size is not None:
        overrides["batch_size"] = batch_size
    config = TrainConfig.preset(preset, **overrides)
    networks = runner.create_networks(config)
    rng = np.random.default_rng(0)
    b, h, w, cp = config.batch_size, config.model.image_height, config.model.image_width, config.model.pose_channels
    batch = {
        "source_images": tf.constant(rng.uniform(-1, 1, (b, k, h, w, 3)), tf.float32),
        "source_poses": tf.constant(rng.uniform(0, 1, (b, k, h, w, cp)), tf.float32),
        "target_pose": tf.constant(rng.uniform(0, 1, (b, h, w, cp)), tf.float32),
        "target_image": tf.constant(rng.uniform(-1, 1, (b, h, w, 3)), tf.float32),
    }
    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    functions, results = {}, {}
    for kind in step_kinds:
        model = runner.compile_stage(stage, networks, config)
        model.step = kind
        results[kind] = {"preset": preset, "k": k, "backend": backend, "stage": stage, "batch_size": b,
                         "width": config.model.width_multiplier, "mixed_precision": mixed_precision, "xla": xla,
                         "step": kind, "image_size": [h, w], "device": device}
        step = tf.function(model.train_step, jit_compile=xla)
        try:
            results[kind]["flops"] = flops.step_flops(step.get_concrete_function(batch).graph,
                                                      flops.training_scopes(model))
            for _ in range(warmup):
                float(next(iter(step(batch).values())))
        except Exception as error:  # e.g. Addons>Resampler has no XLA kernel
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            results[kind]["error"] = f"{type(error).__name__}: {' | '.join(lines[-3:])[:600]}"
            continue
        functions[kind] = step
    times = {kind: [] for kind in functions}
    rates = []
    for _ in range(steps):
        for kind, step in functions.items():
            start = time.perf_counter()
            float(next(iter(step(batch).values())))
            times[kind].append(time.perf_counter() - start)
        if device == "CPU" and functions:
            rates.append(flops.conv_throughput(repeats=3))
    for kind, values in times.items():
        results[kind]["median_s_per_step"] = statistics.median(values)
        results[kind]["images_per_s"] = b / statistics.median(values)
        if rates:
            results[kind]["conv_flops_per_s"] = statistics.median(rates)
    return [results[kind] for kind in step_kinds]


def describe(result: Dict[str, object]) -> str:
    """One table row: time, img/s, GFLOP per step by part, ideal time and the ratio."""
    counts = result["flops"]
    total = counts["total"]["forward"] + counts["total"]["backward"]
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
                        help="the training steps to time: lean (default) and/or reference (the step it replaced)")
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
            command = [sys.executable, "-m", "tfrf.training.benchmark", "--worker", "--correctness-memory",
                       "--tile-size", str(tile)]
            completed = subprocess.run(command, capture_output=True, text=True)
            lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT")]
            if not lines:
                print(f"tile {tile}: worker failed\n{completed.stderr[-2000:]}")
                continue
            result = json.loads(lines[-1][len("RESULT"):])
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
            command = [sys.executable, "-m", "tfrf.training.benchmark", "--worker", "--presets", preset,
                       "--backends", backend, "--k", str(args.k), "--stage", args.stage,
                       "--steps", str(args.steps), "--warmup", str(args.warmup),
                       "--steps-compared", *args.steps_compared]
            for flag, value in (("--batch-size", args.batch_size), ("--width", args.width),
                                ("--image-size", args.image_size)):
                if value is not None:
                    command += [flag, str(value)]
            command += ["--mixed-precision"] * args.mixed_precision + ["--xla"] * args.xla
            completed = subprocess.run(command, capture_output=True, text=True)
            lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT")]
            if not lines:
                print(f"  worker failed\n{completed.stderr[-2000:]}")
                continue
            rows = {}
            for result in json.loads(lines[-1][len("RESULT"):]):
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
