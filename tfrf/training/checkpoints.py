"""Stage checkpoints: what they hold, which one a stage resumes from, and what killed writes leave.

A checkpoint (`checkpoint_of`) holds both networks and both optimisers with their step. What a
stage resumes from is `resume_checkpoint`'s choice: the checkpoint the directory's state file
names when it reads back whole and finite; else, with a printed note, the latest intact `ckpt-N`
present (a missing or unreadable state file is rebuilt from the files, a truncated or corrupt
latest checkpoint falls back to the one before it); a stage with checkpoint files of which none
is intact is refused, never restarted at step 0. `remove_run_temporaries` removes what killed
writes of the run files left behind.
"""
from __future__ import annotations

import fnmatch
import os
import re
import sys
from typing import List, Optional, Sequence

import numpy as np
import tensorflow as tf

from tfrf.io import atomic_write, atomic_write_text
from tfrf.training import distribute
from tfrf.training.callbacks import training_step
from tfrf.training.config import STAGES
from tfrf.training.model import TrainingModel


def checkpoint_of(model: TrainingModel) -> tf.train.Checkpoint:
    """What a stage checkpoint holds: both networks and both optimisers (with their step).

    The optimisers are saved without a mixed-precision `LossScaleOptimizer` wrapper (its
    dynamic loss scale restarts on resume), so a run may be resumed with or without
    mixed precision."""
    inner = lambda optimizer: getattr(optimizer, "inner_optimizer", optimizer)  # noqa: E731
    items = {"generator": model.generator, "generator_optimizer": inner(model.generator_optimizer)}
    if model.discriminator is not None:
        items["discriminator"] = model.discriminator
    if model.discriminator_optimizer is not None:
        items["discriminator_optimizer"] = inner(model.discriminator_optimizer)
    return tf.train.Checkpoint(**items)


def restore_checkpoint(checkpoint: tf.train.Checkpoint, path: str, model: TrainingModel) -> None:
    """Restore a stage checkpoint, checking that it fits.

    Every object of the run must be in the checkpoint, except the dynamic loss scale of a run
    resumed with mixed precision from a float32 checkpoint (it starts afresh): then the networks
    are checked alone and the optimiser step must be the checkpoint's."""
    status = checkpoint.restore(path)
    scaled = any(isinstance(optimizer, tf.keras.mixed_precision.LossScaleOptimizer)
                 for optimizer in (model.generator_optimizer, model.discriminator_optimizer))
    if not scaled or any("loss_scale" in name for name, _ in tf.train.list_variables(path)):
        status.assert_existing_objects_matched()
        return
    status.expect_partial()
    networks = {"generator": model.generator}
    if model.discriminator is not None:
        networks["discriminator"] = model.discriminator
    tf.train.Checkpoint(**networks).restore(path).expect_partial().assert_existing_objects_matched()
    if checkpoint_step(path) and training_step(model) != checkpoint_step(path):
        raise ValueError(f"{path}: the optimiser step {training_step(model)} is not the checkpoint's")


def save_weights_atomically(network: tf.keras.Model, path: str) -> None:
    """`network.save_weights` (HDF5) through a temporary file and a rename.

    Raises:
        OSError: the write failed (a full disk), naming `path`; nothing of it is left.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temporary = os.path.join(directory, f".tmp-{os.getpid()}-{os.path.basename(path)}")
    try:
        network.save_weights(temporary)
        with open(temporary, "rb") as stream:
            data = stream.read()
        atomic_write(path, lambda out: out.write(data))
    except OSError as error:
        raise distribute.write_failure(path, error, "weights write") from None
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


# --- which checkpoint a stage resumes from ---------------------------------------------------

_CHECKPOINT_INDEX = re.compile(r"^ckpt-(\d+)\.index$")


def checkpoint_files(directory: str) -> List[str]:
    """The checkpoint prefixes `directory/ckpt-N` that have an index file, by increasing N."""
    if not os.path.isdir(directory):
        return []
    steps = sorted(int(match.group(1)) for match in map(_CHECKPOINT_INDEX.match, os.listdir(directory)) if match)
    return [os.path.join(directory, f"ckpt-{step}") for step in steps]


def checkpoint_problem(prefix: str, check_finite: bool = True) -> Optional[str]:
    """Why a stage could not resume from the checkpoint `prefix`, or None when it reads back whole
    (index and every tensor, whose checksums TensorFlow verifies) and, with `check_finite`, every
    float tensor is finite."""
    try:
        reader = tf.train.load_checkpoint(prefix)
        for name in sorted(reader.get_variable_to_shape_map()):
            value = reader.get_tensor(name)
            if check_finite and isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating) and \
                    not np.isfinite(value).all():
                return f"{name.replace('/.ATTRIBUTES/VARIABLE_VALUE', '')} holds NaN or inf"
    except Exception as error:  # noqa: BLE001  (truncated files surface as OpError, IndexError, ...)
        text = str(getattr(error, "message", None) or error).strip()
        return text.splitlines()[0][:200] if text else type(error).__name__
    return None


def _read_checkpoint_state(directory: str):
    """The directory's `CheckpointState`, or None when its state file cannot be parsed or names
    no checkpoint (what `tf.train.get_checkpoint_state` ignores with a warning)."""
    from google.protobuf import text_format
    from tensorflow.python.training.checkpoint_state_pb2 import CheckpointState

    try:
        with open(os.path.join(directory, distribute.CHECKPOINT_STATE), encoding="utf-8") as stream:
            state = text_format.Parse(stream.read(), CheckpointState())
    except (OSError, UnicodeDecodeError, text_format.ParseError):
        return None
    return state if state.model_checkpoint_path else None


def write_checkpoint_state(directory: str, latest: str, kept: Sequence[str]) -> None:
    """Write the directory's state file (what `tf.train.CheckpointManager` reads) atomically:
    `latest` and the `kept` checkpoints, as paths relative to the directory, each with its index
    file's time (the manager deletes only checkpoints listed with a time, oldest first)."""
    lines = [f'model_checkpoint_path: "{os.path.basename(latest)}"']
    lines += [f'all_model_checkpoint_paths: "{os.path.basename(prefix)}"' for prefix in kept]
    lines += [f"all_model_checkpoint_timestamps: {os.path.getmtime(prefix + '.index')!r}" for prefix in kept]
    atomic_write_text(os.path.join(directory, distribute.CHECKPOINT_STATE), "\n".join(lines) + "\n")


