"""Scores in memory at several K: L1, PSNR, SSIM of the generator's float outputs and of a copy
baseline, for `tfrf demo` and quick checks (`tfrf.evaluation.report` scores written images).

Every K scores a fixed, seeded list of test tuples (`tfrf.data.tuples.held_out_tuples`),
thinned evenly to at most `max_examples` so that every object is represented. The baseline
"copy the source view nearest in azimuth" predicts the target as the source whose azimuth bin is
circularly closest to the target's (ties: the closer elevation, then the first source); it
needs view poses (`[azimuth_bin, elevation_bin]`, the `view21` encoder).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from tfrf.data.tuples import held_out_tuples
from tfrf.data.pipeline import ViewTable, make_dataset
from tfrf.metrics import MetricAccumulator
from tfrf.models.generator import INPUT_KEYS
from tfrf.pose.views import NUM_AZIMUTH_BINS


def evaluate_generator(generator, table: ViewTable, tuples: np.ndarray, batch_size: int = 16) -> Dict[str, float]:
    """Mean L1, PSNR, SSIM (and `examples`) of `generator` on the given test tuples."""
    k = tuples.shape[1] - 1
    dataset = make_dataset(table, k, batch_size=batch_size, training=False, tuples=tuples,
                           image_size=generator.config.image_size)
    # Static shapes (one trace per batch shape): an unknown batch dimension can abort TF 2.15's oneDNN
    # remapper on graphs with a dead branch (the ablation baseline; see tfrf.evaluation.render).
    predict = tf.function(lambda inputs: generator(inputs, training=False))
    accumulator = MetricAccumulator()
    for batch in dataset:
        generated = predict({key: batch[key] for key in INPUT_KEYS})
        accumulator.update(generated, batch["target_image"])
    return accumulator.result()


def nearest_view_indices(table: ViewTable, tuples: np.ndarray) -> np.ndarray:
    """For each tuple, the index (into the table) of the source nearest the target in azimuth."""
    if table.pose_encoder != "view21":
        raise ValueError(f"nearest-azimuth baseline needs view poses (encoder 'view21'), got {table.pose_encoder!r}")
    poses = np.stack([np.asarray(table.pose(int(i))) for i in tuples.reshape(-1)]).reshape(*tuples.shape, -1)
    source_poses, target_pose = poses[:, :-1], poses[:, -1:]
    azimuth = np.abs(source_poses[..., 0] - target_pose[..., 0]) % NUM_AZIMUTH_BINS
    azimuth = np.minimum(azimuth, NUM_AZIMUTH_BINS - azimuth)
    elevation = np.abs(source_poses[..., 1] - target_pose[..., 1])
    choice = np.lexsort((np.arange(tuples.shape[1] - 1)[None].repeat(len(tuples), 0), elevation, azimuth), axis=-1)
    return tuples[np.arange(len(tuples)), choice[:, 0]]


def evaluate_nearest_view(table: ViewTable, tuples: np.ndarray, batch_size: int = 64) -> Dict[str, float]:
    """Mean L1, PSNR, SSIM of copying the source nearest the target in azimuth."""
    copies = nearest_view_indices(table, tuples)
    accumulator = MetricAccumulator()
    for start in range(0, len(tuples), batch_size):
        rows = slice(start, start + batch_size)
        prediction = np.stack([table.image(int(i)) for i in copies[rows]]).astype(np.float32) / 127.5 - 1.0
        target = np.stack([table.target_image(int(i)) for i in tuples[rows, -1]]).astype(np.float32) / 127.5 - 1.0
        accumulator.update(prediction, target)
    return accumulator.result()


def evaluate(generator, table: ViewTable, ks: Sequence[int] = (1, 2, 4), seed: int = 0,
             max_examples: Optional[int] = None, batch_size: int = 16,
             baseline: bool = True) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Scores per K: `{"model": {"1": {...}, ...}, "nearest_view": {...}}`.

    Args:
        generator: a `tfrf.models.Generator` (or None to score the baseline alone).
        table: the held-out split.
        ks: the K values.
        seed: seed of the fixed test tuples.
        max_examples: at most this many tuples per K.
        batch_size: generator batch.
        baseline: also score the nearest-azimuth copy (view datasets only).
    """
    results: Dict[str, Dict[str, Dict[str, float]]] = {}
    for k in ks:
        tuples, _ = held_out_tuples(table, k, seed, max_examples)
        if generator is not None:
            results.setdefault("model", {})[str(k)] = evaluate_generator(generator, table, tuples, batch_size)
        if baseline and table.pose_encoder == "view21":
            results.setdefault("nearest_view", {})[str(k)] = evaluate_nearest_view(table, tuples)
    return results
