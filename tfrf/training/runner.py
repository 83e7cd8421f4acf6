"""Running the two training stages with checkpoints, resumption and summaries.

Layout of a run directory `OUT`:

    OUT/config.json                      the resolved TrainConfig
    OUT/checkpoints/{flow,full}/ckpt-N   tf.train checkpoints, N = the stage's step
    OUT/logs/{flow,full}/                TensorBoard scalars and images
    OUT/generator_{flow,full}.weights.h5 the generator at the end of each stage

Each stage resumes from its latest checkpoint (a killed run loses at most `checkpoint_every`
steps and continues at the step it had saved); stage "full" starts from the generator of the
latest stage-1 checkpoint when it has none of its own, so stage 2 starts from stage-1 weights.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from tfrf.io import atomic_write, atomic_write_text
from tfrf.training.callbacks import StepCheckpoint, StopOnNonFiniteLoss, TensorBoardSummaries, training_step
from tfrf.training.config import STAGES, TrainConfig
from tfrf.training.model import TrainingModel, build_networks


@dataclasses.dataclass
class Networks:
    """The networks of a run, built (under the strategy's scope when distributed)."""

    generator: tf.keras.Model
    discriminator: tf.keras.Model
    vgg: Optional[tf.keras.layers.Layer]


def create_networks(config: TrainConfig, strategy: Optional[tf.distribute.Strategy] = None) -> Networks:
    """Generator, discriminator and the VGG features the loss weights need, seeded by `config.seed`."""
    strategy = strategy or tf.distribute.get_strategy()
    tf.keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        return Networks(*build_networks(config.model, config.vgg_weights,
                                        [config.stage_loss_weights(stage) for stage in STAGES], config.num_sources,
                                        discriminator=config.discriminator,
                                        discriminator_blocks=config.discriminator_blocks))


def compile_stage(stage: str, networks: Networks, config: TrainConfig,
                  strategy: Optional[tf.distribute.Strategy] = None) -> TrainingModel:
    """A `TrainingModel` of `stage` with fresh Adam optimisers from `config`."""
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        model = TrainingModel(networks.generator, networks.discriminator, networks.vgg, stage=stage)
        model.compile(
            generator_optimizer=tf.keras.optimizers.Adam(config.learning_rate, config.beta_1, config.beta_2),
            discriminator_optimizer=tf.keras.optimizers.Adam(config.discriminator_learning_rate, config.beta_1,
                                                             config.beta_2),
            loss_weights=config.stage_loss_weights(stage),
            gan_form=config.gan_form,
            correctness_sampler=config.correctness_sampler,
        )
    return model


def checkpoint_of(model: TrainingModel) -> tf.train.Checkpoint:
    """What a stage checkpoint holds: both networks and both optimisers (with their step)."""
    items = {"generator": model.generator, "generator_optimizer": model.generator_optimizer}
    if model.discriminator is not None:
        items["discriminator"] = model.discriminator
    if model.discriminator_optimizer is not None:
        items["discriminator_optimizer"] = model.discriminator_optimizer
    return tf.train.Checkpoint(**items)


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
        strategy: a `tf.distribute` strategy (default: the current one).
        verbose: Keras progress bars (1), one line per epoch (2) or nothing (0).

    Returns:
        `{"stage", "start_step", "end_step", "seconds", "logs"}`.

    Raises:
        NonFiniteLossError: a loss became NaN/inf; the latest finite checkpoint is kept.
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    strategy = strategy or tf.distribute.get_strategy()
    total = config.steps(stage) if steps is None else steps
    model = compile_stage(stage, networks, config, strategy)  # (compile creates the optimisers' variables)
    checkpoint = checkpoint_of(model)
    directory = os.path.join(out_dir, "checkpoints", stage)
    manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=3)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
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

    nan_stop = StopOnNonFiniteLoss()
    callbacks: List[tf.keras.callbacks.Callback] = [
        nan_stop,
        StepCheckpoint(manager, config.checkpoint_every, total),
        TensorBoardSummaries(os.path.join(out_dir, "logs", stage), preview, config.summary_every,
                             config.checkpoint_every, stage),
        *extra_callbacks,
    ]
    per_epoch = config.steps_per_epoch
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
    save_weights_atomically(networks.generator, os.path.join(out_dir, f"generator_{stage}.weights.h5"))
    return result


def training_dataset_fn(table, config: TrainConfig) -> Callable[[int], tf.data.Dataset]:
    """`start_step -> ` the infinite, seeded training dataset of `table`, continuing at exactly the
    tuple that `start_step` global batches had reached (mid-epoch included): a resumed run sees the
    same sequence of examples as an uninterrupted one."""
    from tfrf.data.pipeline import make_dataset

    def dataset_fn(start_step: int) -> tf.data.Dataset:
        return make_dataset(table, config.num_sources, batch_size=config.batch_size, training=True,
                            seed=config.seed, skip=start_step * config.batch_size,
                            image_size=config.model.image_size, augment=config.augment)

    return dataset_fn


def preview_batch(table, config: TrainConfig, size: int = 4) -> Dict[str, np.ndarray]:
    """A fixed batch of `size` test tuples (numpy), for galleries."""
    from tfrf.data.pipeline import make_dataset
    from tfrf.training.evaluate import test_tuples

    tuples = test_tuples(table, config.num_sources, config.seed, size)
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
    atomic_write_text(path, config.to_json() + "\n")
    return path


def _lookup(values: Dict[str, object], dotted: str):
    for part in dotted.split("."):
        values = values.get(part) if isinstance(values, dict) else None
    return values
