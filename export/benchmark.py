"""Deployment figures: TFLite latency, FLOPs and sizes, conv throughput, serving throughput.

    python -m tfrf.export.benchmark [--size 256] [--ks 2 4] [--threads 2] [--skip-serving] ...

Prints, for the voxceleb2 preset at `--size` (randomly initialised weights: latency does not
depend on the values):

1. Convolution throughput of this machine: a TFLite model of plain 3x3 conv stacks at the
   generator's shapes (256x256x32 ... 16x16x256 maps; see `conv_reference_model`), run with
   the same interpreter and threads; GFLOP/s = analytic conv FLOPs / best time.
2. FLOPs of `encode_sources` and `render` (TF profiler float-op count of their graphs, i.e.
   convolutions plus elementwise ops; gathers count as zero).
3. Per-frame latency of `render` for each K and quantisation, with cached source features
   (render only) and without (encode_sources + render each frame); the ratio of the render
   latency to its FLOPs / conv throughput; the measured saving of caching against the source
   extractor's FLOP share.
4. Model sizes: TFLite flatbuffers and the SavedModel's variables.
5. Requests/s and p50/p99 latency through the local server (`tfrf serve`) without batching,
   with serving/batching_parameters.txt, and with it minus the padding to allowed batch
   sizes; concurrent clients sending B = 1 requests.
6. A mobile search: the largest size and width whose cached `render` reaches `--target-fps`,
   and the `voxceleb2_mobile` preset's render time per quantisation.
7. `--mobile-compare`: the `voxceleb2_mobile` preset against its network with
   `full_resolution="conv"` and against width 0.125 (float32 and full-int8 each), timed
   interleaved in one process (one cached `render` of each model per round, best of
   `--compare-rounds`, `--compare-calls` consecutive calls per model and round), so their ratios
   hold under a changing load.

TFLite figures name the runtime that ran them (`ai-edge-litert` when installed, else
`tf.lite`) and use the export kernels (`--compare-kernels` adds rows traced with the training
kernels; see `tfrf.export.tflite`).

Latencies and the conv throughput are the best of repeated runs after a warm-up (robust to
other load on a shared machine; still upper bounds there). Serving figures are under load by
construction (concurrent clients) and include it.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import tempfile
import threading
import time
from typing import Callable, Dict, List, Sequence

import numpy as np

QUANTIZATIONS = ("none", "float16", "dynamic-int8", "full-int8")


def best_seconds(function: Callable[[], object], repeats: int, budget_seconds: float = 20.0) -> float:
    """Best (minimum) wall time of `function` over up to `repeats` runs after one warm-up,
    stopping early when `budget_seconds` are spent. The minimum, not the median: on a machine
    shared with other work the median measures the neighbours as much as the model."""
    function()
    times: List[float] = []
    started = time.perf_counter()
    while len(times) < repeats and (len(times) < 2 or time.perf_counter() - started < budget_seconds):
        began = time.perf_counter()
        function()
        times.append(time.perf_counter() - began)
    return min(times)


def graph_flops(concrete_function) -> float:
    """Float operations of a concrete function's graph (TF profiler count)."""
    from tensorflow.python.profiler import model_analyzer, option_builder

    options = option_builder.ProfileOptionBuilder(
        option_builder.ProfileOptionBuilder.float_operation()
    ).with_empty_output().build()
    return float(model_analyzer.profile(graph=concrete_function.graph, options=options).total_float_ops)


