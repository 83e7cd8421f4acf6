"""`tfrf summary`: the generator's layer table, parameter count and FLOPs per generated image."""
from __future__ import annotations

import json


def register(subparsers):
    parser = subparsers.add_parser("summary", help="layer table, parameters and FLOPs of a preset's generator")
    parser.add_argument("--preset", default="synthetic", help="ModelConfig preset (default: synthetic)")
    parser.add_argument("--k", type=int, nargs="+", default=[1], help="numbers of sources to count FLOPs for")
    parser.add_argument("--width", type=float, default=None, help="override the width multiplier")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.set_defaults(func=run)


def run(args) -> int:
    from tfrf.config import ModelConfig
    from tfrf.profiling import build_generator, component_table, count_flops, format_table

    overrides = {"warp_backend": "gather"}
    if args.width is not None:
        overrides["width_multiplier"] = args.width
    config = ModelConfig.preset(args.preset, **overrides)
    if any(k < 1 for k in args.k):
        raise SystemExit(f"--k must be >= 1, got {args.k}")
    generator = build_generator(config)
    rows = component_table(generator)
    params = generator.count_params()
    flops = {k: count_flops(generator, k) for k in args.k}
    if args.json:
        print(json.dumps({"config": config.to_dict(), "parameters": params, "flops_per_image": flops}, indent=2))
        return 0
    print(f"Generator for preset {args.preset!r}: {config.image_height}x{config.image_width}, "
          f"{config.pose_channels} pose channels, width x{config.width_multiplier}")
    print(format_table(rows))
    print(f"\ntotal parameters: {params:,}")
    for k, value in flops.items():
        print(f"FLOPs per generated image, K={k}: {value / 1e9:,.2f} GFLOP")
    return 0
