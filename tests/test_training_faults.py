"""Faults a training run survives without losing or poisoning what it saved: non-finite
settings, weights that turn non-finite under a finite loss, a missing or garbage checkpoint state
file, a corrupt latest checkpoint, other data on resume, what killed writes leave behind and a
full disk."""
import errno
import json
import os
import shutil
from functools import partial

import numpy as np
import pytest
import tensorflow as tf

from tfrf.data.pipeline import ViewTable
from tfrf.training import LossWeights, TrainConfig
from tfrf.training import run as run_lib
from tfrf.training import runner
from tfrf.training.callbacks import NonFiniteLossError, StepCountingCallback

from helpers import tiny_train_config

SIZE, BATCH = 32, 2

# The synthetic preset at SIZE, 1/8 width, the gather warp, no VGG weights; K = 1; stage 1 only,
# a checkpoint every 2 steps.
fault_config = partial(tiny_train_config, SIZE, name="faults", batch_size=BATCH, num_sources=1, flow_steps=4,
                       full_steps=0, steps_per_epoch=2, checkpoint_every=2, summary_every=1,
                       loss_weights=LossWeights(perceptual=0.0, style=0.0))


def table():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(6, SIZE, SIZE, 3), dtype=np.uint8)
    poses = np.stack([[index % 18, index % 3] for index in range(6)]).astype(np.int64)
    return ViewTable(images=images, poses=poses, groups=[0, 0, 0, 1, 1, 1], pose_encoder="view21")


def train(out, steps=None, callbacks=(), config=None):
    config = config or fault_config()
    return runner.train_stage("flow", runner.create_networks(config), config,
                              runner.training_dataset_fn(table(), config), str(out), steps=steps,
                              extra_callbacks=list(callbacks), verbose=0)


def tensors(prefix):
    reader = tf.train.load_checkpoint(str(prefix))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if "save_counter" not in name and "OBJECT_GRAPH" not in name}


