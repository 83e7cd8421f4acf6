"""Training and inference figures on a GPU: `python -m tfrf.benchmarks.gpu [--preset deepfashion]`.

1. The train step (`TrainingModel.train_step`, stage "full", K = `--k` (2), gather warp, random VGG
   weights: nothing downloads) in float32, mixed_float16 and mixed_bfloat16, XLA off and on, at
   batch `--batch` (5) and at the largest batch that fits in the GPU's memory (doubling from
   `--batch`, then bisecting, up to `--max-batch`; a batch fits when its first two steps raise no
   ResourceExhaustedError). Each row: median s/step of `--steps` steps, img/s, FLOPs per step
   (`tfrf.benchmarks.flops.step_flops` on the traced step) and MFU: achieved FLOP/s over the
   card's dense peak (`PEAKS`: tf32 for float32 when TensorFloat-32 is on, else fp32; fp16 or
   bf16 for the mixed policies), the peak used named in the row. Each (precision, XLA) pair
   runs in its own worker process (the policy is global, and an out-of-memory try leaves the
   allocator fragmented).
2. Inference at batch 1, K = `--k`, float32: median latency of the exported SavedModel's
   `serving_default` (`tfrf.export.saved_model`, on the GPU) and of the TFLite export's `render`
   with cached source features and with `encode_sources` each frame (`tfrf.export.tflite`, on
   the CPU with `--threads` threads).

Without a GPU it prints one line saying so and exits 0. `--out FILE` also writes the figures as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Callable, Dict, List, Optional, Tuple

POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
# Dense (no sparsity) peak TFLOPS from NVIDIA's datasheets: fp32 on CUDA cores; tf32 and 16-bit
# (fp16 = bf16) on tensor cores. Matched in order on `get_device_details(gpu)["device_name"]`.
PEAKS = (
    ("H200 NVL", ("H200", "NVL"), {"fp32": 60.0, "tf32": 417.5, "16bit": 835.5}),
    ("H200", ("H200",), {"fp32": 67.0, "tf32": 494.7, "16bit": 989.4}),
    ("H100 NVL", ("H100", "NVL"), {"fp32": 60.0, "tf32": 417.5, "16bit": 835.5}),
    ("H100 PCIe", ("H100", "PCIE"), {"fp32": 51.0, "tf32": 378.0, "16bit": 756.0}),
    ("H100 SXM", ("H100",), {"fp32": 67.0, "tf32": 494.7, "16bit": 989.4}),
    ("A100", ("A100",), {"fp32": 19.5, "tf32": 156.0, "16bit": 312.0}),
)


def card_peaks(device_name: str) -> Tuple[Optional[str], Optional[Dict[str, float]]]:
    """(card, its peak TFLOPS by precision) for a device name, or (None, None) if not in `PEAKS`."""
    name = device_name.upper()
    for card, needles, peaks in PEAKS:
        if all(needle in name for needle in needles):
            return card, peaks
    return None, None


def peak_used(peaks: Optional[Dict[str, float]], policy: str, tf32: bool) -> Tuple[str, Optional[float]]:
    """(precision label, peak TFLOPS or None) that the MFU of a `policy` step is measured against."""
    label = {"mixed_float16": "fp16", "mixed_bfloat16": "bf16"}.get(policy, "tf32" if tf32 else "fp32")
    if peaks is None:
        return label, None
    return label, peaks["16bit" if label in ("fp16", "bf16") else label]


def mfu(flops_per_step: float, seconds_per_step: float, peak_tflops: float) -> float:
    """Model FLOPs utilisation: achieved FLOP/s over the peak."""
    return flops_per_step / seconds_per_step / (peak_tflops * 1e12)


def largest_batch(fits: Callable[[int], bool], start: int, limit: int) -> int:
    """The largest batch in [1, `limit`] for which `fits` holds, assuming it holds up to some size
    and then never: doubling from `start` to the first failure, then bisecting; 0 if none fits."""
    if fits(start):
        low, high = start, None
        while high is None and low < limit:
            trial = min(2 * low, limit)
            if fits(trial):
                low = trial
            else:
                high = trial
        if high is None:
            return low
    else:
        low, high = 0, start
    while high - low > 1:
        middle = (low + high) // 2
        if fits(middle):
            low = middle
        else:
            high = middle
    return low


def is_out_of_memory(error: BaseException) -> bool:
    import tensorflow as tf

    if isinstance(error, tf.errors.ResourceExhaustedError):
        return True
    return isinstance(error, tf.errors.OpError) and "RESOURCE_EXHAUSTED" in str(error)


def measure_policy(preset: str, k: int, policy: str, xla: bool, batch: int, max_batch: int, steps: int,
                   warmup: int) -> List[Dict[str, object]]:
    """Train-step rows of one (policy, XLA) pair at `batch` and the largest batch, in this process."""
    import tensorflow as tf

    from tfrf.benchmarks.flops import total_step_flops
    from tfrf.benchmarks.timing import median_seconds
    from tfrf.benchmarks.train_step import random_batch, run_step, traced_step, train_config
    from tfrf.training import runner

    tf.keras.mixed_precision.set_global_policy(policy)
    config = train_config(preset, k, "gather", batch_size=batch)
    model = runner.compile_stage("full", runner.create_networks(config), config)
    kept = {}

    def fits(size: int) -> bool:
        values = random_batch(config, size)
        try:
            step, counts = traced_step(model, values, xla)
            for _ in range(2):
                run_step(step, values)
        except tf.errors.OpError as error:
            if not is_out_of_memory(error):
                raise
            return False
        for smaller in [other for other in kept if other not in (batch, size)]:
            del kept[smaller]
        kept[size] = (step, values, counts)
        return True

    largest = largest_batch(fits, batch, max_batch)
    rows = []
    for size in sorted({batch, max(largest, 1)}):
        row = {"policy": policy, "xla": xla, "batch_size": size, "largest": size == largest}
        if size not in kept:
            row["error"] = "does not fit in memory"
        else:
            step, values, counts = kept[size]
            seconds = median_seconds(lambda: run_step(step, values), steps, warmup)
            row.update(median_s_per_step=seconds, images_per_s=size / seconds, flops_per_step=total_step_flops(counts))
        rows.append(row)
    return rows


def inference_latencies(preset: str, k: int, repeats: int, warmup: int, threads: int) -> List[Dict[str, object]]:
    """Median ms at batch 1 of the SavedModel's `serving_default` and the TFLite `render`."""
    import tensorflow as tf

    import tfrf
    from tfrf.benchmarks.inputs import config_inputs
    from tfrf.benchmarks.timing import median_seconds
    from tfrf.benchmarks.tflite_calls import tflite_latency
    from tfrf.export import export_generator
    from tfrf.export.saved_model import DEFAULT_SIGNATURE, export_saved_model
    from tfrf.export.tflite import convert, runtime_name

    config = tfrf.ModelConfig.preset(preset)
    inputs = config_inputs(config, 1, k)
    with tempfile.TemporaryDirectory(prefix="tfrf-gpu-") as directory:
        serve = tf.saved_model.load(export_saved_model(export_generator(config), os.path.join(directory, "model")))
        function = serve.signatures[DEFAULT_SIGNATURE]
        tensors = {key: tf.constant(value) for key, value in inputs.items()}
        saved = median_seconds(lambda: function(**tensors)["image"].numpy(), repeats, warmup)
    flatbuffer = convert(export_generator(config, tflite=True), k, "none")
    cached, uncached = tflite_latency(flatbuffer, inputs, threads, repeats,
                                      seconds=lambda call, count: median_seconds(call, count, warmup))
    where = f"CPU, {threads} threads, {runtime_name()}"
    return [{"runtime": "SavedModel serving_default (GPU)", "median_ms": saved * 1e3},
            {"runtime": f"TFLite render, cached sources ({where})", "median_ms": cached * 1e3},
            {"runtime": f"TFLite encode_sources + render ({where})", "median_ms": uncached * 1e3}]


