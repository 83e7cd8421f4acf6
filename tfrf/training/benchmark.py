"""Train-step throughput (images/s) per preset and warp backend: `python -m tfrf.training.benchmark`.

Times `TrainingModel.train_step` (stage "full" by default: generator, discriminator and one
VGG pass) on random batches, after warm-up steps, in a fresh process per configuration.
Figures are printed, never asserted. VGG weights are random (nothing downloads); that does
not change the cost.

    python -m tfrf.training.benchmark --presets synthetic deepfashion --k 2 --backends tfa gather
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
            xla: bool = False) -> Dict[str, object]:
    """Median seconds per train step and images/s of one configuration, in this process."""
    import numpy as np
    import tensorflow as tf

    from tfrf.training import runner
    from tfrf.training.config import TrainConfig

    if mixed_precision:
        tf.keras.mixed_precision.set_global_policy("mixed_float16")
    model_overrides = {"warp_backend": backend}
    if width is not None:
        model_overrides["width_multiplier"] = width
    overrides = {"num_sources": k, "vgg_weights": None, "model": model_overrides}
    if batch_size is not None:
        overrides["batch_size"] = batch_size
    config = TrainConfig.preset(preset, **overrides)
    networks = runner.create_networks(config)
    model = runner.compile_stage(stage, networks, config)
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
              "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU"}
    try:
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
    return result


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
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    options = dict(stage=args.stage, batch_size=args.batch_size, width=args.width, steps=args.steps,
                   warmup=args.warmup, mixed_precision=args.mixed_precision, xla=args.xla)
    if args.worker:
        print("RESULT" + json.dumps(measure(args.presets[0], args.k, args.backends[0], **options)))
        return 0
    for preset in args.presets:
        for backend in args.backends:
            command = [sys.executable, "-m", "tfrf.training.benchmark", "--worker", "--presets", preset,
                       "--backends", backend, "--k", str(args.k), "--stage", args.stage, "--steps", str(args.steps),
                       "--warmup", str(args.warmup)]
            for flag, value in (("--batch-size", args.batch_size), ("--width", args.width)):
                if value is not None:
                    command += [flag, str(value)]
            command += ["--mixed-precision"] * args.mixed_precision + ["--xla"] * args.xla
            completed = subprocess.run(command, capture_output=True, text=True)
            lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT")]
            if not lines:
                print(f"{preset} {backend}: worker failed\n{completed.stderr[-2000:]}")
                continue
            result = json.loads(lines[-1][len("RESULT"):])
            if "error" in result:
                print(f"{preset:<12} K={args.k} {backend:<6} {result['error']}")
            else:
                print(f"{preset:<12} K={args.k} {backend:<6} batch {result['batch_size']} width {result['width']}: "
                      f"{result['median_s_per_step']:.3f} s/step, {result['images_per_s']:.2f} images/s "
                      f"({result['device']}{', fp16' if result['mixed_precision'] else ''}"
                      f"{', XLA' if result['xla'] else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
