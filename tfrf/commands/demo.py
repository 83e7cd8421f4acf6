"""`tfrf demo`: see the method learn on the built-in synthetic chairs, on CPU, in minutes.

    tfrf demo [--out runs/demo]

Generates (or reads from the cache) the synthetic multi-view chairs, trains stage 1 (flow
warm-up) and stage 2 (whole generator + discriminator) with the `demo` training preset, then
scores held-out objects at K = 1, 2, 4 (L1, PSNR, SSIM) against the untrained model and the
"copy the source view nearest in azimuth" baseline. Writes to `--out`: gallery.png,
internals.png, metrics.json, config.json (plus checkpoints and TensorBoard logs; a rerun with
the same `--out` resumes or reuses them).

The library half is `tfrf.training.demo.run_demo`; `run` is the thin command.
"""
from __future__ import annotations

import os

from tfrf.commands.common import add_budget_arguments

DEFAULT_OUT = os.path.join("runs", "demo")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="train and evaluate on the built-in synthetic chairs (CPU, minutes)",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--eval-examples", type=int, help="test tuples scored per K")
    add_budget_arguments(parser, "the demo preset's")
    parser.set_defaults(func=run)


def demo_config(args=None):
    """The `demo` TrainConfig with the command-line overrides."""
    from tfrf.training.config import TrainConfig

    overrides = {}
    for name in ("flow_steps", "full_steps", "batch_size", "train_objects", "test_objects", "eval_examples", "seed"):
        value = getattr(args, name, None) if args is not None else None
        if value is not None:
            overrides[name] = value
    return TrainConfig.preset("demo", **overrides)


def run(args) -> int:
    from tfrf.training.demo import run_demo

    run_demo(demo_config(args), args.out, cache_dir=args.cache_dir, verbose=0 if args.quiet else 1)
    return 0
