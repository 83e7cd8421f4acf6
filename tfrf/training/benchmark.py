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
from typing import Dict, Optional


def measure(preset: str, k: int, backend: str, stage: str = "full", batch_size: Optional[int] = None,
            width: Optional[float] = None, steps: int = 5, warmup: int = 2, mixed_precision: bool = False,
            xla: bool = False, step_kind: str = "lean", image_size: Optional[int] = None) -> Dict[str, object]:
    """Median seconds per train step, images/s, FLOPs and conv throughput of one configuration,
    in this process."""
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
    model = runner.compile_stage(stage, networks, config)
    model.step = step_kind
    rng = np.random.default_rng(0)
    b, h, w, cp = config.batch_size, config.model.image_height, config.model.image_width, config.model.pose_channels
    batch = {
        "source_images": tf.constant(rng.uniform(-1, 1, (b, k, h, w, 3)), tf.float32),
        "source_poses": tf.constant(rng.uniform(0, 1, (b, k, h, w, cp)), tf.float32),
        "target_pose": tf.constant(rng.uniform(0, 1, (b, h, w, cp)), tf.float32),
        "target_image": tf.constant(rng.uniform(-1, 1, (b, h, w, 3)), tf.float32),
    }
    step = tf.function(model.train_step, jit_compile=xla)
    result = {"preset": preset, "k": k, "backend": backend, "stage": stage, "batch_size": b,
              "width": config.model.width_multiplier, "mixed_precision": mixed_precision, "xla": xla,
              "step": step_kind, "image_size": [h, w],
              "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU"}
    try:
        result["flops"] = flops.step_flops(step.get_concrete_function(batch).graph)
        for _ in range(warmup):
            logs = step(batch)
            float(next(iter(logs.values())))
    except Exception as error:  # e.g. Addons>Resampler has no XLA kernel
        result["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
        return result
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        logs = step(batch)
        float(next(iter(logs.values())))
        times.append(time.perf_counter() - start)
    result["median_s_per_step"] = statistics.median(times)
    result["images_per_s"] = b / statistics.median(times)
    if result["device"] == "CPU":
        result["conv_flops_per_s"] = flops.conv_throughput()
    return result


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
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    options = dict(stage=args.stage, batch_size=args.batch_size, width=args.width, steps=args.steps,
                   warmup=args.warmup, mixed_precision=args.mixed_precision, xla=args.xla,
                   image_size=args.image_size)
    if args.worker:
        print("RESULT" + json.dumps(measure(args.presets[0], args.k, args.backends[0],
                                            step_kind=args.steps_compared[0], **options)))
        return 0
    results = []
    for preset in args.presets:
        for backend in args.backends:
            rows = {}
            print(f"{preset} K={args.k} {backend} stage {args.stage}"
                  f"{', mixed_float16' if args.mixed_precision else ''}{', XLA' if args.xla else ''}:")
            for step_kind in args.steps_compared:
                command = [sys.executable, "-m", "tfrf.training.benchmark", "--worker", "--presets", preset,
                           "--backends", backend, "--k", str(args.k), "--stage", args.stage,
                           "--steps", str(args.steps), "--warmup", str(args.warmup), "--steps-compared", step_kind]
                for flag, value in (("--batch-size", args.batch_size), ("--width", args.width),
                                    ("--image-size", args.image_size)):
                    if value is not None:
                        command += [flag, str(value)]
                command += ["--mixed-precision"] * args.mixed_precision + ["--xla"] * args.xla
                completed = subprocess.run(command, capture_output=True, text=True)
                lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT")]
                if not lines:
                    print(f"  {step_kind}: worker failed\n{completed.stderr[-2000:]}")
                    continue
                result = json.loads(lines[-1][len("RESULT"):])
                results.append(result)
                if "error" in result:
                    print(f"  {step_kind}: {result['error']}")
                    continue
                rows[step_kind] = result
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
