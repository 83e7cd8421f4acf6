"""One loader for every model artefact a command takes: a run, a checkpoint, a weights file.

docs/runs.md: every command that needs a model takes
`--run RUN` (the run's config and its latest weights) or `--weights W` with `--config C` or
`--preset NAME`, where

- W is a run directory, a TF checkpoint prefix (a training checkpoint `RUN/checkpoints/full/ckpt-N`,
  or what `generator.save_weights(prefix)` writes) or a `.weights.h5` file;
- C is a run's `config.json` (a TrainConfig with its ModelConfig) or a ModelConfig JSON.

`--weights` inside a run directory finds the run's config by itself. A mismatch between the
weights and the config is one ValueError naming both.

    parser = ...
    runs.add_model_arguments(parser)
    generator = runs.load_generator_from_args(args)
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import re
from typing import Optional, Tuple

from tfrf.config import PRESETS, ModelConfig

CONFIG_FILE = "config.json"
_CHECKPOINT_INDEX = re.compile(r"^ckpt-(\d+)\.index$")
STAGE_ORDER = ("full", "flow")  # the latest stage first


def add_model_arguments(parser: argparse.ArgumentParser, *, allow_untrained: bool = False,
                        default_preset: Optional[str] = None) -> None:
    """Adds `--run`, `--weights`, `--config`, `--preset` (and `--untrained`) to `parser`."""
    group = parser.add_argument_group("model")
    group.add_argument("--run", help="a training run directory: its config.json and latest weights")
    group.add_argument("--weights", help="generator weights: a run directory, a checkpoint prefix "
                                         "(e.g. RUN/checkpoints/full/ckpt-4) or a .weights.h5 file")
    group.add_argument("--config", help="a run's config.json or a ModelConfig JSON (with --weights)")
    group.add_argument("--preset", choices=sorted(PRESETS),
                       help="model preset (with --weights, when no --config)"
                            + (f"; default {default_preset}" if default_preset else ""))
    parser.set_defaults(default_preset=default_preset)
    group.add_argument("--architecture", choices=("rf", "gfla"),
                       help="with --preset: the generator (rf, or GFLA's single-source model); a run's or a "
                            "--config's config already names its architecture")
    if allow_untrained:
        group.add_argument("--untrained", action="store_true",
                           help="a randomly initialised generator (to try the deployment path)")


# --- configs ---------------------------------------------------------------------------------


def read_model_config(path: str) -> ModelConfig:
    """The ModelConfig in a JSON file: a run's config.json (TrainConfig, its `model` field) or
    a ModelConfig JSON."""
    if os.path.isdir(path):
        path = os.path.join(path, CONFIG_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config {path} does not exist")
    try:
        with open(path, encoding="utf-8") as stream:
            values = json.load(stream)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"config {path} is not JSON: {error}") from None
    if not isinstance(values, dict):
        raise ValueError(f"config {path} must hold a JSON object, got {type(values).__name__}")
    if isinstance(values.get("model"), dict):  # a TrainConfig
        values = values["model"]
    known = set(ModelConfig.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"config {path}: unknown ModelConfig fields {unknown}")
    return ModelConfig.from_dict(values)


def find_run_directory(path: str) -> Optional[str]:
    """The run directory holding `path` (a run dir, a checkpoint or weights file inside one)."""
    candidate = os.path.abspath(path if os.path.isdir(path) else os.path.dirname(path))
    for _ in range(4):  # RUN/checkpoints/full/ckpt-N is three levels below RUN
        if os.path.isfile(os.path.join(candidate, CONFIG_FILE)):
            return candidate
        parent = os.path.dirname(candidate)
        if parent == candidate:
            break
        candidate = parent
    return None


# --- weights ---------------------------------------------------------------------------------


def is_checkpoint_prefix(path: str) -> bool:
    return os.path.isfile(path + ".index")


def latest_checkpoint(directory: str) -> Optional[str]:
    """The checkpoint a stage directory's state file names (`tf.train.latest_checkpoint`), or,
    when that file is missing or unreadable, its `ckpt-N` with the largest N that has an index."""
    import tensorflow as tf

    checkpoint = tf.train.latest_checkpoint(directory) if os.path.isdir(directory) else None
    if checkpoint or not os.path.isdir(directory):
        return checkpoint
    steps = [int(match.group(1)) for match in map(_CHECKPOINT_INDEX.match, os.listdir(directory)) if match]
    return os.path.join(directory, f"ckpt-{max(steps)}") if steps else None


def latest_run_weights(run_dir: str) -> str:
    """The latest generator weights of a run: the newest checkpoint of the latest stage
    (`latest_checkpoint`), else that stage's `generator_STAGE.weights.h5`."""
    for stage in STAGE_ORDER:
        checkpoint = latest_checkpoint(os.path.join(run_dir, "checkpoints", stage))
        if checkpoint:
            return checkpoint
        weights = os.path.join(run_dir, f"generator_{stage}.weights.h5")
        if os.path.isfile(weights):
            return weights
    raise FileNotFoundError(f"run {run_dir} has no weights yet (no checkpoints/full, checkpoints/flow "
                            "or generator_*.weights.h5)")


