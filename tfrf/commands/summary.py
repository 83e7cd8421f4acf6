"""`tfrf summary`: the generator's layer table, parameter count and FLOPs per generated image.

    tfrf summary --preset deepfashion                      # the residual-flow generator
    tfrf summary --preset deepfashion --architecture gfla  # GFLA's
    tfrf summary --run runs/gfla --json                    # the generator a run trains
"""
from __future__ import annotations

import json


def register(subparsers):
    parser = subparsers.add_parser("summary", help="layer table, parameters and FLOPs of a preset's generator")
    parser.add_argument("--preset", default="synthetic", help="ModelConfig preset (default: synthetic)")
    parser.add_argument("--architecture", choices=("rf", "gfla"),
                        help="with --preset: the generator, rf (default) or gfla")
    parser.add_argument("--run", help="a training run directory (or its config.json): summarise its generator")
    parser.add_argument("--k", type=int, nargs="+", default=[1], help="numbers of sources to count FLOPs for")
    parser.add_argument("--width", type=float, default=None, help="override the width multiplier")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.set_defaults(func=run)


def model_config(args):
    """The ModelConfig to summarise: the run's, or the preset's with `--architecture`."""
    from tfrf import runs
    from tfrf.config import ModelConfig

    overrides = {"warp_backend": "gather"}
    if args.width is not None:
        overrides["width_multiplier"] = args.width
    if args.run:
        config = runs.read_model_config(args.run)
        if args.architecture is not None and args.architecture != config.architecture:
            raise ValueError(f"--architecture {args.architecture} contradicts --run {args.run}, whose architecture "
                             f"is {config.architecture!r}")
        return config.replace(**overrides)
    if args.architecture is not None:
        overrides["architecture"] = args.architecture
    return ModelConfig.preset(args.preset, **overrides)


def run(args) -> int:
    from tfrf.benchmarks.flops import generator_flops
    from tfrf.benchmarks.summary import built_generator, component_table, format_table
    from tfrf.models import GENERATORS

    config = model_config(args)
    if any(k < 1 for k in args.k):
        raise SystemExit(f"--k must be >= 1, got {args.k}")
    limit = getattr(GENERATORS[config.architecture], "max_sources", None)
    if limit is not None and max(args.k) > limit:
        raise ValueError(f"--k {max(args.k)}: the {config.architecture} generator takes at most {limit} source(s)")
    generator = built_generator(config)
    rows = component_table(generator)
    params = generator.count_params()
    flops = {k: generator_flops(generator, k) for k in args.k}
    if args.json:
        print(json.dumps({"config": config.to_dict(), "parameters": params, "flops_per_image": flops}, indent=2))
        return 0
    print(f"{config.architecture} generator for preset {config.name!r}: {config.image_height}x{config.image_width}, "
          f"{config.pose_channels} pose channels, width x{config.width_multiplier}")
    print(format_table(rows))
    print(f"\ntotal parameters: {params:,}")
    for k, value in flops.items():
        print(f"FLOPs per generated image, K={k}: {value / 1e9:,.2f} GFLOP")
    return 0
