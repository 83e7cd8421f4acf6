"""The held-out data a report scores: the test split, its fixed test tuples per K, target keypoints.

The data is named as on every command line (docs/runs.md): a prepared TFDS
version folder, a TFDS data_dir with `--dataset NAME`, or `synthetic` for the built-in chairs. When
no `--data-dir` is given, the data a run trained on is read from `RUN/data.json` (`write_run_data`,
which every `tfrf.training.run.TrainingRun` calls: `tfrf train`, `tfrf demo`, the ablation).

The built-in chairs take `--dataset misaligned` for their variant of jittered cameras and
`--dataset misaligned_sources` for jittered sources with targets at their nominal cameras
(`tfrf.data.synthetic`); a run records it in `data.json` as its `dataset`. They carry ground truth
(`EvaluationData.ground_truth`: per-level flow and visibility of every tuple), which the mechanism
metrics use (`tfrf.evaluation.mechanism`).

Test tuples: the fixed, seeded ones stored beside prepared data (`test_tuples_k{K}.npy`, what
everyone scores); for the built-in chairs, or a K not stored, drawn with seed 0 / the run's seed
(`tfrf.data.tuples.held_out_tuples`). `--max-examples` thins them evenly, as `tfrf demo` does.

Mask-LPIPS reads the target keypoints `[18, 2]` (y, x) of the prepared data's pose feature (the
`keypoints18` encoder only) at the evaluated size: a resized image moves a stored pixel centre y to
`(y + 0.5) * H_eval / H_stored - 0.5` (half-pixel centres, as `tf.image.resize` moves the heatmaps
the generator saw); missing keypoints stay -1.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

SYNTHETIC = "synthetic"
# `--dataset` of the built-in chairs: the variant of jittered (uncalibrated) cameras.
SYNTHETIC_VARIANTS = (None, "aligned", "misaligned", "misaligned_sources")
RUN_DATA_FILE = "data.json"
KEYPOINT_ENCODER = "keypoints18"


# --- what a run trained on -------------------------------------------------------------------


def write_run_data(run_dir: str, data_dir: str, dataset: Optional[str] = None, **synthetic: Any) -> str:
    """Record the data of a run as `RUN/data.json`: `{"data_dir", "dataset", ...}` (a data_dir
    other than `synthetic` is stored as an absolute path; `synthetic` takes `seed`,
    `test_objects`, `image_size`, `cache_dir`). Returns the path."""
    from tfrf.io import atomic_write_text

    record: Dict[str, Any] = {"data_dir": data_dir if data_dir == SYNTHETIC else os.path.abspath(data_dir),
                              "dataset": dataset}
    if data_dir == SYNTHETIC:
        record.update({key: value for key, value in synthetic.items() if value is not None})
    path = os.path.join(run_dir, RUN_DATA_FILE)
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return path


def read_run_data(run_dir: str) -> Optional[Dict[str, Any]]:
    """The `RUN/data.json` record, or None when the run does not say what it trained on."""
    path = os.path.join(run_dir, RUN_DATA_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as stream:
            record = json.load(stream)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not JSON: {error}") from None
    if not isinstance(record, dict) or not isinstance(record.get("data_dir"), str):
        raise ValueError(f"{path} must hold an object with a 'data_dir' string")
    return record


# --- the test split --------------------------------------------------------------------------


@dataclasses.dataclass
class EvaluationData:
    """One held-out split and how to draw its test tuples.

    Attributes:
        table: the `tfrf.data.pipeline.ViewTable` of the split.
        description: what the data is, for the report (`data_dir`, `dataset`, `split`, ...).
        builder: the prepared TFDS builder (None for the built-in chairs).
        seed: seed of the tuples drawn when none are stored (and of the built-in chairs).
        misaligned: the built-in chairs' variant of jittered cameras.
        nominal_targets: with `misaligned`, the targets at their nominal cameras
            (`misaligned_sources`): the ground truth goes to those.
    """

    table: Any
    description: Dict[str, Any]
    builder: Any = None
    seed: int = 0
    misaligned: bool = False
    nominal_targets: bool = False

    @property
    def has_ground_truth(self) -> bool:
        """The built-in chairs: flow and visibility are known for every pair of views."""
        return self.builder is None and self.description.get("data_dir") == SYNTHETIC

    def ground_truth(self, tuples: np.ndarray, image_size: int,
                     levels: Sequence[str] = ("h4", "h8")) -> Dict[str, Dict[str, np.ndarray]]:
        """Ground truth of test tuples at `levels` ("h", "h4", "h8") of an `image_size` model
        (`tfrf.data.synthetic.tuple_ground_truth`)."""
        if not self.has_ground_truth:
            raise ValueError("this data has no ground-truth flow (only the built-in chairs have)")
        from tfrf.data import synthetic

        return synthetic.tuple_ground_truth(self.table.groups, self.table.order, tuples, image_size,
                                            split=self.description.get("split", "test"), misaligned=self.misaligned,
                                            seed=self.description.get("seed", self.seed), levels=levels,
                                            nominal_target=self.nominal_targets)

    @property
    def has_keypoints(self) -> bool:
        return self.table.pose_encoder == KEYPOINT_ENCODER

    @property
    def stored_size(self) -> Tuple[int, int]:
        return tuple(self.table.image_shape[:2])

    def test_tuples(self, k: int, max_examples: Optional[int] = None) -> Tuple[np.ndarray, str]:
        """The fixed test tuples of K (int64 `[M, K+1]`, thinned to `max_examples`) and where they
        came from (the stored file, or "drawn with seed S")."""
        from tfrf.data.tuples import held_out_tuples

        data_dir = self.builder.data_dir if self.builder is not None else None
        return held_out_tuples(self.table, k, self.seed, max_examples, data_dir=data_dir)

    def target_keypoints(self, indices: Sequence[int], size: Tuple[int, int]) -> np.ndarray:
        """Keypoints `[n, 18, 2]` (y, x) of images `indices` at `size` = (H, W), -1 where missing."""
        if not self.has_keypoints:
            raise ValueError(f"target keypoints need keypoint poses ({KEYPOINT_ENCODER}); this data has "
                             f"{self.table.pose_encoder!r} poses")
        keypoints = np.stack([np.asarray(self.table.pose(int(i)), np.float64) for i in indices])
        return scale_keypoints(keypoints, self.stored_size, size)


def scale_keypoints(keypoints: np.ndarray, stored_size: Tuple[int, int], size: Tuple[int, int]) -> np.ndarray:
    """Keypoints `[..., 18, 2]` (y, x) at `stored_size` moved to `size` with half-pixel centres;
    missing (any coordinate < 0) ones become (-1, -1)."""
    keypoints = np.asarray(keypoints, np.float64)
    present = (keypoints >= 0).all(axis=-1, keepdims=True)
    scale = np.asarray(size, np.float64) / np.asarray(stored_size, np.float64)
    return np.where(present, (keypoints + 0.5) * scale - 0.5, -1.0)


def open_data(data_dir: str, dataset: Optional[str] = None, *, seed: int = 0, test_objects: Optional[int] = None,
              image_size: int = 64, cache_dir: Optional[str] = None, verbose: bool = True) -> EvaluationData:
    """The test split of `--data-dir` (`synthetic`: the built-in chairs' held-out objects at
    `image_size`, `test_objects` of them with `seed`; `dataset="misaligned"` their variant of
    jittered cameras, "misaligned_sources" that of jittered sources and nominal targets)."""
    if data_dir == SYNTHETIC:
        from tfrf.data import synthetic

        variant = synthetic.variant_arguments(dataset)
        table = synthetic.load_table("test", cache_dir=cache_dir, seed=seed, num_objects=test_objects,
                                     image_size=image_size, verbose=verbose, **variant)
        objects = test_objects or synthetic.DEFAULT_NUM_OBJECTS["test"]
        description = {"data_dir": SYNTHETIC, "split": "test", "objects": objects, "seed": seed,
                       "image_size": image_size, "images": len(table)}
        if variant["misaligned"]:
            description["variant"] = dataset
        return EvaluationData(table, description, builder=None, seed=seed, **variant)
    from tfrf.data.pipeline import table_from_tfds
    from tfrf.data.prepared import open_prepared

    builder = open_prepared(data_dir, dataset)
    if "test" not in builder.info.splits:
        raise ValueError(f"--data-dir {data_dir}: {builder.name} has no test split (splits: "
                         f"{sorted(builder.info.splits)})")
    table = table_from_tfds(builder, "test")
    description = {"data_dir": os.path.abspath(os.fspath(builder.data_dir)), "dataset": builder.name,
                   "split": "test", "images": len(table), "pose_encoder": table.pose_encoder}
    return EvaluationData(table, description, builder=builder, seed=0)


def data_of_runs(run_dirs: Sequence[str]) -> Optional[Dict[str, Any]]:
    """The one data record the runs share (`RUN/data.json`), or None if a run has none.

    Raises:
        ValueError: the runs trained on different data (give --data-dir).
    """
    records = [read_run_data(run) for run in run_dirs]
    if not records or any(record is None for record in records):
        return None
    first = {key: records[0].get(key) for key in ("data_dir", "dataset")}
    for run, record in zip(run_dirs[1:], records[1:]):
        if {key: record.get(key) for key in ("data_dir", "dataset")} != first:
            raise ValueError(f"runs {run_dirs[0]} and {run} trained on different data ({first['data_dir']} vs "
                             f"{record['data_dir']}); give --data-dir")
    return records[0]


# --- the data of the runs a report scores ----------------------------------------------------


def run_training_config(run_dir: Optional[str]) -> Dict[str, Any]:
    """The run's `config.json` as a dict ({} without one)."""
    if not run_dir:
        return {}
    path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as stream:
        try:
            values = json.load(stream)
        except json.JSONDecodeError:
            return {}
    return values if isinstance(values, dict) else {}


