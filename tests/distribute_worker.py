"""One `tfrf train` process for tests/test_distribute.py, with two test hooks around the real
command (`tfrf.commands.train.train`) and the real `TrainingModel.train_step`:

- every example a replica trains on is recorded (a digest of its uint8 target and source
  images, taken inside the train step), with the reported losses of each step, one JSON line per
  step in `--record FILE`;
- `--kill-at-step N` kills this process (SIGKILL, no clean-up) when step N ends.

    python tests/distribute_worker.py --record FILE [--kill-at-step N] -- TRAIN ARGUMENTS...
"""
import argparse
import hashlib
import json
import os
import signal
import sys

import numpy as np
import tensorflow as tf

from tfrf.cli import build_parser
from tfrf.commands import train as train_command
from tfrf.training import runner
from tfrf.training.model import TrainingModel


def example_digest(target: np.ndarray, sources: np.ndarray) -> str:
    """A digest of one example's images, as uint8 (the stored pixels)."""
    pixels = np.rint((np.concatenate([target[None], sources]) + 1.0) * 127.5).astype(np.uint8)
    return hashlib.sha1(pixels.tobytes()).hexdigest()[:16]


class RecordingTrainingModel(TrainingModel):
    """The real training model; each replica's step also records the digests of its examples."""

    seen = []

    def train_step(self, data):
        def record(targets, sources):
            RecordingTrainingModel.seen.extend(example_digest(t, s) for t, s in zip(targets.numpy(), sources.numpy()))
            return 0

        tf.py_function(record, [data["target_image"], data["source_images"]], tf.int64)
        return super().train_step(data)


class RecordSteps(tf.keras.callbacks.Callback):
    """Writes {"step", "batch", "logs", "examples"} per step (reads the step and losses: tests only);
    the logs are Keras's: means since the epoch began, `batch` the step's index in its epoch."""

    def __init__(self, path: str, kill_at_step=None):
        super().__init__()
        self.path, self.kill_at_step = path, kill_at_step

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.generator_optimizer.iterations.numpy())
        line = {"step": step, "batch": int(batch), "logs": {name: float(value) for name, value in (logs or {}).items()},
                "examples": list(RecordingTrainingModel.seen)}
        RecordingTrainingModel.seen.clear()
        with open(self.path, "a", encoding="utf-8") as stream:
            stream.write(json.dumps(line) + "\n")
        if self.kill_at_step is not None and step >= self.kill_at_step:
            os.kill(os.getpid(), signal.SIGKILL)


def main(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--record", required=True)
    parser.add_argument("--kill-at-step", type=int)
    ours, train_argv = parser.parse_args(argv[:argv.index("--")]), argv[argv.index("--") + 1:]
    args = build_parser().parse_args(["train", *train_argv])
    runner.TrainingModel = RecordingTrainingModel
    return train_command.train(args, extra_callbacks=[RecordSteps(ours.record, ours.kill_at_step)])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
