"""A run's config on resume: it must stay the one the run started with, except for how long the
stages run and how often they report (`RESUMABLE_FIELDS`)."""
from __future__ import annotations

import json
import os
from typing import Dict, List

from tfrf.io import atomic_write_text
from tfrf.training.checkpoints import run_has_progress
from tfrf.training.config import TrainConfig


# Fields a resumed run may change: how long the stages run and how often it reports.
RESUMABLE_FIELDS = ("flow_steps", "full_steps", "steps_per_epoch", "checkpoint_every", "summary_every",
                    "eval_examples", "eval_ks")


def config_differences(old: Dict[str, object], new: Dict[str, object], prefix: str = "") -> List[str]:
    """The dotted names of the fields whose values differ between two config dicts."""
    differences = []
    for key in sorted(set(old) | set(new)):
        left, right = old.get(key), new.get(key)
        if isinstance(left, dict) and isinstance(right, dict):
            differences += config_differences(left, right, f"{prefix}{key}.")
        elif (list(left) if isinstance(left, (list, tuple)) else left) != (
                list(right) if isinstance(right, (list, tuple)) else right):
            differences.append(f"{prefix}{key}")
    return differences


def write_config(config: TrainConfig, out_dir: str) -> str:
    """Write the resolved config as `OUT/config.json` (atomically); returns the path.

    A run directory that already has a config and a completed step (a resumed run,
    `run_has_progress`) keeps it: the new config must equal it except for `RESUMABLE_FIELDS`
    (then the file is updated), else a ValueError names the differing fields and nothing in the
    run is touched. The config of a run with no checkpoint yet is replaced.
    """
    path = check_config(config, out_dir)
    atomic_write_text(path, config.to_json() + "\n")
    return path


def check_config(config: TrainConfig, out_dir: str) -> str:
    """`write_config`'s check alone (what a non-chief worker does): returns the config's path.

    Raises:
        ValueError: the run has a completed step and its `OUT/config.json` is unreadable or differs
            outside `RESUMABLE_FIELDS`.
    """
    path = os.path.join(out_dir, "config.json")
    if os.path.isfile(path) and run_has_progress(out_dir):
        with open(path, encoding="utf-8") as stream:
            try:
                previous = json.load(stream)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path} is not a readable run config ({error}); use another --out") from None
        try:  # fields added since the run started compare as their defaults
            previous = TrainConfig.from_dict(previous).to_dict()
        except (TypeError, ValueError):
            pass
        differing = [name for name in config_differences(previous, config.to_dict())
                     if name not in RESUMABLE_FIELDS]
        if differing:
            shown = ", ".join(f"{name} ({_lookup(previous, name)!r} -> {_lookup(config.to_dict(), name)!r})"
                              for name in differing[:8])
            raise ValueError(f"run {out_dir} was started with another config; differing fields: {shown}. "
                             "Resume with the same settings or use a new --out")
    return path


def _lookup(values: Dict[str, object], dotted: str):
    for part in dotted.split("."):
        values = values.get(part) if isinstance(values, dict) else None
    return values