def conv_reference_model(size: int = 256):
    """(TFLite flatbuffer, conv FLOPs) of 3x3 conv stacks at the generator's map shapes: 4
    convs at each of (size, 32), (size/2, 64), (size/4, 128), (size/8, 256) channels."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    levels = [(size, 32), (size // 2, 64), (size // 4, 128), (size // 8, 256)]
    kernels = [[tf.constant(rng.normal(0, 0.05, (3, 3, c, c)).astype(np.float32)) for _ in range(4)] for _, c in levels]
    specs = [tf.TensorSpec([1, s, s, c], tf.float32, name=f"x{index}") for index, (s, c) in enumerate(levels)]

    @tf.function(input_signature=specs)
    def stack(*maps):
        outputs = []
        for x, level_kernels in zip(maps, kernels):
            for kernel in level_kernels:
                x = tf.maximum(tf.nn.conv2d(x, kernel, 1, "SAME"), 0.0)
            outputs.append(tf.reduce_mean(x))
        return tf.add_n(outputs)

    flops = sum(4 * 2 * s * s * 9 * c * c for s, c in levels)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([stack.get_concrete_function()], stack)
    return converter.convert(), flops


def conv_throughput(threads: int, size: int, repeats: int) -> float:
    """GFLOP/s of the TFLite interpreter on `conv_reference_model`."""
    import tensorflow as tf

    from tfrf.export.tflite import load_interpreter

    model, flops = conv_reference_model(size)
    interpreter = load_interpreter(model, num_threads=threads)
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], np.random.default_rng(1).normal(size=detail["shape"]).astype(np.float32))
    return flops / best_seconds(interpreter.invoke, repeats) / 1e9


def render_inputs(config, num_sources: int) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    h, w, cp = config.image_height, config.image_width, config.pose_channels
    return {
        "source_images": rng.uniform(-1, 1, (1, num_sources, h, w, 3)).astype(np.float32),
        "source_poses": rng.uniform(0, 1, (1, num_sources, h, w, cp)).astype(np.float32),
        "target_pose": rng.uniform(0, 1, (1, h, w, cp)).astype(np.float32),
    }


def runtime_name() -> str:
    """The TFLite runtime `load_interpreter` uses: "ai-edge-litert X.Y.Z" or "tf.lite (TF X.Y.Z)"."""
    from tfrf.export.tflite import runtime_name as name

    return name()


def tflite_latency(flatbuffer: bytes, inputs: Dict[str, np.ndarray], threads: int, repeats: int):
    """(cached render seconds, encode_sources + render seconds) per frame."""
    from tfrf.export.tflite import load_interpreter

    interpreter = load_interpreter(flatbuffer, num_threads=threads)
    encode = interpreter.get_signature_runner("encode_sources")
    render = interpreter.get_signature_runner("render")
    features = encode(source_images=inputs["source_images"])
    cached = best_seconds(lambda: render(**inputs, **features), repeats)

    def uncached():
        render(**inputs, **encode(source_images=inputs["source_images"]))

    return cached, best_seconds(uncached, repeats)


def benchmark_tflite(args, throughput: float) -> None:
    import tfrf
    from tfrf.export import build_generator
    from tfrf.export.tflite import convert, tflite_module, use_export_kernels

    config = tfrf.ModelConfig.preset("voxceleb2", image_height=args.size, image_width=args.size,
                                     width_multiplier=args.width)
    generator = build_generator(config, tflite=True)
    print(f"\n== TFLite render, voxceleb2 {args.size}x{args.size}, width {args.width}, {args.threads} threads, "
          f"runtime {runtime_name()} ==")
    print(f"{'K':>2} {'kernels':>8} {'quantize':>12} {'size MiB':>9} {'render ms':>10} {'enc+render ms':>14} "
          f"{'ideal ms':>9} {'ratio':>6} {'saving':>7} {'enc share':>9}")
    kernel_modes = (False, True) if args.compare_kernels else (True,)
    for num_sources in args.ks:
        inputs = render_inputs(config, num_sources)
        for export_kernels in kernel_modes:
            module = tflite_module(generator, num_sources)
            with use_export_kernels(generator, export_kernels):
                encode_flops = graph_flops(module.encode_sources.get_concrete_function())
                render_flops = graph_flops(module.render.get_concrete_function())
            share = encode_flops / (encode_flops + render_flops)
            label = "export" if export_kernels else "training"
            print(f"   K={num_sources}, {label} kernels: encode_sources {encode_flops / 1e9:.2f} GFLOP, "
                  f"render {render_flops / 1e9:.2f} GFLOP")
            for quantize in args.quantize:
                flatbuffer = convert(generator, num_sources, quantize, export_kernels=export_kernels)
                cached, uncached = tflite_latency(flatbuffer, inputs, args.threads, args.repeats)
                ideal = render_flops / (throughput * 1e9)
                print(f"{num_sources:>2} {label:>8} {quantize:>12} {len(flatbuffer) / 2**20:>9.2f} {cached * 1e3:>10.1f} "
                      f"{uncached * 1e3:>14.1f} {ideal * 1e3:>9.1f} {cached / ideal:>6.2f} "
                      f"{1 - cached / uncached:>7.1%} {share:>9.1%}", flush=True)


def mobile_search(args) -> None:
    import tfrf
    from tfrf.export import build_generator
    from tfrf.export.tflite import convert

    budget = 1.0 / args.target_fps
    print(f"\n== mobile search: cached render >= {args.target_fps:g} fps, K = 2, {args.threads} threads, "
          f"runtime {runtime_name()} ==")
    found = []
    for size in args.mobile_sizes:
        for width in args.mobile_widths:
            config = tfrf.ModelConfig.preset("voxceleb2", image_height=size, image_width=size, width_multiplier=width)
            generator = build_generator(config, tflite=True)
            best = None
            for quantize in ("none", "dynamic-int8", "full-int8"):
                cached, _ = tflite_latency(convert(generator, 2, quantize), render_inputs(config, 2), args.threads,
                                           args.repeats)
                best = min(best or (cached, quantize), (cached, quantize))
            reached = best[0] <= budget
            print(f"  {size:>3}x{size:<3} width {width:<6g} render {best[0] * 1e3:7.1f} ms "
                  f"({1 / best[0]:5.1f} fps, {best[1]}) {'REACHES' if reached else ''}", flush=True)
            if reached:
                found.append((size, width))
                break  # the widest width that reaches the target at this size
    if found:
        size, width = max(found, key=lambda item: (item[0], item[1]))
        print(f"  largest reaching {args.target_fps:g} fps: {size}x{size}, width {width:g}")
    else:
        print(f"  no tried configuration reaches {args.target_fps:g} fps")
    config = tfrf.ModelConfig.preset("voxceleb2_mobile")
    generator = build_generator(config, tflite=True)
    for quantize in ("none", "full-int8"):
        cached, _ = tflite_latency(convert(generator, 2, quantize), render_inputs(config, 2), args.threads, args.repeats)
        print(f"  voxceleb2_mobile {config.image_height}x{config.image_width} {quantize:>9}: render {cached * 1e3:7.1f} ms "
              f"({1 / cached:5.1f} fps) {'REACHES' if cached <= budget else ''}", flush=True)


def mobile_models(args) -> Dict[str, object]:
    """The configs `--mobile-compare` times, by label: the mobile preset, its "conv" network, and
    each `--mobile-widths` network with both full-resolution forms."""
    import tfrf

    mobile = tfrf.ModelConfig.preset("voxceleb2_mobile")
    models = {"voxceleb2_mobile": mobile}
    if mobile.full_resolution != "conv":
        models["mobile, full_resolution=conv"] = mobile.replace(full_resolution="conv")
    for width in args.mobile_widths:
        models[f"voxceleb2 width {width:g}"] = tfrf.ModelConfig.preset("voxceleb2", width_multiplier=width)
        models[f"width {width:g}, space_to_depth"] = tfrf.ModelConfig.preset(
            "voxceleb2", width_multiplier=width, full_resolution="space_to_depth")
    return models


def interleaved_render_seconds(runners: Dict[str, Callable[[], object]], rounds: int,
                               calls_per_turn: int = 1) -> Dict[str, float]:
    """Best time of one call of each runner over `rounds` rounds, each round giving every runner
    a turn of `calls_per_turn` consecutive calls (after one warm-up call each): load changes hit
    every runner alike. With one call per turn each call follows the other models' calls (caches
    hold their data); with several, the later calls of a turn run on warm caches, as a video loop
    that renders frame after frame with one model does."""
    for runner in runners.values():
        runner()
    best = {label: float("inf") for label in runners}
    for _ in range(rounds):
        for label, runner in runners.items():
            for _ in range(calls_per_turn):
                began = time.perf_counter()
                runner()
                best[label] = min(best[label], time.perf_counter() - began)
    return best


def mobile_compare(args) -> None:
    from tfrf.export import build_generator
    from tfrf.export.profile import op_census
    from tfrf.export.tflite import convert, load_interpreter

    print(f"\n== mobile compare: cached render, K = 2, {args.threads} threads, interleaved best of "
          f"{args.compare_rounds} rounds of {args.compare_calls} call(s) per model, runtime {runtime_name()} ==")
    runners, notes = {}, {}
    for label, config in mobile_models(args).items():
        generator = build_generator(config, tflite=True)
        parameters = sum(int(np.prod(variable.shape)) for variable in generator.trainable_variables)
        inputs = render_inputs(config, 2)
        for quantize in ("none", "full-int8"):
            flatbuffer = convert(generator, 2, quantize)
            census = op_census(flatbuffer, "render")
            interpreter = load_interpreter(flatbuffer, num_threads=args.threads)
            features = interpreter.get_signature_runner("encode_sources")(source_images=inputs["source_images"])
            render = interpreter.get_signature_runner("render")
            key = (label, quantize)
            runners[key] = (lambda render=render, features=features, inputs=inputs: render(**inputs, **features))
            notes[key] = (f"{config.image_height}x{config.image_width} width {config.width_multiplier:g} "
                          f"min_channels {config.min_channels} {config.full_resolution}, "
                          f"{parameters / 1e3:.0f} k parameters, {sum(census.values())} render ops")
    best = interleaved_render_seconds(runners, args.compare_rounds, args.compare_calls)
    for (label, quantize), seconds in best.items():
        print(f"  {label:>30} {quantize:>9}: render {seconds * 1e3:7.1f} ms ({1 / seconds:5.1f} fps)  "
              f"[{notes[(label, quantize)]}]", flush=True)


def benchmark_serving(args) -> None:
    import tfrf
    from tfrf.export import build_generator
    from tfrf.export.saved_model import export_saved_model
    from tfrf.serving import BatchingParameters, Client, LocalModelServer

    config = tfrf.ModelConfig.preset("voxceleb2", image_height=args.serving_size, image_width=args.serving_size,
                                     width_multiplier=args.serving_width)
    directory = tempfile.mkdtemp(prefix="tfrf-bench-")
    try:
        path = export_saved_model(build_generator(config), os.path.join(directory, "face"))
        variables = sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)
        print(f"\n== serving: local server, voxceleb2 {args.serving_size}px width {args.serving_width:g}, K = 2, "
              f"B = 1 requests, {args.clients} concurrent clients ==")
        print(f"  SavedModel size {variables / 2**20:.2f} MiB")
        inputs = render_inputs(config, 2)
        batching = BatchingParameters.from_file(args.batching_parameters)
        unpadded = dataclasses.replace(batching, allowed_batch_sizes=())
        modes = (("no batching", None), ("batching", batching), ("no padding", unpadded))
        for label, parameters in modes:
            with LocalModelServer(os.path.join(directory, "face"), port=0, poll_seconds=0,
                                  batching=parameters) as server:
                latencies: List[float] = []
                lock = threading.Lock()
                with Client(server.address, "face", timeout=120) as client:
                    client.generate(**inputs)  # warm-up, metadata

                    def worker():
                        for _ in range(args.requests_per_client):
                            began = time.perf_counter()
                            client.generate(**inputs)
                            with lock:
                                latencies.append(time.perf_counter() - began)

                    threads = [threading.Thread(target=worker) for _ in range(args.clients)]
                    started = time.perf_counter()
                    for thread in threads:
                        thread.start()
                    for thread in threads:
                        thread.join()
                    elapsed = time.perf_counter() - started
            p50, p99 = np.percentile(latencies, [50, 99]) * 1e3
            print(f"  {label:>12}: {len(latencies) / elapsed:6.2f} requests/s, p50 {p50:7.1f} ms, p99 {p99:7.1f} ms "
                  f"({len(latencies)} requests)", flush=True)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def parse_args(argv: Sequence[str] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tfrf.export.benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256, help="image size of the latency benchmark")
    parser.add_argument("--width", type=float, default=1.0, help="width multiplier of the latency benchmark")
    parser.add_argument("--ks", type=int, nargs="+", default=[2, 4], help="numbers of sources K")
    parser.add_argument("--quantize", nargs="+", default=list(QUANTIZATIONS), choices=QUANTIZATIONS)
    parser.add_argument("--threads", type=int, default=2, help="interpreter / TF threads")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per figure (the best counts)")
    parser.add_argument("--target-fps", type=float, default=25.0)
    parser.add_argument("--mobile-sizes", type=int, nargs="+", default=[256, 192, 128])
    parser.add_argument("--mobile-widths", type=float, nargs="+", default=[0.5, 0.25, 0.125])
    parser.add_argument("--serving-size", type=int, default=256)
    parser.add_argument("--serving-width", type=float, default=0.25)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests-per-client", type=int, default=6)
    parser.add_argument("--batching-parameters",
                        default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                             "serving", "batching_parameters.txt"))
    parser.add_argument("--compare-kernels", action="store_true",
                        help="also time the TFLite models traced with the training kernels")
    parser.add_argument("--mobile-compare", action="store_true",
                        help="time voxceleb2_mobile, its full_resolution='conv' network and --mobile-widths "
                             "interleaved (float32, full-int8)")
    parser.add_argument("--compare-rounds", type=int, default=30, help="rounds of --mobile-compare")
    parser.add_argument("--compare-calls", type=int, default=1,
                        help="consecutive calls per model and round in --mobile-compare (1: every call after "
                             "the other models' calls; more: warm caches, as in a video loop)")
    for part in ("tflite", "mobile", "serving"):
        parser.add_argument(f"--skip-{part}", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    throughput = conv_throughput(args.threads, args.size, args.repeats)
    print(f"== conv throughput (TFLite, 3x3 conv stacks at {args.size}..{args.size // 8} px, "
          f"{args.threads} threads): {throughput:.1f} GFLOP/s ==", flush=True)
    if not args.skip_tflite:
        benchmark_tflite(args, throughput)
    if not args.skip_mobile:
        mobile_search(args)
    if args.mobile_compare:
        mobile_compare(args)
    if not args.skip_serving:
        benchmark_serving(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
