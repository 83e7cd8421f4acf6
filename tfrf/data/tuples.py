"""K+1 tuples of views: K sources and one target that share a group.

A prepared dataset stores every image once, with its group (identity, object, sequence or
video); tuples are drawn here, in numpy, so that any K works without rebuilding the data. A
tuple is a row of K+1 distinct image indices of one group: columns 0..K-1 are the sources,
column K is the target.

- `draw_tuples`: random tuples, one per eligible target (training draws them afresh each epoch).
- `fixed_test_tuples`: a deterministic, seeded list (at most 12,000 per K, as in the
  multi-source literature), written beside the prepared data so that everyone scores the same
  tuples.
- `save_tuples` / `load_tuples`: atomic `.npy` (or readable `.json`) files.
- `held_out_tuples`: the test tuples every evaluation scores: those stored beside prepared data
  (`test_tuples_path`), else `fixed_test_tuples` of the table, evenly thinned (`thin_tuples`).
"""
from __future__ import annotations

import json
import math
import os
from typing import Optional, Tuple, Union

import numpy as np

from tfrf.io import atomic_write

MAX_TEST_TUPLES = 12000

RngLike = Union[np.random.Generator, int, None]


def _as_rng(rng: RngLike) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def _check_per_image(name: str, values, num_images: int, dtype) -> Optional[np.ndarray]:
    if values is None:
        return None
    values = np.asarray(values)
    if values.shape != (num_images,):
        raise ValueError(f"{name} must have shape [N] = [{num_images}] like groups, got {values.shape}")
    return values.astype(dtype)


def draw_tuples(
    groups,
    k: int,
    rng: RngLike,
    *,
    targets_ok=None,
    order=None,
    max_offset: Optional[int] = None,
    num_tuples: Optional[int] = None,
) -> np.ndarray:
    """Draws K+1 tuples of distinct images that share one group.

    Args:
        groups: int [N], the group (identity, object, sequence, video) of each image.
        k: number of sources K >= 1.
        rng: a `np.random.Generator`, or a seed for one.
        targets_ok: optional bool [N]; only these images may be targets (all may be sources).
        order: optional int [N] (e.g. a frame number); with `max_offset`, the sources of a
            target t must satisfy |order[s] - order[t]| <= max_offset.
        max_offset: the largest allowed order offset between a source and its target.
        num_tuples: how many tuples to draw; by default one per eligible target (a target is
            eligible when it has at least K candidate sources). With more tuples than eligible
            targets, targets repeat.

    Returns:
        int64 [M, K+1]: sources in columns 0..K-1, the target in column K. Without
        `num_tuples`, rows are in increasing target order.
    """
    if k < 1:
        raise ValueError(f"k (the number of sources) must be >= 1, got {k}")
    if (order is None) != (max_offset is None):
        raise ValueError("order and max_offset go together: give both or neither")
    if max_offset is not None and max_offset < 0:
        raise ValueError(f"max_offset must be >= 0, got {max_offset}")
    groups = np.asarray(groups)
    if groups.ndim != 1:
        raise ValueError(f"groups must have shape [N], got {groups.shape}")
    num_images = groups.shape[0]
    targets_ok = _check_per_image("targets_ok", targets_ok, num_images, bool)
    order = _check_per_image("order", order, num_images, np.int64)
    rng = _as_rng(rng)

    targets, candidates = _eligible_targets(groups, k, targets_ok, order, max_offset)
    if num_tuples is not None:
        if num_tuples < 0:
            raise ValueError(f"num_tuples must be >= 0, got {num_tuples}")
        if not targets.size and num_tuples:
            raise ValueError(f"no image has {k} candidate sources in its group; cannot draw tuples")
        picks = rng.choice(targets.size, size=num_tuples, replace=num_tuples > targets.size)
    else:
        picks = np.arange(targets.size)

    tuples = np.empty((picks.size, k + 1), dtype=np.int64)
    for row, pick in enumerate(picks):
        pool = candidates[pick]
        tuples[row, :k] = pool[rng.choice(pool.size, size=k, replace=False)]
        tuples[row, k] = targets[pick]
    return tuples