def train_rows(args, peaks, tf32: bool) -> List[Dict[str, object]]:
    """Every (policy, XLA) pair's rows, each pair in a worker process, with MFU; printed as they come."""
    from tfrf.benchmarks.train_step import worker_result

    print("| precision | XLA | batch | s/step | img/s | TFLOP/step | TFLOP/s | MFU | peak used (TFLOPS) |\n"
          "|---|---|---|---|---|---|---|---|---|", flush=True)
    rows = []
    for policy in args.policies:
        for xla in (mode == "on" for mode in args.xla):
            command = [sys.executable, "-m", "tfrf.benchmarks.gpu", "--worker", "--policies", policy,
                       "--xla", "on" if xla else "off", "--preset", args.preset, "--k", str(args.k),
                       "--batch", str(args.batch), "--max-batch", str(args.max_batch), "--steps", str(args.steps),
                       "--warmup", str(args.warmup)]
            result, stderr = worker_result(command)
            if result is None:
                tail = stderr.strip().splitlines()[-1:] or ["no output"]
                result = [{"policy": policy, "xla": xla, "batch_size": args.batch, "error": tail[0][:300]}]
            for row in result:
                row["peak"], peak = peak_used(peaks, policy, tf32)
                row["peak_tflops"] = peak
                largest = " (largest)" if row.get("largest") else ""
                head = f"| {policy} | {'on' if xla else 'off'} | {row['batch_size']}{largest} |"
                if "error" in row:
                    print(f"{head} {row['error']} | | | | | |", flush=True)
                    rows.append(row)
                    continue
                achieved = row["flops_per_step"] / row["median_s_per_step"]
                row["mfu"] = None if peak is None else mfu(row["flops_per_step"], row["median_s_per_step"], peak)
                utilisation = "n/a" if peak is None else f"{row['mfu']:.1%}"
                peak_text = "unknown" if peak is None else f"{peak:g}"
                print(f"{head} {row['median_s_per_step']:.4f} | {row['images_per_s']:.1f} | "
                      f"{row['flops_per_step'] / 1e12:.2f} | {achieved / 1e12:.1f} | {utilisation} | "
                      f"{row['peak']} {peak_text} |", flush=True)
                rows.append(row)
    return rows


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tfrf.benchmarks.gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="deepfashion", help="TrainConfig and ModelConfig preset")
    parser.add_argument("--k", type=int, default=2, help="sources per example (default 2)")
    parser.add_argument("--steps", type=int, default=10, help="timed train steps per row (the median counts)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps / calls before timing")
    parser.add_argument("--batch", type=int, default=5, help="the fixed batch size of the train-step rows")
    parser.add_argument("--max-batch", type=int, default=1024, help="the largest batch the search tries")
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    parser.add_argument("--xla", nargs="+", default=["off", "on"], choices=("off", "on"))
    parser.add_argument("--repeats", type=int, default=20, help="timed inference calls per latency")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="TFLite interpreter threads")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-inference", action="store_true")
    parser.add_argument("--out", help="also write the figures to this JSON file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    if args.worker:
        print("RESULT" + json.dumps(measure_policy(args.preset, args.k, args.policies[0], args.xla[0] == "on",
                                                   args.batch, args.max_batch, args.steps, args.warmup)))
        return 0
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        print("python -m tfrf.benchmarks.gpu: no GPU found (tf.config.list_physical_devices('GPU') is empty); "
              "nothing measured")
        return 0
    device = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "unknown GPU")
    card, peaks = card_peaks(device)
    tf32 = tf.config.experimental.tensor_float_32_execution_enabled()
    peak_text = ("not in the table: MFU n/a" if peaks is None else
                 f"{card}: fp32 {peaks['fp32']:g}, tf32 {peaks['tf32']:g}, fp16/bf16 {peaks['16bit']:g}")
    print(f"GPU: {device} (of {len(gpus)}); dense peak TFLOPS {peak_text}; TensorFloat-32 "
          f"{'on: float32 rows use the tf32 peak' if tf32 else 'off: float32 rows use the fp32 peak'}")
    report = {"device": device, "card": card, "peak_tflops": peaks, "tensor_float_32": tf32}
    if not args.skip_train:
        print(f"\ntrain step: {args.preset}, K = {args.k}, stage full, gather warp, random VGG; median of "
              f"{args.steps} steps after {args.warmup} warm-up; largest batch searched up to {args.max_batch}")
        report["train_step"] = train_rows(args, peaks, tf32)
    if not args.skip_inference:
        print(f"\ninference: {args.preset}, batch 1, K = {args.k}, float32; median of {args.repeats} calls after "
              f"{args.warmup} warm-up\n| runtime | median ms |\n|---|---|", flush=True)
        report["inference"] = inference_latencies(args.preset, args.k, args.repeats, args.warmup, args.threads)
        for row in report["inference"]:
            print(f"| {row['runtime']} | {row['median_ms']:.2f} |", flush=True)
    if args.out:
        from tfrf.io import atomic_write_text

        atomic_write_text(args.out, json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