def resume_checkpoint(directory: str, *, write: bool = True, notes: bool = True) -> Optional[str]:
    """The checkpoint prefix a stage resumes from, None for a stage that has not saved one.

    The state file's latest checkpoint when it is intact (`checkpoint_problem`); else the latest
    intact `ckpt-N` below it (a corrupt latest checkpoint) or, when the state file is missing or
    unreadable, the latest intact `ckpt-N` of the directory. Such a fall-back is printed (with
    `notes`) and, with `write` (the chief), recorded in a rewritten state file. Checkpoints newer
    than an intact latest one (a write killed before the state file was updated) are ignored, as
    `tf.train.CheckpointManager` does: they are rewritten when the run reaches them again.

    Raises:
        ValueError: the directory has a state file or checkpoint files but no intact checkpoint.
    """
    present = checkpoint_files(directory)
    state_path = os.path.join(directory, distribute.CHECKPOINT_STATE)
    has_state = os.path.isfile(state_path)
    if not has_state and not present:
        return None
    state = _read_checkpoint_state(directory) if has_state else None
    if state is not None:
        recorded = os.path.join(directory, os.path.basename(state.model_checkpoint_path))
        if os.path.isfile(recorded + ".index"):
            problem = checkpoint_problem(recorded)
            if problem is None:
                return recorded
            reason = f"checkpoint {recorded} is unreadable ({problem})"
        else:
            reason = f"{state_path} names {os.path.basename(recorded)}, which is missing"
        candidates = [prefix for prefix in present if checkpoint_step(prefix) < checkpoint_step(recorded)]
    else:
        reason = f"{state_path} is " + ("unreadable" if has_state else "missing")
        candidates = present
    unreadable = {}
    chosen = None
    for prefix in reversed(candidates):
        problem = checkpoint_problem(prefix)
        if problem is None:
            chosen = prefix
            break
        unreadable[prefix] = problem
    listed = "; ".join(f"{os.path.basename(prefix)}: {problem}" for prefix, problem in unreadable.items())
    if chosen is None:
        raise ValueError(f"{reason}, and no other intact checkpoint is in {directory}"
                         + (f" ({listed})" if listed else "")
                         + f"; restore the checkpoint files, or delete {directory} to train that stage from step 0")
    if notes:
        also = f" (also unreadable: {listed})" if listed else ""
        print(f"note: {reason}; resuming from {chosen}, the latest intact checkpoint{also}", file=sys.stderr)
    if write:
        write_checkpoint_state(directory, chosen, [prefix for prefix in present
                                                   if checkpoint_step(prefix) <= checkpoint_step(chosen)])
    return chosen


def stage_has_progress(out_dir: str, stage: str) -> bool:
    """Whether `stage` of the run `out_dir` has saved anything: a checkpoint (or a state file) or
    its final generator weights."""
    directory = os.path.join(out_dir, "checkpoints", stage)
    return (os.path.isfile(os.path.join(directory, distribute.CHECKPOINT_STATE)) or bool(checkpoint_files(directory))
            or os.path.isfile(os.path.join(out_dir, f"generator_{stage}.weights.h5")))


def run_has_progress(out_dir: str) -> bool:
    """Whether any stage of the run `out_dir` completed a step (`stage_has_progress`): until then
    its config and data may be replaced by a rerun with other settings."""
    return any(stage_has_progress(out_dir, stage) for stage in STAGES)


# Temporary files of the run directory's atomic writes (`tfrf.io.atomic_write`: `.tmp-RANDOMNAME`;
# `save_weights_atomically`: `.tmp-PID-NAME`) that a killed process leaves.
RUN_TEMPORARIES = (".tmp-*config.json", ".tmp-*data.json", ".tmp-*train_options.json", ".tmp-*generator_*.weights.h5")


def remove_run_temporaries(out_dir: str) -> List[str]:
    """Delete the run files' temporaries (`RUN_TEMPORARIES`) that killed writes left in `out_dir`."""
    removed = []
    if os.path.isdir(out_dir):
        for name in sorted(os.listdir(out_dir)):
            path = os.path.join(out_dir, name)
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in RUN_TEMPORARIES) and os.path.isfile(path):
                try:
                    os.remove(path)
                except FileNotFoundError:
                    continue
                removed.append(name)
    return removed


def checkpoint_step(prefix: Optional[str]) -> int:
    """The step N of a checkpoint prefix `.../ckpt-N` (0 for None or another name)."""
    try:
        return int(prefix.rsplit("-", 1)[1]) if prefix else 0
    except ValueError:
        return 0
