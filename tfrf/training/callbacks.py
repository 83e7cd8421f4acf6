"""Keras callbacks of a training run: step checkpoints, NaN stop, TensorBoard summaries.

The run's step is the generator optimiser's `iterations` (restored with the checkpoint), so
every callback counts absolute steps across restarts, not steps of the current `fit` call.

No callback forces a host sync every step: each reads `iterations` once when training begins
and then counts the batches Keras reports in Python (`StepCountingCallback`: epochs that start
mid-way and `steps_per_execution` > 1 included). They take Keras's logs as tensors
(`_supports_tf_logs`) and convert them only at their own intervals; the NaN check runs at those
intervals and at each epoch's end. The reported losses are means since the epoch began, so a
NaN of any step since then shows at the next check, and a checkpoint is never written from
non-finite logs. A finite loss does not make finite weights (a step's loss is computed before
its update), so `StepCheckpoint` also checks every variable it is about to save.
"""
from __future__ import annotations

import math
import sys
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; the message names it and the step."""


def training_step(model) -> int:
    """The absolute step of a `TrainingModel`: its generator optimiser's iteration count."""
    return int(model.generator_optimizer.iterations.numpy())


def non_finite(logs: Optional[Mapping[str, float]]) -> Dict[str, float]:
    """The entries of `logs` that are NaN or infinite."""
    bad = {}
    for name, value in (logs or {}).items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if not math.isfinite(number):
            bad[name] = number
    return bad


def checkpointed_variables(model) -> List[tf.Variable]:
    """The variables a stage checkpoint of a `TrainingModel` holds (`tfrf.training.checkpoints.checkpoint_of`): the
    generator's, the discriminator's and both optimisers' (slots and step), the optimisers' named
    `generator_optimizer/...` and `discriminator_optimizer/...` by `variable_name`."""
    variables = list(model.generator.variables)
    if getattr(model, "discriminator", None) is not None:
        variables += list(model.discriminator.variables)
    for attribute in ("generator_optimizer", "discriminator_optimizer"):
        optimizer = getattr(model, attribute, None)
        if optimizer is not None:
            variables += list(getattr(optimizer, "inner_optimizer", optimizer).variables)
    return variables


def variable_name(variable, model=None) -> str:
    """A variable's name, with the optimiser it belongs to when it is an optimiser's slot or step."""
    name = variable.name[:-2] if variable.name.endswith(":0") else variable.name
    for attribute in ("generator_optimizer", "discriminator_optimizer"):
        optimizer = getattr(model, attribute, None)
        if optimizer is not None and any(variable is other
                                         for other in getattr(optimizer, "inner_optimizer", optimizer).variables):
            return f"{attribute}/{name}"
    return name


def _floating(variables: Sequence[tf.Variable]) -> List[tf.Variable]:
    return [variable for variable in variables if variable.dtype.is_floating]


def first_non_finite(variables: Sequence[tf.Variable]) -> Optional[tf.Variable]:
    """The first of `variables` holding a NaN or an infinity (None when all are finite)."""
    for variable in _floating(variables):
        if not bool(tf.reduce_all(tf.math.is_finite(variable))):
            return variable
    return None


def all_finite(variables: Sequence[tf.Variable], strategy: Optional[tf.distribute.Strategy] = None) -> bool:
    """Whether every float variable of `variables` is finite: one host sync.

    Under `MultiWorkerMirroredStrategy` the workers' answers are summed in an all-reduce, so every
    worker decides the same (every worker must call it at the same point)."""
    floating = _floating(variables)
    finite = bool(tf.reduce_all([tf.reduce_all(tf.math.is_finite(variable)) for variable in floating])) \
        if floating else True
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        bad = tf.constant(0.0 if finite else 1.0)
        total = strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.identity(bad)), axis=None)
        finite = float(total) == 0.0
    return finite


def crossed(previous: int, step: int, every: int) -> bool:
    """Whether a multiple of `every` lies in `(previous, step]` (steps advance by
    `steps_per_execution`, so an interval's step may be passed over)."""
    return step // every > previous // every


