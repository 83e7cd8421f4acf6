"""One training run: its data, networks and stages, with every run file written.

    data = load_data("synthetic", config)                      # or a prepared TFDS folder
    results = train(config, data, "runs/chairs")               # both stages, resumable
    run = TrainingRun(config, data, "runs/chairs")             # the same, step by step:
    run.networks.generator                                     #   score the untrained model, ...
    run.train(("flow", "full"))

`tfrf train`, `tfrf demo`, the ablation and the mobile-quality benchmarks all go through
`TrainingRun`. A run directory holds (`tfrf.training.runner` for checkpoints and logs):

    OUT/config.json          the resolved TrainConfig (a resumed run must keep it)
    OUT/data.json            what the run trained on (what `tfrf evaluate --run` scores by default)
    OUT/train_options.json   how it executed: strategy, XLA, mixed precision, steps per execution
    OUT/checkpoints/, OUT/logs/, OUT/generator_{flow,full}.weights.h5

Under a `tf.distribute` strategy only the chief writes these; the other workers check the config.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
from typing import Dict, Iterator, Optional, Sequence

import tensorflow as tf

from tfrf.io import atomic_write_text
from tfrf.training import checkpoints, distribute, run_config, runner
from tfrf.training.config import STAGES, TRAIN_PRESETS, TrainConfig

SYNTHETIC = "synthetic"
OPTIONS_FILE = "train_options.json"


@dataclasses.dataclass
class RunData:
    """What a run trains on: the training table, the table its preview images come from, and
    where they were read (recorded as `OUT/data.json`)."""

    train: object
    preview: object
    data_dir: str
    dataset: Optional[str] = None
    cache_dir: Optional[str] = None


def load_data(data_dir: str, config: TrainConfig, dataset: Optional[str] = None, cache_dir: Optional[str] = None,
              verbose: bool = True) -> RunData:
    """The training and preview tables of `data_dir`: `synthetic` (the built-in chairs: train and
    held-out objects of `config`; `dataset="misaligned"` their variant of jittered cameras,
    "misaligned_sources" that of jittered sources and nominal targets) or a
    prepared TFDS dataset (its train split; the preview from its test split when it has one)."""
    if data_dir == SYNTHETIC:
        from tfrf.data import synthetic

        variant = synthetic.variant_arguments(dataset)
        tables = [synthetic.load_table(split, cache_dir=cache_dir, seed=config.seed,
                                       num_objects=getattr(config, f"{split}_objects"),
                                       image_size=config.model.image_height, verbose=verbose, **variant)
                  for split in ("train", "test")]
        return RunData(*tables, data_dir=data_dir, dataset=dataset, cache_dir=cache_dir)
    from tfrf.data.pipeline import table_from_tfds
    from tfrf.data.prepared import open_prepared

    builder = open_prepared(data_dir, dataset)
    train_table = table_from_tfds(builder, "train")
    preview = table_from_tfds(builder, "test") if "test" in builder.info.splits else train_table
    return RunData(train_table, preview, data_dir=data_dir, dataset=dataset)


def resolve_preset(preset: Optional[str], data_dir: str, dataset: Optional[str] = None,
                   architecture: Optional[str] = None, model: Optional[dict] = None,
                   overrides: Optional[dict] = None) -> str:
    """The training preset of a run: `preset`, else the data's own (synthetic for the chairs).

    With `architecture="gfla"` a residual-flow preset becomes `gfla_PRESET` where there is one,
    else the preset with `model.architecture = "gfla"`, K = 1 and no saturation hinge (added to `model` /
    `overrides`).

    Raises:
        ValueError: `architecture="rf"` with a GFLA preset.
    """
    if preset is None:
        from tfrf.data.prepared import preset_of_dataset

        preset = SYNTHETIC if data_dir == SYNTHETIC else preset_of_dataset(data_dir, dataset)
    if architecture is None:
        return preset
    is_gfla = preset in TRAIN_PRESETS and TRAIN_PRESETS[preset].model.architecture == "gfla"
    if architecture == "gfla" and not is_gfla:
        if f"gfla_{preset}" in TRAIN_PRESETS:
            return f"gfla_{preset}"
        if model is not None:
            model["architecture"] = "gfla"
        if overrides is not None:
            overrides.setdefault("num_sources", 1)
            overrides.setdefault("eval_ks", (1,))
            # The saturation hinge reads the rf generator's pre-tanh output: off unless asked for.
            if isinstance(overrides.setdefault("loss_weights", {}), dict):
                overrides["loss_weights"].setdefault("saturation", 0.0)
    elif architecture == "rf" and is_gfla:
        raise ValueError(f"--architecture rf contradicts --preset {preset} (a GFLA preset); drop one of them")
    return preset


def resolve_config(preset: Optional[str], data_dir: str, dataset: Optional[str] = None, *,
                   stages: Sequence[str] = STAGES, k: Optional[int] = None, steps: Optional[int] = None,
                   vgg_weights: Optional[str] = None, architecture: Optional[str] = None,
                   width_multiplier: Optional[float] = None, image_size: Optional[Sequence[int]] = None,
                   warp_backend: Optional[str] = None, **fields) -> TrainConfig:
    """The training preset of the run (`resolve_preset`) with overrides, as `tfrf train` takes them.

    Args:
        stages: the stages `steps` sets the step count of.
        k: sources per training tuple.
        vgg_weights: "imagenet", a local VGG19 file, or "none" (random weights).
        width_multiplier, image_size (H, W), warp_backend: overrides of the model.
        **fields: TrainConfig fields; None values are ignored. `learning_rate` sets both
            optimisers' rate.
    """
    for flag, value in (("learning-rate", fields.get("learning_rate")), ("width-multiplier", width_multiplier)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(f"--{flag} must be a finite number > 0, got {value}")
    overrides = {name: value for name, value in fields.items() if value is not None}
    if k is not None:
        overrides["num_sources"] = k
    if "learning_rate" in overrides:
        overrides["discriminator_learning_rate"] = overrides["learning_rate"]
    if steps is not None:
        overrides.update({f"{stage}_steps": steps for stage in stages})
    if vgg_weights is not None:
        overrides["vgg_weights"] = None if vgg_weights.lower() == "none" else vgg_weights
    model = {}
    if width_multiplier is not None:
        model["width_multiplier"] = width_multiplier
    if image_size is not None:
        model["image_height"], model["image_width"] = image_size
    if warp_backend is not None:
        model["warp_backend"] = warp_backend
    preset = resolve_preset(preset, data_dir, dataset, architecture, model, overrides)
    if model:
        overrides["model"] = model
    # An invalid value is named by the flag that gave it, not by the config field it set.
    flags = {f"TrainConfig.{name}": "--" + name.replace("_", "-") for name, value in fields.items()
             if value is not None}
    if k is not None:
        flags["TrainConfig.num_sources"] = "--k"
    if image_size is not None:
        flags.update({"ModelConfig.image_height": "--image-size", "ModelConfig.image_width": "--image-size"})
    if steps is not None:
        flags.update({f"TrainConfig.{stage}_steps": "--steps" for stage in stages})
    try:
        return TrainConfig.preset(preset, **overrides)
    except ValueError as error:
        message = str(error)
        for field, flag in sorted(flags.items(), key=lambda item: -len(item[0])):
            message = message.replace(field, flag)
        raise ValueError(message) from None


@dataclasses.dataclass
class ExecutionOptions:
    """How a run executes, not what it computes: a run may be resumed with other options.

    Attributes:
        strategy: a `tf.distribute` strategy (None: the current one).
        xla: compile the train step with XLA; a "tfa" warp runs as "gather" (same weights).
        mixed_precision: None, "float16" or "bfloat16" (Keras `mixed_*` policy).
        steps_per_execution: train steps per call of the compiled step.
    """

    strategy: Optional[tf.distribute.Strategy] = None
    xla: bool = False
    mixed_precision: Optional[str] = None
    steps_per_execution: int = 1

    def __post_init__(self):
        if self.steps_per_execution < 1:
            raise ValueError(f"--steps-per-execution must be >= 1, got {self.steps_per_execution}")
        if self.mixed_precision not in (None, "float16", "bfloat16"):
            raise ValueError(f"mixed_precision must be None, 'float16' or 'bfloat16', got {self.mixed_precision!r}")

    def executed_config(self, config: TrainConfig) -> TrainConfig:
        """The config the run executes: under XLA a tfa warp becomes "gather" (tfa's resampler
        has no XLA kernel); `config.json` keeps `config`."""
        if self.xla and config.model.warp_backend == "tfa":
            print("tfrf train: --xla: tfa.image.resampler has no XLA kernel; this run warps with the 'gather' backend "
                "(same weights; config.json keeps 'tfa')")
            return config.replace(model={"warp_backend": "gather"})
        return config

    def describe(self, strategy: tf.distribute.Strategy, warp_backend: str) -> Dict[str, object]:
        return {**distribute.describe(strategy), "xla": bool(self.xla), "mixed_precision": self.mixed_precision,
                "steps_per_execution": self.steps_per_execution, "warp_backend": warp_backend}


@contextlib.contextmanager
def precision_policy(mixed_precision: Optional[str]) -> Iterator[None]:
    """The Keras global policy `mixed_{mixed_precision}` inside (float32 for None), restored after."""
    previous = tf.keras.mixed_precision.global_policy()
    if mixed_precision:
        if mixed_precision == "float16" and not tf.config.list_physical_devices("GPU"):
            print("tfrf train: note: --mixed-precision float16 on a CPU is slower than float32 (TensorFlow has few "
                "float16 CPU kernels); it pays on GPUs. bfloat16 suits TPUs and CPUs with bfloat16 units")
        tf.keras.mixed_precision.set_global_policy(f"mixed_{mixed_precision}")
    try:
        yield
    finally:
        tf.keras.mixed_precision.set_global_policy(previous)


# The fields of `OUT/data.json` a resumed run must keep, with the flag that sets each.
DATA_FIELDS = {"data_dir": "--data-dir", "dataset": "--dataset", "seed": "--seed", "test_objects": "--test-objects",
               "image_size": "--image-size"}


def run_data_record(config: TrainConfig, data: RunData) -> Dict[str, object]:
    """The `DATA_FIELDS` of the `OUT/data.json` record that `write_run_files` writes for `data`."""
    record = {"data_dir": data.data_dir if data.data_dir == SYNTHETIC else os.path.abspath(data.data_dir),
              "dataset": data.dataset}
    if data.data_dir == SYNTHETIC:
        synthetic = {"seed": config.seed, "test_objects": config.test_objects, "image_size": config.model.image_height}
        record.update({key: value for key, value in synthetic.items() if value is not None})
    return record


def check_run_data(config: TrainConfig, data: RunData, out_dir: str) -> None:
    """A resumed run (one with a completed step, `checkpoints.run_has_progress`) trains on the data its
    `OUT/data.json` records; a run with no checkpoint yet may change it.

    Raises:
        ValueError: the run has a completed step and its data.json is unreadable or names other
            data (the differing fields, by flag).
    """
    from tfrf.evaluation.data import RUN_DATA_FILE, read_run_data

    path = os.path.join(out_dir, RUN_DATA_FILE)
    if not os.path.isfile(path) or not checkpoints.run_has_progress(out_dir):
        return
    try:
        previous = read_run_data(out_dir)
    except ValueError as error:
        raise ValueError(f"{error}; the run's data record is unreadable: use a new --out") from None
    record = run_data_record(config, data)

    def same(key: str) -> bool:
        old, new = previous.get(key), record.get(key)
        if key == "data_dir" and isinstance(old, str) and old != SYNTHETIC and new != SYNTHETIC:
            return os.path.realpath(old) == os.path.realpath(new)
        return old == new

    differing = [key for key in DATA_FIELDS if (key in previous or key in ("data_dir", "dataset")) and not same(key)]
    if differing:
        shown = ", ".join(f"{DATA_FIELDS[key]} ({previous.get(key)!r} -> {record.get(key)!r})" for key in differing)
        raise ValueError(f"run {out_dir} was trained on other data ({path}): {shown}. Resume with the same data "
                         "or use a new --out")


def write_run_files(config: TrainConfig, data: RunData, out_dir: str, options: ExecutionOptions,
                    strategy: tf.distribute.Strategy, warp_backend: str) -> None:
    """`OUT/config.json`, `OUT/data.json` and `OUT/train_options.json` (the chief's writes; another
    worker only checks that the run's config and data are these).

    Both are checked before anything is written (`run_config.check_config`, `check_run_data`): a
    resumed run with another config or other data is refused with the run untouched. The chief
    first removes what killed writes of these files left (`checkpoints.remove_run_temporaries`).
    """
    run_config.check_config(config, out_dir)
    check_run_data(config, data, out_dir)
    if not distribute.is_chief(strategy):
        return
    from tfrf.evaluation.data import write_run_data

    checkpoints.remove_run_temporaries(out_dir)
    run_config.write_config(config, out_dir)
    write_run_data(out_dir, data.data_dir, data.dataset, seed=config.seed, test_objects=config.test_objects,
                   image_size=config.model.image_height, cache_dir=data.cache_dir)
    atomic_write_text(os.path.join(out_dir, OPTIONS_FILE),
                      json.dumps(options.describe(strategy, warp_backend), indent=2, sort_keys=True) + "\n")


class TrainingRun:
    """The networks of a run directory, ready to train its stages.

    Creating one checks the data against the config, writes the run files (a resumed run must
    keep its config: `tfrf.training.run_config.write_config`) and builds the networks seeded by
    `config.seed`, under the strategy's scope. Build it under the precision policy the run
    trains with (`precision_policy`).

    Args:
        config: the resolved `TrainConfig`.
        data: from `load_data`.
        out_dir: the run directory.
        options: execution options (default: one device, float32, no XLA).
        preview_size: examples in the fixed preview batch of the TensorBoard images (at most the batch).
        verbose: Keras progress bars (1), a line per epoch (2) or nothing (0).
    """

    def __init__(self, config: TrainConfig, data: RunData, out_dir: str, options: Optional[ExecutionOptions] = None,
                 *, preview_size: int = 4, verbose: int = 1):
        options = options or ExecutionOptions()
        if data.train.pose_channels != config.model.pose_channels:
            raise ValueError(f"--data-dir {data.data_dir} has {data.train.pose_channels}-channel poses "
                             f"({data.train.pose_encoder}); preset {config.name!r} expects "
                             f"{config.model.pose_channels}")
        self.config, self.data, self.out_dir, self.options = config, data, out_dir, options
        self.strategy = options.strategy or tf.distribute.get_strategy()
        self.chief = distribute.is_chief(self.strategy)
        self.verbose = verbose if self.chief else 0
        self.executed = options.executed_config(config)
        write_run_files(config, data, out_dir, options, self.strategy, self.executed.model.warp_backend)
        self.networks = runner.create_networks(self.executed, self.strategy)
        self.preview = (runner.preview_batch(data.preview, self.executed, size=min(preview_size, config.batch_size))
                        if self.chief else None)
        self._dataset_fn = None

    def dataset_fn(self):
        """`start_step -> ` the training dataset (`tfrf.training.runner.training_dataset_fn`)."""
        if self._dataset_fn is None:
            self._dataset_fn = runner.training_dataset_fn(self.data.train, self.executed, self.strategy)
        return self._dataset_fn

    def train_stage(self, stage: str, extra_callbacks: Sequence[tf.keras.callbacks.Callback] = ()) -> Dict:
        """Train `stage` to its step count, resuming from its checkpoints (`runner.train_stage`)."""
        return runner.train_stage(stage, self.networks, self.executed, self.dataset_fn(), self.out_dir,
                                  preview=self.preview, extra_callbacks=extra_callbacks, strategy=self.strategy,
                                  verbose=self.verbose, jit_compile=self.options.xla,
                                  steps_per_execution=self.options.steps_per_execution)

    def train(self, stages: Sequence[str] = STAGES,
              extra_callbacks: Sequence[tf.keras.callbacks.Callback] = ()) -> Dict[str, Dict]:
        """Train `stages` in order; returns each stage's result (`runner.train_stage`).

        Raises:
            NonFiniteLossError: a loss became NaN/inf (the last finite checkpoint is kept).
        """
        results = {}
        for stage in stages:
            if stage not in STAGES:
                raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
            results[stage] = self.train_stage(stage, extra_callbacks)
        return results


def train(config: TrainConfig, data: RunData, out_dir: str, stages: Sequence[str] = STAGES,
          options: Optional[ExecutionOptions] = None, *, verbose: int = 1, preview_size: int = 4,
          extra_callbacks: Sequence[tf.keras.callbacks.Callback] = ()) -> Dict[str, Dict]:
    """A whole run: the run files, the networks and `stages`, under the options' precision policy.
    Returns each stage's result."""
    options = options or ExecutionOptions()
    with precision_policy(options.mixed_precision):
        run = TrainingRun(config, data, out_dir, options, preview_size=preview_size, verbose=verbose)
        return run.train(stages, extra_callbacks)