def resolve_weights(path: str) -> str:
    """A weights file or checkpoint prefix from a run dir, a checkpoint dir, a prefix or a file."""
    if is_checkpoint_prefix(path) or os.path.isfile(path):
        return path
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, CONFIG_FILE)):
            return latest_run_weights(path)
        checkpoint = latest_checkpoint(path)
        if checkpoint:
            return checkpoint
        raise FileNotFoundError(f"{path} is a directory with neither a run's config.json nor checkpoints")
    raise FileNotFoundError(f"generator weights {path} do not exist (no file, no {path}.index)")


def load_weights(generator, weights: str, config: Optional[ModelConfig] = None) -> None:
    """Loads `weights` (a `.weights.h5`, a training checkpoint with a `generator` object, or a
    checkpoint the generator saved itself) into a built `generator`.

    Raises:
        FileNotFoundError: nothing at `weights`.
        OSError: the file cannot be read (truncated, damaged, not weights).
        ValueError: the weights do not fit the generator's config (one line naming both).
    """
    import tensorflow as tf

    weights = resolve_weights(weights)
    damage = unreadable(weights)
    if damage is not None:
        raise OSError(f"weights {weights} cannot be read ({damage}); is the file truncated or damaged?")
    described = _describe(config or getattr(generator, "config", None))
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")  # a failed restore warns about every unrestored value when collected
    problem = None
    try:
        _restore(generator, weights)
    except (ValueError, AssertionError, tf.errors.OpError, OSError, KeyError) as error:
        problem = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    finally:
        gc.collect()  # the failed checkpoint (held by the traceback until here) goes quietly
        logger.setLevel(level)
    if problem is not None:
        raise ValueError(f"weights {weights} do not fit config {described}: {problem[:300]}")


def unreadable(weights: str) -> Optional[str]:
    """Why the file(s) at `weights` (a `.h5` or a checkpoint prefix) cannot be read back whole,
    or None: every array is read once (a checkpoint's checksums are checked)."""
    import tensorflow as tf

    if is_checkpoint_prefix(weights):
        from tfrf.training.checkpoints import checkpoint_problem

        return checkpoint_problem(weights, check_finite=False)
    try:
        import h5py

        with h5py.File(weights, "r") as stream:
            stream.visititems(lambda name, item: item[()] if isinstance(item, h5py.Dataset) else None)
    except (OSError, ValueError, KeyError, IndexError, RuntimeError, tf.errors.OpError) as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        return (lines[0] if lines else type(error).__name__)[:200]
    return None


def _restore(generator, weights: str) -> None:
    import tensorflow as tf

    if not is_checkpoint_prefix(weights):
        generator.load_weights(weights)
        return
    names = [name for name, _ in tf.train.list_variables(weights)]
    if any(name.startswith("generator/") for name in names):  # a training checkpoint
        status = tf.train.Checkpoint(generator=generator).restore(weights)
    else:  # saved by generator.save_weights(prefix)
        status = generator.load_weights(weights)
    status.expect_partial()
    status.assert_existing_objects_matched()