class StepCountingCallback(tf.keras.callbacks.Callback):
    """A callback that knows the run's absolute step without reading the optimiser every step.

    `on_train_begin` reads `iterations` once; each batch end sets `self.step` from the batch
    index Keras reports (the last batch of the execution, counted from the epoch's first batch,
    which may not be 0 when an epoch is resumed mid-way) and calls `on_step_end(step, previous,
    logs)`. Logs are passed as Keras gives them (tensors): convert them only when acting.
    """

    def __init__(self):
        super().__init__()
        self._supports_tf_logs = True
        self.step = 0
        self._epoch_base = 0
        self._first_batch: Optional[int] = None

    def on_train_begin(self, logs=None):
        self.step = training_step(self.model)
        self._epoch_base = self.step
        self._first_batch = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_base = self.step
        self._first_batch = None

    def on_train_batch_begin(self, batch, logs=None):
        if self._first_batch is None:
            self._first_batch = batch

    def on_train_batch_end(self, batch, logs=None):
        previous = self.step
        first = 0 if self._first_batch is None else self._first_batch
        self.step = self._epoch_base + batch + 1 - first
        self.on_step_end(self.step, previous, logs)

    def on_step_end(self, step: int, previous: int, logs=None) -> None:
        """Called after each execution with the absolute step reached and the one before."""


class StopOnNonFiniteLoss(StepCountingCallback):
    """Stops training when the reported losses are not finite, checked every `every` steps and
    at each epoch's end.

    The logs are means since the epoch began, so a NaN of any step since then shows at the next
    check; with `every` = 1 the stop is at the step itself. Unlike
    `keras.callbacks.TerminateOnNaN`, the message names every offending loss. After `fit`
    returns, `message` holds it (None when the run ended normally); `raise_if_stopped()` turns it
    into a `NonFiniteLossError`. Place it before `StepCheckpoint` in the callback list.
    """

    def __init__(self, every: int = 1):
        super().__init__()
        if every < 1:
            raise ValueError(f"StopOnNonFiniteLoss: every must be >= 1, got {every}")
        self.every = every
        self.message: Optional[str] = None

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.message = None

    def _check(self, logs) -> None:
        if self.message:
            return
        bad = non_finite(logs)
        if bad:
            names = ", ".join(f"{name}={value}" for name, value in bad.items())
            where = (f"at step {self.step}" if self.every == 1 else
                     f"by step {self.step} (checked every {self.every} steps; the losses are means since the "
                     "epoch began)")
            self.message = f"non-finite loss {where}: {names}; training stopped, the last finite checkpoint is kept"
            print(f"\n{self.message}", file=sys.stderr)
            self.model.stop_training = True

    def on_step_end(self, step, previous, logs=None):
        if crossed(previous, step, self.every):
            self._check(logs)

    def on_epoch_end(self, epoch, logs=None):
        self._check(logs)

    def raise_if_stopped(self) -> None:
        if self.message:
            raise NonFiniteLossError(self.message)