def default_ks(run_dir: Optional[str]) -> List[int]:
    """The K values the run's config asks to evaluate (`eval_ks`), else [1]."""
    ks = run_training_config(run_dir).get("eval_ks")
    return [int(k) for k in ks] if ks else [1]


def run_directories(run_dirs: Sequence[str], weights: Sequence[str] = ()) -> List[Optional[str]]:
    """The run of every model: each run directory, then the run holding each weights path (or None)."""
    from tfrf.runs import find_run_directory, is_checkpoint_prefix

    found: List[Optional[str]] = list(run_dirs)
    for path in weights:
        exists = os.path.exists(path) or is_checkpoint_prefix(path)
        found.append(find_run_directory(path) if exists else None)
    return found


def data_for_runs(run_dirs: Sequence[Optional[str]], data_dir: Optional[str] = None, dataset: Optional[str] = None,
                  *, image_size: int, test_objects: Optional[int] = None, cache_dir: Optional[str] = None,
                  verbose: bool = True) -> EvaluationData:
    """The `EvaluationData` of `data_dir`, or (None) of what the runs trained on (`RUN/data.json`).

    For the built-in chairs the seed, held-out objects, size and cache come from the record, then
    the first run's config; `test_objects` and `cache_dir` given here win, `image_size` is the
    fall-back size (the model's).

    Raises:
        ValueError: no `data_dir` and a run that does not record its data, or runs that trained on
            different data.
    """
    record = None
    if data_dir is None:
        record = data_of_runs(run_dirs) if all(run_dirs) else None
        if record is None:
            raise ValueError("give --data-dir: the run does not record its data (no RUN/data.json)")
        data_dir, dataset = record["data_dir"], record.get("dataset")
    if data_dir != SYNTHETIC:
        return open_data(data_dir, dataset)
    record = record or {}
    training = run_training_config(run_dirs[0] if run_dirs else None)
    return open_data(SYNTHETIC, dataset, seed=record.get("seed", training.get("seed", 0)),
                     test_objects=test_objects or record.get("test_objects") or training.get("test_objects"),
                     image_size=record.get("image_size") or image_size, cache_dir=cache_dir or record.get("cache_dir"),
                     verbose=verbose)
