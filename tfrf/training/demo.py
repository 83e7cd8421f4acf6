"""The main job of `tfrf demo`: the built-in chairs, both training stages, held-out scores and figures.

`run_demo(config, OUT)` loads (or generates and caches) the synthetic multi-view chairs, scores the
untrained model and the "copy the source view nearest in azimuth" baseline at the config's K
values, trains stage 1 and stage 2 (`tfrf.training.run.TrainingRun`: resumable, every run file
written), scores the trained model on the same fixed held-out tuples and writes `OUT/gallery.png`,
`OUT/internals.png` and `OUT/metrics.json`.
"""
from __future__ import annotations

import json
import os
import time
from typing import Dict, Optional

import tensorflow as tf

from tfrf import visualize
from tfrf.data import synthetic
from tfrf.evaluation.scores import evaluate
from tfrf.io import atomic_write_text
from tfrf.models.generator import INPUT_KEYS
from tfrf.training.config import STAGES
from tfrf.training.run import SYNTHETIC, RunData, TrainingRun

# Examples in the gallery (and the TensorBoard previews).
PREVIEW_SIZE = 6


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
    began = time.perf_counter()
    say = print if verbose else (lambda *a, **k: None)
    start = time.perf_counter()
    # The chairs at the renderer's own size; the pipeline resizes them to the model's.
    tables = [synthetic.load_table(split, cache_dir=cache_dir, seed=config.seed, verbose=bool(verbose),
                                   num_objects=getattr(config, f"{split}_objects")) for split in ("train", "test")]
    data = RunData(*tables, data_dir=SYNTHETIC, cache_dir=cache_dir)
    data_seconds = time.perf_counter() - start
    say(f"data: {len(data.train)} training and {len(data.preview)} held-out views ({data_seconds:.1f} s)")

    run = TrainingRun(config, data, out_dir, preview_size=PREVIEW_SIZE, verbose=verbose)
    generator = run.networks.generator
    evaluation = dict(ks=config.eval_ks, seed=config.seed, max_examples=config.eval_examples)
    start = time.perf_counter()
    before = evaluate(generator, data.preview, **evaluation)
    say(f"untrained model and baseline scored ({time.perf_counter() - start:.1f} s)")

    stages = {}
    for stage in STAGES:
        say(f"stage {stage}: {config.steps(stage)} steps of batch {config.batch_size}, K = {config.num_sources}")
        stages[stage] = run.train_stage(stage)

    start = time.perf_counter()
    after = evaluate(generator, data.preview, baseline=False, **evaluation)
    eval_seconds = time.perf_counter() - start
    preview = run.preview

    inputs = {key: tf.convert_to_tensor(preview[key]) for key in INPUT_KEYS}
    outputs = generator(inputs, training=False, return_intermediates=True)
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


