"""A run killed mid-epoch resumes at exactly the tuple it had reached: the examples the resumed
run trains on, after those of the last checkpoint, are those of an uninterrupted run."""
from functools import partial

import numpy as np
import pytest
import tensorflow as tf

from tfrf.data.pipeline import ViewTable
from tfrf.training import LossWeights, TrainingModel
from tfrf.training import runner
from tfrf.training.callbacks import RaiseAtStep

from helpers import tiny_train_config

SIZE, BATCH = 32, 2
NUM_IMAGES = 7  # groups of 3, 2, 2: seven K=1 tuples an epoch, so a step of 2 ends mid-epoch


def id_table():
    """Image i is filled with the value i, so a batch's target image says which image it was."""
    images = np.stack([np.full((SIZE, SIZE, 3), index, np.uint8) for index in range(NUM_IMAGES)])
    poses = np.stack([[index % 18, index % 3] for index in range(NUM_IMAGES)]).astype(np.int64)
    return ViewTable(images=images, poses=poses, groups=[0, 0, 0, 1, 1, 2, 2], pose_encoder="view21")


# The synthetic preset at SIZE, 1/8 width, the gather warp, no VGG weights; K = 1 tuples.
resume_config = partial(tiny_train_config, SIZE, name="resume", batch_size=BATCH, num_sources=1, flow_steps=6,
                        full_steps=0, steps_per_epoch=3, checkpoint_every=2, summary_every=1,
                        loss_weights=LossWeights(perceptual=0.0, style=0.0))


class RecordingTrainingModel(TrainingModel):
    """The real training model; each step also records which images were its targets."""

    seen = []

    def train_step(self, data):
        def record(values):
            RecordingTrainingModel.seen.extend(np.rint((values.numpy() + 1.0) * 127.5).astype(int).tolist())
            return 0

        tf.py_function(record, [data["target_image"][:, 0, 0, 0]], tf.int64)
        return super().train_step(data)


def run_stage(config, table, out, monkeypatch, callbacks=()):
    monkeypatch.setattr(runner, "TrainingModel", RecordingTrainingModel)
    RecordingTrainingModel.seen = []
    networks = runner.create_networks(config)
    dataset_fn = runner.training_dataset_fn(table, config)
    try:
        runner.train_stage("flow", networks, config, dataset_fn, out, extra_callbacks=list(callbacks), verbose=0)
    finally:
        seen = list(RecordingTrainingModel.seen)
    return seen


@pytest.mark.slow
def test_killed_mid_epoch_run_sees_the_uninterrupted_sequence(tmp_path, monkeypatch):
    config, table = resume_config(), id_table()
    uninterrupted = run_stage(config, table, str(tmp_path / "straight"), monkeypatch)
    assert len(uninterrupted) == 6 * BATCH
    assert sorted(uninterrupted[:NUM_IMAGES]) == list(range(NUM_IMAGES))  # one epoch: each image a target once

    out = str(tmp_path / "killed")
    with pytest.raises(KeyboardInterrupt):
        run_stage(config, table, out, monkeypatch, callbacks=[RaiseAtStep(3)])  # last checkpoint: step 2
    before_kill = list(RecordingTrainingModel.seen)
    assert before_kill == uninterrupted[:3 * BATCH]
    resumed = run_stage(config, table, out, monkeypatch)
    # Steps 3..6 again, from example 2 * BATCH = 4 of the 7-tuple epoch on, across the epoch boundary.
    assert resumed == uninterrupted[2 * BATCH:]


def test_dataset_stream_skips_to_any_step():
    config, table = resume_config(), id_table()
    dataset_fn = runner.training_dataset_fn(table, config)

    def ids(dataset, steps):
        return [int(round((value + 1) * 127.5)) for batch in dataset.take(steps)
                for value in batch["target_image"][:, 0, 0, 0].numpy()]

    straight = ids(dataset_fn(0), 10)
    for start in (1, 3, 4, 7):
        assert ids(dataset_fn(start), 10 - start) == straight[start * BATCH:], start
