"""Running the two training stages with checkpoints, resumption and summaries.

Layout of a run directory `OUT`:

    OUT/config.json                      the resolved TrainConfig
    OUT/checkpoints/{flow,full}/ckpt-N   tf.train checkpoints, N = the stage's step
    OUT/logs/{flow,full}/                TensorBoard scalars and images
    OUT/generator_{flow,full}.weights.h5 the generator at the end of each stage

Each stage resumes from its latest checkpoint (a killed run loses at most `checkpoint_every`
steps and continues at the step it had saved); stage "full", when it has no checkpoint of its
own, starts with the flow extractor of the latest stage-1 checkpoint (the rest of the generator
keeps its seeded initial weights, as stage 1 trains nothing else).

Under a `tf.distribute` strategy (`tfrf.training.distribute`) every worker runs `train_stage`;
only the chief writes the run directory, the other workers save into temporary directories
that are deleted at once. A preempted multi-worker run resumes the same way: restart every
worker and each restores the chief's latest checkpoint (the run directory must be shared).
XLA (`jit_compile`) and `steps_per_execution` are execution options of `train_stage`, not
part of the config.
"""
from __future__ import annotations

import math
import os
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from tfrf.io import atomic_write, atomic_write_text
from tfrf.training import distribute
from tfrf.training.callbacks import StepCheckpoint, StopOnNonFiniteLoss, TensorBoardSummaries, training_step
from tfrf.training.config import STAGES, TrainConfig
from tfrf.training.model import TrainingModel
from tfrf.training.networks import Networks, create_networks  # noqa: F401  (runner.create_networks)