class StepCheckpoint(StepCountingCallback):
    """Saves a `tf.train.CheckpointManager` every `every` steps and at the end, and stops the
    run when the step reaches `total_steps`.

    A checkpoint is written only when the reported losses (means since the epoch began) are
    finite, checked at the save and at each epoch's end, and when every variable it would hold
    is finite (`checkpointed_variables`, checked at the save): a NaN never overwrites the last
    good state. Non-finite weights stop the run; after `fit`, `message` names the first
    non-finite variable and `raise_if_stopped()` raises it as a `NonFiniteLossError`.

    Args:
        manager: the `tf.train.CheckpointManager` of the stage (or anything with its
            `save(checkpoint_number=...)`, e.g. `tfrf.training.distribute.ChiefCheckpointManager`).
        every: steps between checkpoints.
        total_steps: the stage's last step.
        check_weights: check the variables before each save (a model without `generator` and
            `generator_optimizer` is checked through `model.variables`).
    """

    def __init__(self, manager, every: int, total_steps: int, check_weights: bool = True):
        super().__init__()
        if every < 1:
            raise ValueError(f"StepCheckpoint: every must be >= 1, got {every}")
        self.manager = manager
        self.every = every
        self.total_steps = total_steps
        self.check_weights = check_weights
        self.last_saved: Optional[int] = None
        self.message: Optional[str] = None
        self._finite = True

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.message = None

    def _variables(self) -> List[tf.Variable]:
        if hasattr(self.model, "generator") and hasattr(self.model, "generator_optimizer"):
            return checkpointed_variables(self.model)
        return list(self.model.variables)

    def _weights_finite(self, step: int) -> bool:
        if not self.check_weights:
            return True
        variables = self._variables()
        if all_finite(variables, self.model.distribute_strategy):
            return True
        variable = first_non_finite(variables)
        name = variable_name(variable, self.model) if variable is not None else "a variable of another worker"
        latest = getattr(self.manager, "latest_checkpoint", None)
        kept = f"the last finite checkpoint {latest} is kept" if latest else "no checkpoint of this stage is written"
        self.message = (f"non-finite weights at step {step}: {name} holds NaN or inf (the loss was still finite); "
                        f"training stopped, {kept}")
        print(f"\n{self.message}", file=sys.stderr)
        self.model.stop_training = True
        return False

    def _save(self, step: int, logs=None) -> None:
        if non_finite(logs):
            self._finite = False
        if self._finite and step != self.last_saved:
            if not self._weights_finite(step):
                self._finite = False
                return
            self.manager.save(checkpoint_number=step)
            self.last_saved = step

    def on_step_end(self, step, previous, logs=None):
        if crossed(previous, step, self.every) or step >= self.total_steps:
            self._save(step, logs)
        if step >= self.total_steps:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if non_finite(logs):
            self._finite = False

    def on_train_end(self, logs=None):
        self._save(self.step, logs)

    def raise_if_stopped(self) -> None:
        if self.message:
            raise NonFiniteLossError(self.message)


class TensorBoardSummaries(StepCountingCallback):
    """Scalars every `scalar_every` steps and a preview gallery every `image_every` steps.

    Args:
        log_dir: the TensorBoard directory of the stage.
        preview: a fixed example batch (numpy dict) whose generated images are shown; None
            for scalars only.
        scalar_every, image_every: intervals in steps.
        stage: prefix of the summary names.
    """

    def __init__(self, log_dir: str, preview: Optional[Mapping[str, np.ndarray]] = None, scalar_every: int = 50,
                 image_every: int = 500, stage: str = "train"):
        super().__init__()
        self.log_dir = log_dir
        self.preview = preview
        self.scalar_every = scalar_every
        self.image_every = image_every
        self.stage = stage
        self.writer = None

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.writer = tf.summary.create_file_writer(self.log_dir)

    def write_images(self, step: int) -> None:
        if self.preview is None:
            return
        from tfrf import visualize
        from tfrf.models.generator import INPUT_KEYS

        inputs = {key: tf.convert_to_tensor(self.preview[key]) for key in INPUT_KEYS}
        outputs = self.model.generator(inputs, training=False, return_intermediates=True)
        gallery = visualize.gallery(self.preview, outputs["image"].numpy())
        internals = visualize.internals(self.preview, outputs)
        with self.writer.as_default(step=step):
            tf.summary.image(f"{self.stage}/gallery", gallery[None], step=step)
            tf.summary.image(f"{self.stage}/internals", internals[None], step=step)

    def on_step_end(self, step, previous, logs=None):
        if crossed(previous, step, self.scalar_every):
            with self.writer.as_default(step=step):
                for name, value in (logs or {}).items():
                    tf.summary.scalar(f"{self.stage}/{name}", value, step=step)
        if crossed(previous, step, self.image_every):
            self.write_images(step)

    def on_train_end(self, logs=None):
        if self.writer is not None:
            self.write_images(self.step)
            self.writer.flush()


class RaiseAtStep(StepCountingCallback):
    """Raises `KeyboardInterrupt` once the run reaches `at_step`: simulates a killed process."""

    def __init__(self, at_step: int):
        super().__init__()
        self.at_step = at_step

    def on_step_end(self, step, previous, logs=None):
        if step >= self.at_step:
            raise KeyboardInterrupt(f"simulated kill at step {self.at_step}")