def _eligible_targets(groups, k, targets_ok, order, max_offset):
    """Targets with at least `k` candidate sources, and those candidates (same group, in
    the order window when one is given, never the target itself)."""
    sort_keys = (groups,) if order is None else (order, groups)
    by_group = np.lexsort(sort_keys)
    sorted_groups = groups[by_group]
    boundaries = np.flatnonzero(np.diff(sorted_groups)) + 1
    targets, candidates = [], []
    for members in np.split(by_group, boundaries):
        if members.size < k + 1:
            continue
        member_order = None if order is None else order[members]
        for position, target in enumerate(members):
            if targets_ok is not None and not targets_ok[target]:
                continue
            if member_order is None:
                pool = np.delete(members, position)
            else:
                low = np.searchsorted(member_order, member_order[position] - max_offset, "left")
                high = np.searchsorted(member_order, member_order[position] + max_offset, "right")
                pool = np.concatenate([members[low:position], members[position + 1:high]])
            if pool.size >= k:
                targets.append(target)
                candidates.append(pool)
    targets = np.asarray(targets, dtype=np.int64)
    ordering = np.argsort(targets, kind="stable")
    return targets[ordering], [candidates[i] for i in ordering]


def fixed_test_tuples(groups, k: int, seed: int, *, max_tuples: int = MAX_TEST_TUPLES, **same_kwargs) -> np.ndarray:
    """A deterministic list of test tuples: one per eligible target, at most `max_tuples`.

    The same `(groups, k, seed)` always gives the same tuples; when there are more eligible
    targets than `max_tuples`, a seeded subset is kept (in increasing target order).

    Args:
        groups: int [N], the group of each image.
        k: number of sources.
        seed: the seed of the list (the same for everyone who scores on this split).
        max_tuples: the largest number of tuples kept.
        **same_kwargs: `targets_ok`, `order`, `max_offset`, as for `draw_tuples`.
    """
    if "num_tuples" in same_kwargs:
        raise ValueError("fixed_test_tuples takes max_tuples, not num_tuples")
    rng = np.random.default_rng([int(seed), int(k)])
    tuples = draw_tuples(groups, k, rng, **same_kwargs)
    if len(tuples) > max_tuples:
        keep = np.sort(rng.choice(len(tuples), size=max_tuples, replace=False))
        tuples = tuples[keep]
    return tuples


def check_tuples(tuples, groups, k: Optional[int] = None) -> np.ndarray:
    """Validates tuples against `groups`: int [M, K+1], in range, distinct, one group per row.

    Returns the tuples as int64; raises ValueError naming the first bad row.
    """
    tuples = np.asarray(tuples)
    groups = np.asarray(groups)
    if tuples.ndim != 2 or tuples.shape[1] < 2 or (k is not None and tuples.shape[1] != k + 1):
        expected = "[M, K+1]" if k is None else f"[M, {k + 1}]"
        raise ValueError(f"tuples must have shape {expected} with K >= 1, got {tuples.shape}")
    if not np.issubdtype(tuples.dtype, np.integer):
        raise ValueError(f"tuples must be integer indices, got dtype {tuples.dtype}")
    tuples = tuples.astype(np.int64)
    if tuples.size:
        bad = np.flatnonzero(((tuples < 0) | (tuples >= groups.shape[0])).any(axis=1))
        if bad.size:
            raise ValueError(f"tuple row {bad[0]} = {tuples[bad[0]].tolist()} has an index outside [0, {groups.shape[0]})")
        ordered = np.sort(tuples, axis=1)
        bad = np.flatnonzero((np.diff(ordered, axis=1) == 0).any(axis=1))
        if bad.size:
            raise ValueError(f"tuple row {bad[0]} = {tuples[bad[0]].tolist()} repeats an image")
        row_groups = groups[tuples]
        bad = np.flatnonzero((row_groups != row_groups[:, :1]).any(axis=1))
        if bad.size:
            raise ValueError(f"tuple row {bad[0]} = {tuples[bad[0]].tolist()} mixes groups {row_groups[bad[0]].tolist()}")
    return tuples