def compile_stage(stage: str, networks: Networks, config: TrainConfig,
                  strategy: Optional[tf.distribute.Strategy] = None, *, jit_compile: bool = False,
                  steps_per_execution: int = 1, model_class=None) -> TrainingModel:
    """A `TrainingModel` (or `model_class`, a subclass) of `stage` with fresh Adam optimisers from
    `config`; `jit_compile` and `steps_per_execution` go to `keras.Model.compile`."""
    strategy = strategy or tf.distribute.get_strategy()
    execution = {}
    if jit_compile:
        execution["jit_compile"] = True
    if steps_per_execution != 1:
        execution["steps_per_execution"] = steps_per_execution
    with strategy.scope():
        model = (model_class or TrainingModel)(networks.generator, networks.discriminator, networks.vgg, stage=stage)
        model.compile(
            generator_optimizer=tf.keras.optimizers.Adam(config.learning_rate, config.beta_1, config.beta_2),
            discriminator_optimizer=tf.keras.optimizers.Adam(config.discriminator_learning_rate, config.beta_1,
                                                             config.beta_2),
            loss_weights=config.stage_loss_weights(stage),
            gan_form=config.gan_form,
            correctness_sampler=config.correctness_sampler,
            **execution,
        )
    return model  # (under MultiWorkerMirroredStrategy compile reports replica 0's global means)


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
    """`network.save_weights` (HDF5) through a temporary file and a rename."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temporary = os.path.join(directory, f".tmp-{os.getpid()}-{os.path.basename(path)}")
    try:
        network.save_weights(temporary)
        with open(temporary, "rb") as stream:
            data = stream.read()
        atomic_write(path, lambda out: out.write(data))
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def train_stage(
    stage: str,
    networks: Networks,
    config: TrainConfig,
    dataset_fn: Callable[[int], tf.data.Dataset],
    out_dir: str,
    *,
    steps: Optional[int] = None,
    preview: Optional[Dict[str, np.ndarray]] = None,
    extra_callbacks: Sequence[tf.keras.callbacks.Callback] = (),
    strategy: Optional[tf.distribute.Strategy] = None,
    verbose: int = 1,
    jit_compile: bool = False,
    steps_per_execution: int = 1,
) -> Dict[str, object]:
    """Train one stage to `steps` (default `config.steps(stage)`), resuming from its checkpoints.

    Args:
        stage: "flow" or "full".
        networks: from `create_networks`.
        config: the resolved `TrainConfig`.
        dataset_fn: `start_step -> ` the infinite training dataset (global batches), e.g.
            `training_dataset_fn`.
        out_dir: the run directory.
        preview: a fixed example batch for the TensorBoard images.
        extra_callbacks: more Keras callbacks (e.g. to simulate a kill in tests).
        strategy: a `tf.distribute` strategy (default: the current one); only its chief writes
            `out_dir` (`tfrf.training.distribute`).
        verbose: Keras progress bars (1), one line per epoch (2) or nothing (0). The bar reads
            the losses every step (a host sync); 2 or 0 do not.
        jit_compile: compile the train step with XLA.
        steps_per_execution: train steps per call of the compiled function (fewer host round
            trips); reduced to divide `steps_per_epoch` and the steps left, with a note.

    Returns:
        `{"stage", "start_step", "end_step", "seconds", "logs"}`.

    Raises:
        NonFiniteLossError: a loss became NaN/inf; the latest finite checkpoint is kept.
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    strategy = strategy or tf.distribute.get_strategy()
    chief = distribute.is_chief(strategy)
    total = config.steps(stage) if steps is None else steps
    directory = os.path.join(out_dir, "checkpoints", stage)
    latest = tf.train.latest_checkpoint(directory)
    # An epoch no longer than the steps left: the progress bar counts the steps that will run.
    per_epoch = min(config.steps_per_epoch, max(1, total - checkpoint_step(latest)))
    fitting = fitting_steps_per_execution(steps_per_execution, per_epoch, total - checkpoint_step(latest))
    if fitting != steps_per_execution and verbose:
        print(f"stage {stage}: steps_per_execution {steps_per_execution} -> {fitting} (it must divide "
              f"steps_per_epoch {per_epoch} and the {total - checkpoint_step(latest)} steps left)")
    steps_per_execution = fitting
    model = compile_stage(stage, networks, config, strategy, jit_compile=jit_compile,
                          steps_per_execution=steps_per_execution)  # (compile creates the optimisers' variables)
    checkpoint = checkpoint_of(model)
    manager = distribute.ChiefCheckpointManager(checkpoint, directory, max_to_keep=3, chief=chief)
    if manager.latest_checkpoint:
        restore_checkpoint(checkpoint, manager.latest_checkpoint, model)
    elif stage == "full":
        initialise_from_flow_stage(networks, out_dir, verbose)
    start = training_step(model)
    result = {"stage": stage, "start_step": start, "end_step": start, "seconds": 0.0, "logs": {}}
    if start >= total:
        if verbose:
            print(f"stage {stage}: already at step {start} of {total}")
        return result
    if verbose and start:
        print(f"stage {stage}: resuming at step {start} of {total}")

    nan_stop = StopOnNonFiniteLoss(every=min(config.checkpoint_every, config.summary_every))
    callbacks: List[tf.keras.callbacks.Callback] = [nan_stop, StepCheckpoint(manager, config.checkpoint_every, total)]
    if chief:  # TensorBoard writes are not collective: the other workers write none
        callbacks.append(TensorBoardSummaries(os.path.join(out_dir, "logs", stage), preview, config.summary_every,
                                              config.checkpoint_every, stage))
    callbacks += list(extra_callbacks)
    remaining = total - start
    dataset = dataset_fn(start)
    began = time.perf_counter()
    history = model.fit(
        dataset,
        initial_epoch=start // per_epoch,
        epochs=start // per_epoch + -(-remaining // per_epoch),
        steps_per_epoch=per_epoch,
        callbacks=callbacks,
        verbose=verbose,
    )
    result["seconds"] = time.perf_counter() - began
    result["end_step"] = training_step(model)
    result["logs"] = {name: float(values[-1]) for name, values in history.history.items()}
    nan_stop.raise_if_stopped()
    distribute.WorkerWrites(out_dir, chief).save_into(
        f"generator_{stage}.weights.h5", lambda path: save_weights_atomically(networks.generator, path))
    return result


