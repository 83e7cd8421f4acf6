"""Deployment figures: TFLite latency, FLOPs and sizes, conv throughput, serving throughput.

    python -m tfrf.benchmarks.tflite_render [--size 256] [--ks 2 4] [--threads 2] [--skip-serving] ...

Prints, for the voxceleb2 preset at `--size` (randomly initialised weights: latency does not
depend on the values):

1. Convolution throughput of this machine: a TFLite model of plain 3x3 conv stacks at the
   generator's shapes (256x256x32 ... 16x16x256 maps; `tfrf.benchmarks.conv_throughput`), run
   with the same interpreter and threads; GFLOP/s = analytic conv FLOPs / best time.
2. FLOPs of `encode_sources` and `render` (`tfrf.benchmarks.flops.graph_flops`: the TF
   profiler's float-op count of their graphs, i.e. convolutions plus elementwise ops; gathers
   count as zero).
3. Per-frame latency of `render` for each K and quantisation, with cached source features
   (render only) and without (encode_sources + render each frame); the ratio of the render
   latency to its FLOPs / conv throughput; the measured saving of caching against the source
   extractor's FLOP share.
4. Model sizes: TFLite flatbuffers and the SavedModel's variables.
5. Requests/s and p50/p99 latency through the local server (`tfrf serve`) without batching,
   with serving/batching_parameters.txt, and with it minus the padding to allowed batch
   sizes; concurrent clients sending B = 1 requests (`tfrf.benchmarks.serving_load`).
6. A mobile search (`tfrf.benchmarks.tflite_mobile`): the largest size and width whose cached
   `render` reaches `--target-fps`, and the `voxceleb2_mobile` preset's render time per
   quantisation.
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
import os
from typing import Sequence


from tfrf.benchmarks.tflite_calls import tflite_latency

QUANTIZATIONS = ("none", "float16", "dynamic-int8", "full-int8")


def benchmark_tflite(args, throughput: float) -> None:
    import tfrf
    from tfrf.benchmarks.flops import graph_flops
    from tfrf.benchmarks.inputs import config_inputs
    from tfrf.export import export_generator
    from tfrf.export.tflite import convert, runtime_name, tflite_module
    from tfrf.models import rebuild_generator

    config = tfrf.ModelConfig.preset("voxceleb2", image_height=args.size, image_width=args.size,
                                     width_multiplier=args.width)
    generator = export_generator(config, tflite=True)
    print(f"\n== TFLite render, voxceleb2 {args.size}x{args.size}, width {args.width}, {args.threads} threads, "
          f"runtime {runtime_name()} ==")
    print(f"{'K':>2} {'kernels':>8} {'quantize':>12} {'size MiB':>9} {'render ms':>10} {'enc+render ms':>14} "
          f"{'ideal ms':>9} {'ratio':>6} {'saving':>7} {'enc share':>9}")
    kernel_modes = (False, True) if args.compare_kernels else (True,)
    for num_sources in args.ks:
        inputs = config_inputs(config, 1, num_sources)
        for export_kernels in kernel_modes:
            traced = rebuild_generator(generator, "export") if export_kernels else generator
            module = tflite_module(traced, num_sources)
            encode_flops = graph_flops(module.encode_sources.get_concrete_function().graph)
            render_flops = graph_flops(module.render.get_concrete_function().graph)
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


def parse_args(argv: Sequence[str] = None) -> argparse.Namespace:
    import tfrf.serving

    parser = argparse.ArgumentParser(prog="python -m tfrf.benchmarks.tflite_render", description=__doc__.split("\n\n")[0])
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
                        default=os.path.join(os.path.dirname(os.path.abspath(tfrf.serving.__file__)),
                                             "batching_parameters.txt"))
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

    from tfrf.benchmarks.conv_throughput import conv_throughput, generator_levels
    from tfrf.benchmarks.serving_load import benchmark_serving
    from tfrf.benchmarks.tflite_mobile import mobile_compare, mobile_search

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    throughput = conv_throughput(generator_levels(args.size), convs_per_level=4, repeats=args.repeats,
                                 runtime="tflite", threads=args.threads) / 1e9
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
