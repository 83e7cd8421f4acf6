"""A new user's first `tfrf train`: nothing downloads, the progress bar counts the steps that run,
and the training length can follow the data (`--epochs`)."""

import numpy as np
import pytest
import tensorflow as tf

from tfrf.cli import build_parser, main
from tfrf.commands import train as train_command
from tfrf.data.pipeline import ViewTable
from tfrf.data.tuples import DEFAULT_MAX_EPOCHS, capped_steps, steps_for_epochs, tuples_per_epoch

TINY = ["--preset", "synthetic", "--data-dir", "synthetic", "--image-size", "32", "32", "--width-multiplier", "0.125",
        "--batch-size", "2", "--train-objects", "2", "--test-objects", "1", "--stage", "flow", "--quiet"]


def test_imagenet_vgg_weights_missing_stop_before_anything_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr("tfrf.losses.vgg.keras_cache_paths",
                        lambda name: [str(tmp_path / "keras" / "models" / name), str(tmp_path / "tmp" / name)])
    out = tmp_path / "run"
    assert main(["train", *TINY, "--vgg-weights", "imagenet", "--steps", "2", "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "--vgg-weights PATH" in error[0] and "--vgg-weights none" in error[0]
    assert str(tmp_path / "keras" / "models" / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5") in error[0]
    assert not out.exists()
    assert main(["train", *TINY, "--vgg-weights", str(tmp_path / "nowhere.h5"), "--steps", "2",
                 "--out", str(out)]) == 2
    assert "--vgg-weights" in capsys.readouterr().err and not out.exists()


class Steps(tf.keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.targets, self.steps = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.targets.append(self.params["steps"])

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append(int(self.model.generator_optimizer.iterations.numpy()))


def test_progress_bar_counts_the_steps_that_run_and_epochs_set_the_steps(tmp_path, capsys):
    cache = str(tmp_path / "cache")
    recorder = Steps()
    args = build_parser().parse_args(["train", *TINY, "--steps", "3", "--cache-dir", cache, "--out",
                                      str(tmp_path / "a")])
    assert train_command.train(args, extra_callbacks=[recorder]) == 0
    assert recorder.targets == [3] and recorder.steps == [1, 2, 3]  # not 1/500 of the preset's epoch
    assert "stage flow: 3 steps of batch 2" in capsys.readouterr().out

    recorder = Steps()
    args = build_parser().parse_args(["train", *TINY, "--epochs", "0.01", "--cache-dir", cache, "--out",
                                      str(tmp_path / "b")])
    assert train_command.train(args, extra_callbacks=[recorder]) == 0
    printed = capsys.readouterr().out
    tuples = int(printed.split("passes over the ")[1].split()[0])
    assert tuples == 2 * 54 and recorder.steps[-1] == steps_for_epochs(0.01, tuples, 2) == 1
    assert main(["train", *TINY, "--epochs", "1", "--steps", "2", "--out", str(tmp_path / "c")]) == 2


class StopAtOnce(tf.keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        self.model.stop_training = True


def test_the_preset_length_stops_at_most_passes_over_small_data(tmp_path, capsys):
    small = ["--train-objects", "1", "--batch-size", "4"]
    args = build_parser().parse_args(["train", *TINY, *small, "--out", str(tmp_path / "run")])
    assert train_command.train(args, extra_callbacks=[StopAtOnce()]) == 0
    printed = capsys.readouterr().out
    tuples = 54
    expected = steps_for_epochs(DEFAULT_MAX_EPOCHS, tuples, 4)  # 1350, not the synthetic preset's 2000
    assert expected == 1350
    assert f"stage flow: {expected} steps of batch 4 = {DEFAULT_MAX_EPOCHS:g} passes over the {tuples}" in printed
    # A stage length the user gives is kept.
    args = build_parser().parse_args(["train", *TINY, *small, "--flow-steps", "2000", "--out", str(tmp_path / "given")])
    assert train_command.train(args, extra_callbacks=[StopAtOnce()]) == 0
    assert "stage flow: 2000 steps of batch 4" in capsys.readouterr().out
    assert capped_steps(2000, tuples, 4) == expected and capped_steps(100, tuples, 4) == 100
    assert capped_steps(10, 5, 8, max_epochs=2) == 2


def test_steps_for_epochs_and_tuples_per_epoch():
    assert [steps_for_epochs(*case) for case in ((1, 5, 5), (2, 5, 2), (0.5, 10, 4), (1, 1, 8))] == [1, 5, 2, 1]
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="--epochs"):
            steps_for_epochs(bad, 10, 2)
    # Groups of 3, 1 and 2 images: with K = 2 only the group of 3 has targets with 2 other images.
    table = ViewTable(images=np.zeros((6, 8, 8, 3), np.uint8), poses=np.zeros((6, 2), np.int32),
                      groups=np.array([0, 0, 0, 1, 2, 2]), pose_encoder="view21")
    assert tuples_per_epoch(table, 2) == 3 and tuples_per_epoch(table, 1) == 5


def test_a_missing_optional_package_is_one_line_naming_the_install(tmp_path, monkeypatch, capsys):
    import sys

    from PIL import Image

    monkeypatch.setitem(sys.modules, "mediapipe", None)  # import mediapipe raises ImportError
    monkeypatch.setitem(sys.modules, "mediapipe.python.solutions", None)
    photo = tmp_path / "me.png"
    Image.new("RGB", (64, 128), "white").save(photo)
    assert main(["pose", str(photo), "--out", str(tmp_path / "me.json")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and 'pip install -e ".[mediapipe]"' in error[0], error
    assert not (tmp_path / "me.json").exists()


def test_truncated_weights_are_reported_as_unreadable(tmp_path, capsys):
    from helpers import save_tiny_people_model

    _, weights, config_path = save_tiny_people_model(tmp_path)
    data = open(weights, "rb").read()
    truncated = tmp_path / "truncated.weights.h5"
    truncated.write_bytes(data[: len(data) // 2])
    assert main(["export", "saved-model", "--config", config_path, "--weights", str(truncated),
                 "--out", str(tmp_path / "models" / "people")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "cannot be read" in error[0] and "does not fit" not in error[0], error
    exported = tmp_path / "models" / "people"
    assert not exported.exists() or not any(exported.iterdir())


def test_a_preset_that_contradicts_the_config_is_refused(tmp_path, capsys):
    from helpers import save_tiny_people_model

    _, weights, config_path = save_tiny_people_model(tmp_path)  # a deepfashion config
    base = ["export", "saved-model", "--config", config_path, "--weights", weights, "--out", str(tmp_path / "m" / "p")]
    assert main([*base, "--preset", "market1501"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "--preset market1501 contradicts" in error[0] and "deepfashion" in error[0], error
    assert main([*base, "--preset", "deepfashion"]) == 0  # the same preset is no contradiction


@pytest.mark.parametrize("flags, message", [
    (["--image-size", "100", "96"], "--image-size must be a positive multiple of 32, got 100"),
    (["--k", "0"], "--k must be >= 1, got 0"),
    (["--steps", "-5"], "--steps must be >= 0, got -5"),
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
])
def test_train_errors_name_the_flag_typed(flags, message, capsys):
    assert main(["train", "--preset", "synthetic", *flags, "--dry-run"]) == 2
    assert capsys.readouterr().err.strip() == f"tfrf train: {message}"