def fitting_steps_per_execution(requested: int, steps_per_epoch: int, remaining: int) -> int:
    """The largest divisor of `requested` that also divides `steps_per_epoch` and the `remaining`
    steps, so that no execution runs past an epoch's end or the stage's last step.

    Raises:
        ValueError: `requested` < 1.
    """
    if requested < 1:
        raise ValueError(f"steps_per_execution must be >= 1, got {requested}")
    return math.gcd(requested, steps_per_epoch, max(remaining, 1)) if requested > 1 else 1


def checkpoint_step(prefix: Optional[str]) -> int:
    """The step N of a checkpoint prefix `.../ckpt-N` (0 for None or another name)."""
    try:
        return int(prefix.rsplit("-", 1)[1]) if prefix else 0
    except ValueError:
        return 0


def training_dataset_fn(table, config: TrainConfig,
                        strategy: Optional[tf.distribute.Strategy] = None) -> Callable[[int], tf.data.Dataset]:
    """`start_step -> ` the infinite, seeded training dataset of `table`, continuing at exactly the
    tuple that `start_step` global batches had reached (mid-epoch included): a resumed run sees the
    same sequence of examples as an uninterrupted one.

    Under a strategy with several replicas, a distributed dataset: each worker keeps its own
    contiguous part of every global batch (`tfrf.training.distribute.distributed_dataset_fn`).

    Raises:
        ValueError: the global batch is not divisible by the strategy's replica count.
    """
    from tfrf.data.pipeline import make_dataset

    def dataset_of(start_step: int, shard) -> tf.data.Dataset:
        return make_dataset(table, config.num_sources, batch_size=config.batch_size, training=True,
                            seed=config.seed, skip=start_step * config.batch_size,
                            image_size=config.model.image_size, augment=config.augment, shard=shard)

    return distribute.distributed_dataset_fn(dataset_of, config.batch_size, strategy)


def preview_batch(table, config: TrainConfig, size: int = 4) -> Dict[str, np.ndarray]:
    """A fixed batch of `size` test tuples (numpy), for galleries."""
    from tfrf.data.pipeline import make_dataset
    from tfrf.data.tuples import held_out_tuples

    tuples, _ = held_out_tuples(table, config.num_sources, config.seed, size)
    dataset = make_dataset(table, config.num_sources, batch_size=size, training=False, tuples=tuples,
                           image_size=config.model.image_size)
    return {key: value.numpy() for key, value in next(iter(dataset)).items()}


def initialise_from_flow_stage(networks: Networks, out_dir: str, verbose: int = 1) -> bool:
    """Load the flow extractor of the latest stage-1 checkpoint of `out_dir`, if there is one.

    Only the flow network is read (GFLA: "stage 2 loads the stage-1 flow network only"); stage 1
    trains nothing else, and the rest keeps its (seeded) initial weights."""
    latest = tf.train.latest_checkpoint(os.path.join(out_dir, "checkpoints", "flow"))
    if latest is None:
        if verbose:
            print("stage full: no stage-1 checkpoint in this run; the generator starts from its current weights")
        return False
    flow_only = tf.train.Checkpoint(generator=tf.train.Checkpoint(flow_extractor=networks.generator.flow_extractor))
    status = flow_only.restore(latest).expect_partial()
    status.assert_existing_objects_matched()
    if verbose:
        print(f"stage full: flow extractor initialised from {latest}")
    return True


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

    A run directory that already has a config (a resumed run) keeps it: the new config must equal
    it except for `RESUMABLE_FIELDS` (then the file is updated), else a ValueError names the
    differing fields and nothing in the run is touched.
    """
    path = check_config(config, out_dir)
    atomic_write_text(path, config.to_json() + "\n")
    return path


def check_config(config: TrainConfig, out_dir: str) -> str:
    """`write_config`'s check alone (what a non-chief worker does): returns the config's path.

    Raises:
        ValueError: `OUT/config.json` exists, is unreadable or differs outside `RESUMABLE_FIELDS`.
    """
    import json

    path = os.path.join(out_dir, "config.json")
    if os.path.isfile(path):
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
