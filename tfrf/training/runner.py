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

What a stage resumes from, and what is never written or left behind: `tfrf.training.checkpoints`;
what a resumed run may change: `tfrf.training.run_config`.

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

from tfrf.training import distribute
from tfrf.training.callbacks import StepCheckpoint, StopOnNonFiniteLoss, TensorBoardSummaries, training_step
from tfrf.training.config import COSINE_FLOOR, KERAS_ADAM_EPSILON, STAGES, TrainConfig
from tfrf.training.model import TrainingModel
from tfrf.training.checkpoints import (checkpoint_of, checkpoint_step, restore_checkpoint, resume_checkpoint,
                                       save_weights_atomically)
from tfrf.training.networks import Networks, create_networks  # noqa: F401  (runner.create_networks)


def stage_learning_rate(rate: float, config: TrainConfig, stage: str):
    """`rate`, or under `config.learning_rate_decay == "cosine"` (or "cosine_full" in stage 2) a
    schedule of the optimiser's step from `rate` down to `COSINE_FLOOR * rate` at the stage's last
    step."""
    if config.learning_rate_decay == "cosine" or (config.learning_rate_decay == "cosine_full" and stage == "full"):
        return tf.keras.optimizers.schedules.CosineDecay(rate, decay_steps=max(1, config.steps(stage)),
                                                         alpha=COSINE_FLOOR)
    return rate


def generator_epsilon(config: TrainConfig, stage: str) -> float:
    """The epsilon of the generator's Adam in `stage`: `config.full_generator_epsilon` in stage 2,
    Keras's default in stage 1."""
    return config.full_generator_epsilon if stage == "full" else KERAS_ADAM_EPSILON


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
            generator_optimizer=tf.keras.optimizers.Adam(stage_learning_rate(config.learning_rate, config, stage),
                                                         config.beta_1, config.beta_2,
                                                         epsilon=generator_epsilon(config, stage)),
            discriminator_optimizer=tf.keras.optimizers.Adam(
                stage_learning_rate(config.discriminator_learning_rate, config, stage), config.beta_1, config.beta_2),
            loss_weights=config.stage_loss_weights(stage),
            gan_form=config.gan_form,
            correctness_sampler=config.correctness_sampler,
            photometric_scales=config.photometric_scales,
            flow_loss_on=config.flow_loss_on,
            trains_flow=config.full_trains_flow,
            **execution,
        )
    return model  # (under MultiWorkerMirroredStrategy compile reports replica 0's global means)


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
        NonFiniteLossError: a loss or a weight became NaN/inf; the latest finite checkpoint is kept.
        ValueError: the stage's checkpoints are there but none is intact (`resume_checkpoint`).
        OSError: a checkpoint could not be written (a full disk); none of its files is left.
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    strategy = strategy or tf.distribute.get_strategy()
    chief = distribute.is_chief(strategy)
    total = config.steps(stage) if steps is None else steps
    directory = os.path.join(out_dir, "checkpoints", stage)
    if chief:
        removed = distribute.remove_checkpoint_temporaries(directory)
        if removed and verbose:
            print(f"stage {stage}: removed what interrupted checkpoint writes left in {directory}: "
                  f"{', '.join(removed)}")
    latest = resume_checkpoint(directory, write=chief, notes=chief)
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
    if latest:
        restore_checkpoint(checkpoint, latest, model)
    elif stage == "full":
        initialise_from_flow_stage(networks, out_dir, verbose, chief=chief)
    start = training_step(model)
    result = {"stage": stage, "start_step": start, "end_step": start, "seconds": 0.0, "logs": {}}
    if start >= total:
        if verbose:
            print(f"stage {stage}: already at step {start} of {total}")
        return result
    if verbose and start:
        print(f"stage {stage}: resuming at step {start} of {total}")

    nan_stop = StopOnNonFiniteLoss(every=min(config.checkpoint_every, config.summary_every))
    saver = StepCheckpoint(manager, config.checkpoint_every, total)
    callbacks: List[tf.keras.callbacks.Callback] = [nan_stop, saver]
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
    saver.raise_if_stopped()
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


def initialise_from_flow_stage(networks: Networks, out_dir: str, verbose: int = 1, *, chief: bool = True) -> bool:
    """Load the flow extractor of the latest stage-1 checkpoint of `out_dir`, if there is one
    (`resume_checkpoint`'s choice; `chief`: the worker that may rewrite its state file).

    Only the flow network is read (GFLA: "stage 2 loads the stage-1 flow network only"); stage 1
    trains nothing else, and the rest keeps its (seeded) initial weights."""
    latest = resume_checkpoint(os.path.join(out_dir, "checkpoints", "flow"), write=chief, notes=chief)
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
