"""`tfrf bench`: median forward latency and peak memory, tfa vs gather warp, with and without XLA."""
from __future__ import annotations

import json


def register(subparsers):
    parser = subparsers.add_parser("bench", help="forward latency and peak memory of a preset's generator")
    parser.add_argument("--preset", default="deepfashion")
    parser.add_argument("--architecture", choices=("rf", "gfla"), default=None,
                        help="the generator: rf (default) or gfla (K = 1 only)")
    parser.add_argument("--k", type=int, nargs="+", default=None,
                        help="numbers of sources (default 1 2 4; 1 for gfla)")
    parser.add_argument("--backends", nargs="+", default=["tfa", "gather"], choices=["tfa", "gather"])
    parser.add_argument("--xla", choices=["off", "on", "both"], default="both")
    parser.add_argument("--repeats", type=int, default=5, help="timed forward passes per configuration")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--width", type=float, default=None, help="override the width multiplier")
    parser.add_argument("--mixed-precision", action="store_true", help="mixed_float16 policy (GPU)")
    parser.add_argument("--json", default=None, help="also write all results to this JSON file")
    parser.set_defaults(func=run)


def run(args) -> int:
    from tfrf.benchmarks.forward import format_result, run_all
    from tfrf.io import atomic_write_text

    xla_modes = {"off": [False], "on": [True], "both": [False, True]}[args.xla]
    ks = args.k or ([1] if args.architecture == "gfla" else [1, 2, 4])
    results = []
    for result in run_all(args.preset, ks, args.backends, xla_modes, repeats=args.repeats,
                          batch_size=args.batch_size, width=args.width, mixed_precision=args.mixed_precision,
                          architecture=args.architecture):
        print(format_result(result), flush=True)
        results.append(result)
    if args.json:
        atomic_write_text(args.json, json.dumps(results, indent=2))
    return 0
