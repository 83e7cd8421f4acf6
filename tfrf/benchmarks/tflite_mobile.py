"""The mobile parts of `python -m tfrf.benchmarks.tflite_render`: which size and width reach a
frame rate, and the mobile networks timed against each other (K = 2, cached `render`)."""
from __future__ import annotations

from typing import Callable, Dict, Hashable

import numpy as np

from tfrf.benchmarks.timing import interleaved_seconds


def mobile_search(args) -> None:
    """The largest `--mobile-sizes` and widest `--mobile-widths` whose best quantisation renders
    at `--target-fps`, and the `voxceleb2_mobile` preset's render time per quantisation."""
    import tfrf
    from tfrf.benchmarks.inputs import config_inputs
    from tfrf.benchmarks.tflite_calls import tflite_latency
    from tfrf.export import export_generator
    from tfrf.export.tflite import convert, runtime_name

    budget = 1.0 / args.target_fps
    print(f"\n== mobile search: cached render >= {args.target_fps:g} fps, K = 2, {args.threads} threads, "
          f"runtime {runtime_name()} ==")
    found = []
    for size in args.mobile_sizes:
        for width in args.mobile_widths:
            config = tfrf.ModelConfig.preset("voxceleb2", image_height=size, image_width=size, width_multiplier=width)
            generator = export_generator(config, tflite=True)
            best = None
            for quantize in ("none", "dynamic-int8", "full-int8"):
                cached, _ = tflite_latency(convert(generator, 2, quantize), config_inputs(config, 1, 2), args.threads,
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
    generator = export_generator(config, tflite=True)
    for quantize in ("none", "full-int8"):
        cached, _ = tflite_latency(convert(generator, 2, quantize), config_inputs(config, 1, 2), args.threads,
                                   args.repeats)
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


def interleaved_render_seconds(runners: Dict[Hashable, Callable[[], object]], rounds: int,
                               calls_per_turn: int = 1) -> Dict[Hashable, float]:
    """Best time of one call of each runner over `rounds` interleaved rounds of turns of
    `calls_per_turn` calls, after one warm-up call each (`tfrf.benchmarks.timing.interleaved_seconds`)."""
    times = interleaved_seconds(runners, rounds, calls_per_turn)
    return {label: min(values, default=float("inf")) for label, values in times.items()}


def mobile_compare(args) -> None:
    """`--mobile-compare`: every `mobile_models` network in float32 and full-int8, timed interleaved."""
    from tfrf.benchmarks.inputs import config_inputs
    from tfrf.benchmarks.tflite_profile import op_census
    from tfrf.benchmarks.tflite_calls import render_calls
    from tfrf.export import export_generator
    from tfrf.export.tflite import convert, runtime_name

    print(f"\n== mobile compare: cached render, K = 2, {args.threads} threads, interleaved best of "
          f"{args.compare_rounds} rounds of {args.compare_calls} call(s) per model, runtime {runtime_name()} ==")
    runners, notes = {}, {}
    for label, config in mobile_models(args).items():
        generator = export_generator(config, tflite=True)
        parameters = sum(int(np.prod(variable.shape)) for variable in generator.trainable_variables)
        inputs = config_inputs(config, 1, 2)
        for quantize in ("none", "full-int8"):
            flatbuffer = convert(generator, 2, quantize)
            census = op_census(flatbuffer, "render")
            key = (label, quantize)
            runners[key], _ = render_calls(flatbuffer, inputs, args.threads)
            notes[key] = (f"{config.image_height}x{config.image_width} width {config.width_multiplier:g} "
                          f"min_channels {config.min_channels} {config.full_resolution}, "
                          f"{parameters / 1e3:.0f} k parameters, {sum(census.values())} render ops")
    best = interleaved_render_seconds(runners, args.compare_rounds, args.compare_calls)
    for (label, quantize), seconds in best.items():
        print(f"  {label:>30} {quantize:>9}: render {seconds * 1e3:7.1f} ms ({1 / seconds:5.1f} fps)  "
              f"[{notes[(label, quantize)]}]", flush=True)