def stage_dir(out):
    return os.path.join(str(out), "checkpoints", "flow")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run trained to step 4 (checkpoints 2 and 4) and the tensors of its ckpt-4."""
    out = tmp_path_factory.mktemp("trained") / "run"
    train(out)
    return out, tensors(os.path.join(stage_dir(out), "ckpt-4"))


@pytest.fixture
def copied(trained, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(trained[0], out)
    return out


# --- settings -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_non_finite_settings_are_refused(value, capsys):
    with pytest.raises(ValueError, match="TrainConfig.learning_rate must be a finite number"):
        TrainConfig(learning_rate=value)
    with pytest.raises(ValueError, match="TrainConfig.beta_2 must be a finite number"):
        TrainConfig(beta_2=value)
    with pytest.raises(ValueError, match="LossWeights.style must be a finite number"):
        TrainConfig(loss_weights={"style": value})
    with pytest.raises(ValueError, match="TrainConfig.model.width_multiplier must be a finite number"):
        TrainConfig.preset("demo").replace(model={"width_multiplier": value})
    with pytest.raises(ValueError, match="^--learning-rate must be a finite number > 0"):
        run_lib.resolve_config("demo", "synthetic", learning_rate=value)

    from tfrf.cli import main

    assert main(["train", "--preset", "demo", "--learning-rate", str(value), "--dry-run"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "--learning-rate must be a finite number > 0" in error[0]


# --- non-finite weights ---------------------------------------------------------------------


class PoisonAtStep(StepCountingCallback):
    """Sets a discriminator kernel to inf after step `at_step`: stage 1 does not train or use the
    discriminator, so every loss stays finite while the weights a checkpoint holds are not."""

    def __init__(self, at_step):
        super().__init__()
        self.at_step = at_step
        self.name = None

    def on_step_end(self, step, previous, logs=None):
        if step == self.at_step:
            variable = [v for v in self.model.discriminator.variables if "kernel" in v.name][0]
            variable.assign(tf.fill(variable.shape, float("inf")))
            self.name = variable.name[:-2]


def test_non_finite_weights_are_never_checkpointed(tmp_path, capsys):
    poison = PoisonAtStep(3)
    with pytest.raises(NonFiniteLossError, match=r"non-finite weights at step 4: discriminator/\S+ holds NaN or inf"):
        train(tmp_path, callbacks=[poison])
    assert poison.name in capsys.readouterr().err
    directory = stage_dir(tmp_path)
    assert tf.train.latest_checkpoint(directory).endswith("ckpt-2")
    assert not os.path.exists(os.path.join(directory, "ckpt-4.index"))
    assert all(np.isfinite(value).all() for value in tensors(os.path.join(directory, "ckpt-2")).values()
               if np.issubdtype(np.asarray(value).dtype, np.floating))
    assert not os.path.exists(tmp_path / "generator_flow.weights.h5")


def test_export_refuses_non_finite_weights_by_name(tmp_path):
    from tfrf import runs
    from tfrf.export import export_generator

    model_config = fault_config().model
    generator = runs.load_generator(model_config, None)
    variable = generator.variables[3]
    variable.assign(tf.fill(variable.shape, float("nan")))
    weights = str(tmp_path / "generator.weights.h5")
    generator.save_weights(weights)
    with pytest.raises(ValueError, match=rf"weights {weights}: {variable.name[:-2]} holds NaN or inf"):
        export_generator(model_config, weights)


# --- the checkpoint state file and corrupt checkpoints ----------------------------------------


@pytest.mark.parametrize("damage", ["missing", "garbage"])
def test_lost_state_file_resumes_at_the_latest_checkpoint(copied, damage, capsys):
    state = os.path.join(stage_dir(copied), "checkpoint")
    if damage == "missing":
        os.remove(state)
    else:
        with open(state, "w") as stream:
            stream.write("model_checkpoint_path: {{{ not a checkpoint state\n")
    result = train(copied)
    assert (result["start_step"], result["end_step"]) == (4, 4)
    assert f"checkpoint is {'missing' if damage == 'missing' else 'unreadable'}; resuming from" in \
        capsys.readouterr().err
    assert tf.train.latest_checkpoint(stage_dir(copied)).endswith("ckpt-4")
    assert tf.train.get_checkpoint_state(stage_dir(copied)).all_model_checkpoint_paths[:] == [
        os.path.join(stage_dir(copied), name) for name in ("ckpt-2", "ckpt-4")]


@pytest.mark.parametrize("part", ["index", "data-00000-of-00001"])
def test_corrupt_latest_checkpoint_falls_back_to_the_one_before(copied, trained, part, capsys):
    os.truncate(os.path.join(stage_dir(copied), f"ckpt-4.{part}"), 100)
    result = train(copied)
    assert (result["start_step"], result["end_step"]) == (2, 4)
    assert "ckpt-4 is unreadable" in capsys.readouterr().err
    again = tensors(os.path.join(stage_dir(copied), "ckpt-4"))
    assert again.keys() == trained[1].keys()
    for name, value in trained[1].items():
        np.testing.assert_array_equal(again[name], value, err_msg=name)


def test_no_intact_checkpoint_is_refused(copied):
    for step in (2, 4):
        os.truncate(os.path.join(stage_dir(copied), f"ckpt-{step}.index"), 100)
    with pytest.raises(ValueError, match=r"no other intact checkpoint .* delete \S+ to train that stage from step 0"):
        train(copied)


# --- run files ------------------------------------------------------------------------------


def write_run_files(out, config, data_dir="synthetic"):
    run_lib.write_run_files(config, run_lib.RunData(None, None, data_dir=str(data_dir)), str(out),
                            run_lib.ExecutionOptions(), tf.distribute.get_strategy(), "gather")


def run_files(out):
    return {name: (out / name).read_bytes() for name in ("config.json", "data.json")}


def test_resume_with_other_data_is_refused(copied, tmp_path):
    config = fault_config()
    write_run_files(copied, config)
    before = run_files(copied)
    with pytest.raises(ValueError, match=r"trained on other data .*--data-dir \('synthetic' -> '\S+other'\)"):
        write_run_files(copied, config, tmp_path / "other")
    with pytest.raises(ValueError, match=r"another config; differing fields: learning_rate"):
        write_run_files(copied, config.replace(learning_rate=0.5), tmp_path / "other")
    assert run_files(copied) == before


def test_run_without_a_step_accepts_another_config_and_data(tmp_path):
    out = tmp_path / "run"
    write_run_files(out, fault_config())
    os.makedirs(os.path.join(out, "logs", "flow"))  # a first attempt killed before its first checkpoint
    write_run_files(out, fault_config(learning_rate=0.5), tmp_path / "other")
    assert json.loads((out / "config.json").read_text())["learning_rate"] == 0.5
    assert json.loads((out / "data.json").read_text())["data_dir"] == str(tmp_path / "other")


# --- what killed writes leave, and a full disk ----------------------------------------------


def test_leftovers_of_killed_writes_are_removed(copied, tmp_path):
    directory = stage_dir(copied)
    os.makedirs(os.path.join(directory, "ckpt-6_temp"))  # what TF's sharded save writes first
    (copied / "checkpoints" / "flow" / "ckpt-6_temp" / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"x")
    (copied / "checkpoints" / "flow" / "checkpoint.tmp0123abcd").write_text("partial")
    (copied / ".tmp-k2j3h4config.json").write_text("{")
    (copied / ".tmp-4242-generator_flow.weights.h5").write_bytes(b"partial")
    write_run_files(copied, fault_config())
    assert train(copied)["start_step"] == 4
    assert sorted(os.listdir(directory)) == ["checkpoint", "ckpt-2.data-00000-of-00001", "ckpt-2.index",
                                            "ckpt-4.data-00000-of-00001", "ckpt-4.index"]
    assert not [name for name in os.listdir(copied) if name.startswith(".tmp-")]

    from tfrf import runs
    from tfrf.export import saved_model

    base = tmp_path / "models" / "face"
    os.makedirs(base / ".tmp-1-0a1b2c3d" / "variables")  # a killed export of version 1
    generator = runs.load_generator(fault_config().model, None)
    path = saved_model.export_saved_model(generator, str(base))
    assert path.endswith(os.sep + "1") and sorted(os.listdir(base)) == ["1"]


def test_full_disk_checkpoint_write_is_one_error_and_leaves_nothing(copied, monkeypatch):
    directory = stage_dir(copied)

    def full_disk(self, checkpoint_number=None, **kwargs):
        prefix = os.path.join(directory, f"ckpt-{checkpoint_number}")
        os.makedirs(prefix + "_temp")
        with open(os.path.join(prefix + "_temp", "part-00000-of-00001.data-00000-of-00001"), "wb") as stream:
            stream.write(b"partial")
        with open(prefix + ".data-00000-of-00001", "wb") as stream:
            stream.write(b"partial")
        raise tf.errors.ResourceExhaustedError(None, None, f"{prefix}_temp/part-00000-of-00001.data-00000-of-00001."
                                               "tempstate1; No space left on device")

    monkeypatch.setattr(tf.train.CheckpointManager, "save", full_disk)
    with pytest.raises(OSError) as raised:
        train(copied, steps=6)
    assert raised.value.errno == errno.ENOSPC
    assert str(raised.value) == ("[Errno 28] checkpoint write failed: No space left on device: "
                                 f"'{os.path.join(directory, 'ckpt-6')}'")
    assert sorted(os.listdir(directory)) == ["checkpoint", "ckpt-2.data-00000-of-00001", "ckpt-2.index",
                                            "ckpt-4.data-00000-of-00001", "ckpt-4.index"]


def test_full_disk_export_is_one_error_and_leaves_nothing(tmp_path, monkeypatch):
    from tfrf import runs
    from tfrf.export import saved_model

    def full_disk(module, directory, **kwargs):
        os.makedirs(os.path.join(directory, "variables"))
        raise tf.errors.ResourceExhaustedError(None, None,
                                               f"{directory}/variables/x.tempstate1; No space left on device")

    monkeypatch.setattr(tf.saved_model, "save", full_disk)
    base = tmp_path / "face"
    generator = runs.load_generator(fault_config().model, None)
    with pytest.raises(OSError, match=r"^\[Errno 28\] No space left on device: '\S+face/1'$"):
        saved_model.export_saved_model(generator, str(base))
    assert os.listdir(base) == []