def save_tuples(path: str, tuples) -> None:
    """Writes tuples atomically: `.npy` (binary) or `.json` (a list of rows)."""
    tuples = np.asarray(tuples, dtype=np.int64)
    if tuples.ndim != 2:
        raise ValueError(f"tuples must have shape [M, K+1], got {tuples.shape}")
    path = os.fspath(path)
    if path.endswith(".npy"):
        atomic_write(path, lambda stream: np.save(stream, tuples, allow_pickle=False))
    elif path.endswith(".json"):
        text = json.dumps({"k": tuples.shape[1] - 1, "tuples": tuples.tolist()})
        atomic_write(path, lambda stream: stream.write(text.encode("utf-8")))
    else:
        raise ValueError(f"tuple file {path} must end in .npy or .json")


def load_tuples(path: str) -> np.ndarray:
    """Reads tuples written by `save_tuples`: int64 [M, K+1]."""
    path = os.fspath(path)
    if path.endswith(".npy"):
        tuples = np.load(path, allow_pickle=False)
    elif path.endswith(".json"):
        with open(path, encoding="utf-8") as stream:
            content = json.load(stream)
        tuples = np.asarray(content["tuples"], dtype=np.int64).reshape(-1, int(content["k"]) + 1)
    else:
        raise ValueError(f"tuple file {path} must end in .npy or .json")
    if tuples.ndim != 2 or tuples.shape[1] < 2:
        raise ValueError(f"tuple file {path} holds shape {tuples.shape}, expected [M, K+1] with K >= 1")
    return tuples.astype(np.int64)


def test_tuples_path(data_dir, k: int) -> str:
    """Where the fixed test tuples for K sources lie in a prepared version folder."""
    return os.path.join(os.fspath(data_dir), f"test_tuples_k{k}.npy")


def thin_tuples(tuples: np.ndarray, max_examples: Optional[int] = None) -> np.ndarray:
    """At most `max_examples` rows of `tuples`, evenly spaced (first and last kept)."""
    if max_examples is not None and len(tuples) > max_examples:
        tuples = tuples[np.linspace(0, len(tuples) - 1, max_examples).round().astype(int)]
    return tuples


def held_out_tuples(table, k: int, seed: int = 0, max_examples: Optional[int] = None,
                    data_dir=None) -> Tuple[np.ndarray, str]:
    """The fixed test tuples of K for `table` (a `tfrf.data.pipeline.ViewTable`), evenly thinned
    to at most `max_examples` rows, and where they came from: the file stored beside the
    prepared data in `data_dir` when there is one, else `fixed_test_tuples` drawn with `seed`."""
    if data_dir is not None and os.path.isfile(test_tuples_path(data_dir, k)):
        path = test_tuples_path(data_dir, k)
        return thin_tuples(load_tuples(path), max_examples), path
    drawn = fixed_test_tuples(table.groups, k, seed, **table.tuple_kwargs())
    return thin_tuples(drawn, max_examples), f"drawn with seed {seed}"


def tuples_per_epoch(table, k: int) -> int:
    """How many training tuples one epoch of `table` (a `ViewTable`) holds: one per eligible
    target (an image with at least K candidate sources in its group, within the table's
    `max_offset` of it where the data has one)."""
    return len(draw_tuples(table.groups, k, 0, **table.tuple_kwargs(table.max_offset)))


DEFAULT_MAX_EPOCHS = 100


def capped_steps(steps: int, tuples_per_epoch: int, batch_size: int, max_epochs: float = DEFAULT_MAX_EPOCHS) -> int:
    """A preset's `steps` of one stage, or fewer where they would pass over the training tuples
    more than `max_epochs` times: the default length of `tfrf train` on a small dataset (a
    preset's step count is the paper's, for the full dataset)."""
    return min(int(steps), steps_for_epochs(max_epochs, tuples_per_epoch, batch_size))


def steps_for_epochs(epochs: float, tuples_per_epoch: int, batch_size: int) -> int:
    """The training steps of batch `batch_size` that make `epochs` passes over `tuples_per_epoch`
    tuples (at least 1).

    Raises:
        ValueError: `epochs` is not a positive finite number.
    """
    if not 0 < epochs < float("inf"):
        raise ValueError(f"--epochs must be a positive number, got {epochs}")
    return max(1, math.ceil(epochs * tuples_per_epoch / batch_size))