def _describe(config: Optional[ModelConfig]) -> str:
    if config is None:
        return "(unknown)"
    return (f"{config.name!r} ({config.image_height}x{config.image_width}, {config.pose_channels} pose channels, "
            f"width x{config.width_multiplier:g}, {getattr(config, 'architecture', 'rf')})")


# --- from the command line -------------------------------------------------------------------


def resolve_model(args: argparse.Namespace) -> Tuple[ModelConfig, Optional[str]]:
    """(ModelConfig, weights path or None for `--untrained`) from `add_model_arguments`' flags."""
    run = getattr(args, "run", None)
    weights = getattr(args, "weights", None)
    config_path = getattr(args, "config", None)
    preset = getattr(args, "preset", None)
    untrained = getattr(args, "untrained", False)
    config, weights, from_preset = _resolve_model(run, weights, config_path,
                                                  preset or getattr(args, "default_preset", None), untrained)
    if preset and not from_preset and config.name != preset:
        raise ValueError(f"--preset {preset} contradicts the model's config ({config.name!r}, from "
                         f"{config_path or run or weights}); drop --preset")
    return _with_architecture(config, getattr(args, "architecture", None), from_preset), weights


def _with_architecture(config: ModelConfig, architecture: Optional[str], preset_config: bool) -> ModelConfig:
    """`--architecture` applied: an override of a preset's config; a config read from a run or a
    file must already name it (else a ValueError naming both)."""
    if architecture is None or architecture == config.architecture:
        return config
    if preset_config:
        return config.replace(architecture=architecture)
    raise ValueError(f"--architecture {architecture} contradicts the config, whose architecture is "
                     f"{config.architecture!r}; drop --architecture")


def _resolve_model(run, weights, config_path, preset, untrained) -> Tuple[ModelConfig, Optional[str], bool]:
    """(config, weights or None, whether the config is a preset's)."""
    if run:
        if not os.path.isdir(run):
            raise FileNotFoundError(f"--run {run} is not a directory")
        if not os.path.isfile(os.path.join(run, CONFIG_FILE)):
            raise FileNotFoundError(f"--run {run} has no {CONFIG_FILE} (is it a `tfrf train --out` directory?)")
        config = read_model_config(config_path or run)
        return config, resolve_weights(weights) if weights else latest_run_weights(run), False
    if weights:
        if config_path:
            config = read_model_config(config_path)
        else:
            run_dir = find_run_directory(weights) if os.path.exists(weights) or is_checkpoint_prefix(weights) else None
            if run_dir is not None:
                config = read_model_config(run_dir)
            elif preset:
                return ModelConfig.preset(preset), resolve_weights(weights), True
            else:
                raise ValueError(f"--weights {weights}: give --config (a run's config.json or a ModelConfig JSON) "
                                 "or --preset")
        return config, resolve_weights(weights), False
    if untrained:
        if config_path:
            return read_model_config(config_path), None, False
        return ModelConfig.preset(preset or "synthetic"), None, True
    raise ValueError("no model given: use --run RUN, or --weights W with --config C or --preset NAME")


def load_generator(config: ModelConfig, weights: Optional[str]):
    """A built generator of `config` (`tfrf.models.build_generator`, variables created) with
    `weights` loaded (None keeps its random initial weights)."""
    from tfrf.models import build_generator

    generator = build_generator(config)
    generator(generator.dummy_inputs(batch_size=1, num_sources=1), training=False)
    if weights is not None:
        load_weights(generator, weights, config)
    return generator


def load_generator_from_args(args: argparse.Namespace, **config_changes):
    """`resolve_model(args)` → a built generator with its weights; `config_changes` (None values
    ignored) replace config fields first, e.g. `warp_backend="gather"`."""
    config, weights = resolve_model(args)
    changes = {key: value for key, value in config_changes.items() if value is not None}
    if changes:
        config = config.replace(**changes)
    return load_generator(config, weights)
