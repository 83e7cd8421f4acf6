"""Keras callbacks of a training run: step checkpoints, NaN stop, TensorBoard summaries.

The run's step is the generator optimiser's `iterations` (restored with the checkpoint), so
every callback counts absolute steps across restarts, not steps of the current `fit` call.
"""
from __future__ import annotations

import math
import sys
from typing import Dict, Mapping, Optional

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


class StopOnNonFiniteLoss(tf.keras.callbacks.Callback):
    """Stops training at the first step whose reported losses are not finite.

    Unlike `keras.callbacks.TerminateOnNaN`, the message names every offending loss. After
    `fit` returns, `message` holds it (None when the run ended normally); `raise_if_stopped()`
    turns it into a `NonFiniteLossError`. Place it before `StepCheckpoint` in the callback list.
    """

    def __init__(self):
        super().__init__()
        self.message: Optional[str] = None

    def on_train_begin(self, logs=None):
        self.message = None

    def on_train_batch_end(self, batch, logs=None):
        bad = non_finite(logs)
        if bad:
            names = ", ".join(f"{name}={value}" for name, value in bad.items())
            self.message = (f"non-finite loss at step {training_step(self.model)}: {names}; training stopped, "
                            "the last finite checkpoint is kept")
            print(f"\n{self.message}", file=sys.stderr)
            self.model.stop_training = True

    def raise_if_stopped(self) -> None:
        if self.message:
            raise NonFiniteLossError(self.message)


class StepCheckpoint(tf.keras.callbacks.Callback):
    """Saves a `tf.train.CheckpointManager` every `every` steps and at the end, and stops the
    run when the step reaches `total_steps`.

    A checkpoint is written only when the step's reported losses are finite, so a NaN never
    overwrites the last good state.

    Args:
        manager: the `tf.train.CheckpointManager` of the stage.
        every: steps between checkpoints.
        total_steps: the stage's last step.
    """

    def __init__(self, manager: tf.train.CheckpointManager, every: int, total_steps: int):
        super().__init__()
        if every < 1:
            raise ValueError(f"StepCheckpoint: every must be >= 1, got {every}")
        self.manager = manager
        self.every = every
        self.total_steps = total_steps
        self.last_saved: Optional[int] = None
        self._finite = True

    def _save(self, step: int) -> None:
        if self._finite and step != self.last_saved:
            self.manager.save(checkpoint_number=step)
            self.last_saved = step

    def on_train_batch_end(self, batch, logs=None):
        step = training_step(self.model)
        if non_finite(logs):
            self._finite = False
            return
        if step % self.every == 0 or step >= self.total_steps:
            self._save(step)
        if step >= self.total_steps:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        self._save(training_step(self.model))


class TensorBoardSummaries(tf.keras.callbacks.Callback):
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

    def on_train_batch_end(self, batch, logs=None):
        step = training_step(self.model)
        if step % self.scalar_every == 0:
            with self.writer.as_default(step=step):
                for name, value in (logs or {}).items():
                    tf.summary.scalar(f"{self.stage}/{name}", float(value), step=step)
        if step % self.image_every == 0:
            self.write_images(step)

    def on_train_end(self, logs=None):
        if self.writer is not None:
            self.write_images(training_step(self.model))
            self.writer.flush()


class RaiseAtStep(tf.keras.callbacks.Callback):
    """Raises `KeyboardInterrupt` once the run reaches `step`: simulates a killed process."""

    def __init__(self, step: int):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if training_step(self.model) >= self.step:
            raise KeyboardInterrupt(f"simulated kill at step {self.step}")
