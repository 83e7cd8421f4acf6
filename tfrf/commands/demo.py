"""`tfrf demo`: see the method learn on the built-in synthetic chairs, on CPU, in minutes.

    tfrf demo [--out runs/demo]

Generates (or reads from the cache) the synthetic multi-view chairs, trains stage 1 (flow
warm-up) and stage 2 (whole generator + discriminator) with the `demo` training preset, then
scores held-out objects at K = 1, 2, 4 (L1, PSNR, SSIM) against the untrained model and the
"copy the source view nearest in azimuth" baseline. Writes to `--out`: gallery.png,
internals.png, metrics.json, config.json (plus checkpoints and TensorBoard logs; a rerun with
the same `--out` resumes or reuses them).

The library half (`run_demo`) is importable; `run` is the thin command.
"""
from __future__ import annotations

import json
import os
import time
from typing import Dict, Optional

DEFAULT_OUT = os.path.join("runs", "demo")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="train and evaluate on the built-in synthetic chairs (CPU, minutes)",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--flow-steps", type=int, help="stage-1 steps (default from the demo preset)")
    parser.add_argument("--full-steps", type=int, help="stage-2 steps (default from the demo preset)")
    parser.add_argument("--batch-size", type=int, help="training batch")
    parser.add_argument("--train-objects", type=int, help="synthetic training objects (54 views each)")
    parser.add_argument("--test-objects", type=int, help="synthetic held-out objects")
    parser.add_argument("--eval-examples", type=int, help="test tuples scored per K")
    parser.add_argument("--cache-dir", help="where the synthetic data is cached (default ~/.cache/tfrf/synthetic)")
    parser.add_argument("--seed", type=int, help="seed of data, weights and tuples")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
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


def _format_table(metrics: Dict) -> str:
    lines = [f"{'':<22}" + "".join(f"{'K=' + k:>24}" for k in metrics["trained"]),
             f"{'':<22}" + "".join(f"{'L1 / PSNR / SSIM':>24}" for _ in metrics["trained"])]
    for label, key in (("trained", "trained"), ("untrained", "untrained"), ("nearest-azimuth copy", "nearest_view")):
        if key not in metrics:
            continue
        cells = [f"{v['l1']:.3f} / {v['psnr']:5.2f} / {v['ssim']:.3f}" for v in metrics[key].values()]
        lines.append(f"{label:<22}" + "".join(f"{cell:>24}" for cell in cells))
    return "\n".join(lines)


def run_demo(config, out_dir: str, cache_dir: Optional[str] = None, verbose: int = 1) -> Dict:
    """Data, stage 1, stage 2, evaluation and figures; returns the metrics dict written."""
    import tensorflow as tf

    from tfrf import visualize
    from tfrf.data import synthetic
    from tfrf.io import atomic_write_text
    from tfrf.models.generator import INPUT_KEYS
    from tfrf.training import runner
    from tfrf.training.evaluate import evaluate

    began = time.perf_counter()
    os.makedirs(out_dir, exist_ok=True)
    runner.write_config(config, out_dir)
    from tfrf.evaluation.data import write_run_data  # `tfrf evaluate --run OUT` scores the same data

    write_run_data(out_dir, "synthetic", seed=config.seed, test_objects=config.test_objects,
                   image_size=config.model.image_height, cache_dir=cache_dir)
    say = print if verbose else (lambda *a, **k: None)

    start = time.perf_counter()
    tables = {split: synthetic.load_table(split, cache_dir=cache_dir, seed=config.seed, verbose=bool(verbose),
                                          num_objects=getattr(config, f"{split}_objects"))
              for split in ("train", "test")}
    data_seconds = time.perf_counter() - start
    say(f"data: {len(tables['train'])} training and {len(tables['test'])} held-out views ({data_seconds:.1f} s)")

    networks = runner.create_networks(config)
    evaluation = dict(ks=config.eval_ks, seed=config.seed, max_examples=config.eval_examples)
    start = time.perf_counter()
    before = evaluate(networks.generator, tables["test"], **evaluation)
    say(f"untrained model and baseline scored ({time.perf_counter() - start:.1f} s)")

    dataset_fn = runner.training_dataset_fn(tables["train"], config)
    preview = runner.preview_batch(tables["test"], config, size=6)
    stages = {}
    for stage in ("flow", "full"):
        say(f"stage {stage}: {config.steps(stage)} steps of batch {config.batch_size}, K = {config.num_sources}")
        stages[stage] = runner.train_stage(stage, networks, config, dataset_fn, out_dir, preview=preview,
                                           verbose=verbose)

    start = time.perf_counter()
    after = evaluate(networks.generator, tables["test"], baseline=False, **evaluation)
    eval_seconds = time.perf_counter() - start

    inputs = {key: tf.convert_to_tensor(preview[key]) for key in INPUT_KEYS}
    outputs = networks.generator(inputs, training=False, return_intermediates=True)
    visualize.save_png(os.path.join(out_dir, "gallery.png"), visualize.gallery(preview, outputs["image"].numpy()))
    visualize.save_png(os.path.join(out_dir, "internals.png"), visualize.internals(preview, outputs))

    metrics = {
        "trained": after["model"],
        "untrained": before["model"],
        "nearest_view": before.get("nearest_view", {}),
        "notes": {
            "l1": "mean absolute error of images in [-1, 1]",
            "psnr": "dB, max_val 2 on [-1, 1] images",
            "nearest_view": "copy of the source view nearest the target in azimuth",
            "examples": "fixed held-out test tuples per K (objects disjoint from training)",
        },
        "stages": {name: {key: value for key, value in result.items()} for name, result in stages.items()},
        "seconds": {"data": data_seconds, "final_evaluation": eval_seconds,
                    "total": time.perf_counter() - began},
    }
    atomic_write_text(os.path.join(out_dir, "metrics.json"), json.dumps(metrics, indent=2) + "\n")
    say(_format_table(metrics))
    say(f"wrote {out_dir}/gallery.png, internals.png, metrics.json, config.json "
        f"in {metrics['seconds']['total']:.0f} s")
    return metrics


def run(args) -> int:
    config = demo_config(args)
    run_demo(config, args.out, cache_dir=args.cache_dir, verbose=0 if args.quiet else 1)
    return 0
