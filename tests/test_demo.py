"""`tfrf demo` and `tfrf train` end to end on tiny data; the nearest-azimuth baseline."""
import json
import os

import numpy as np
import pytest

from tfrf.cli import main
from tfrf.training.demo import run_demo
from tfrf.data.pipeline import ViewTable
from tfrf.training import TrainConfig
from tfrf.evaluation.scores import nearest_view_indices


def tiny_demo_config():
    return TrainConfig.preset(
        "demo", model={"image_height": 32, "image_width": 32, "width_multiplier": 0.125}, flow_steps=2, full_steps=2,
        steps_per_epoch=2, checkpoint_every=2, batch_size=2, train_objects=2, test_objects=2, eval_examples=4,
        eval_ks=(1, 2),
    )


@pytest.mark.slow
def test_demo_writes_every_artefact(tmp_path):
    out = str(tmp_path / "demo")
    metrics = run_demo(tiny_demo_config(), out, cache_dir=str(tmp_path / "cache"), verbose=0)
    for name in ("gallery.png", "internals.png", "metrics.json", "config.json", "generator_full.weights.h5"):
        assert os.path.isfile(os.path.join(out, name)), name
    with open(os.path.join(out, "metrics.json")) as stream:
        written = json.load(stream)
    assert written["trained"] == metrics["trained"]
    for key in ("trained", "untrained", "nearest_view"):
        assert set(written[key]) == {"1", "2"}
        for scores in written[key].values():
            assert scores["examples"] == 4
            assert 0 < scores["l1"] < 2 and np.isfinite(scores["psnr"]) and -1 <= scores["ssim"] <= 1
    assert written["stages"]["flow"]["end_step"] == 2 and written["stages"]["full"]["end_step"] == 2
    with open(os.path.join(out, "config.json")) as stream:
        assert TrainConfig.from_dict(json.load(stream)) == tiny_demo_config()


def test_nearest_view_baseline_picks_the_circularly_closest_azimuth():
    poses = np.array([[0, 0], [17, 2], [9, 0], [1, 1], [2, 0], [16, 0]], np.int32)
    table = ViewTable(images=np.zeros((6, 8, 8, 3), np.uint8), poses=poses, groups=np.zeros(6), pose_encoder="view21")
    tuples = np.array([
        [1, 2, 0],   # target azimuth 0: 17 is 1 bin away (wrapping), 9 is 9 away
        [3, 5, 4],   # target 2: azimuth 1 (1 away) beats 16 (4 away)
        [1, 3, 0],   # 17 and 1 both 1 away: elevation 1 beats 2
    ])
    np.testing.assert_array_equal(nearest_view_indices(table, tuples), [1, 3, 3])
    keypoints = ViewTable(images=np.zeros((2, 8, 8, 3), np.uint8), poses=np.zeros((2, 18, 2)), groups=np.zeros(2))
    with pytest.raises(ValueError, match="view21"):
        nearest_view_indices(keypoints, np.array([[0, 1]]))


def test_train_dry_run_prints_the_resolved_config(capsys):
    assert main(["train", "--preset", "market1501", "--k", "3", "--steps", "10", "--stage", "flow",
                 "--width-multiplier", "0.5", "--vgg-weights", "none", "--dry-run"]) == 0
    config = TrainConfig.from_dict(json.loads(capsys.readouterr().out))
    assert (config.num_sources, config.flow_steps, config.full_steps, config.batch_size) == (3, 10, 200000, 8)
    assert config.model.width_multiplier == 0.5 and config.vgg_weights is None
    assert (config.flow_loss_on, config.learning_rate_decay) == ("base", "constant")  # the paper's


def test_train_flags_set_the_flow_loss_target_and_the_learning_rate_decay(capsys):
    assert main(["train", "--preset", "demo", "--flow-loss-on", "refined", "--learning-rate-decay", "cosine",
                 "--full-generator-epsilon", "1e-3", "--dry-run"]) == 0
    config = TrainConfig.from_dict(json.loads(capsys.readouterr().out))
    assert (config.flow_loss_on, config.learning_rate_decay, config.full_generator_epsilon) == ("refined", "cosine", 1e-3)
    assert main(["train", "--preset", "demo", "--full-generator-epsilon", "0", "--dry-run"]) == 2
    assert "--full-generator-epsilon must be a finite number > 0, got 0.0" in capsys.readouterr().err
    assert main(["train", "--preset", "demo", "--saturation-weight", "0.5", "--dry-run"]) == 0
    config = TrainConfig.from_dict(json.loads(capsys.readouterr().out))
    assert config.loss_weights.saturation == 0.5
    assert config.loss_weights.photometric == TrainConfig.preset("demo").loss_weights.photometric  # the rest kept
    assert main(["train", "--preset", "demo", "--saturation-weight", "-1", "--dry-run"]) == 2
    assert "LossWeights.saturation must be a finite number >= 0, got -1.0" in capsys.readouterr().err
    # GFLA's generator has no pre-tanh output: --architecture gfla drops the demo's hinge, and refuses one asked for.
    assert main(["train", "--preset", "demo", "--architecture", "gfla", "--dry-run"]) == 0
    assert TrainConfig.from_dict(json.loads(capsys.readouterr().out)).loss_weights.saturation == 0.0
    assert main(["train", "--preset", "demo", "--architecture", "gfla", "--saturation-weight", "1", "--dry-run"]) == 2
    assert "only the rf generator returns" in capsys.readouterr().err


@pytest.mark.slow
def test_train_command_runs_and_resumes(tmp_path, capsys):
    out = str(tmp_path / "run")
    args = ["train", "--preset", "demo", "--data-dir", "synthetic", "--cache-dir", str(tmp_path / "cache"),
            "--train-objects", "2", "--test-objects", "1", "--stage", "flow", "--batch-size", "2",
            "--width-multiplier", "0.125", "--out", out, "--quiet"]
    assert main(args + ["--steps", "2"]) == 0
    assert "stage flow: steps 0 -> 2" in capsys.readouterr().out
    assert os.path.isfile(os.path.join(out, "config.json"))
    assert any(name.startswith("events") for name in os.listdir(os.path.join(out, "logs", "flow")))
    assert main(args + ["--steps", "3"]) == 0  # a longer run continues where the last stopped
    assert "stage flow: steps 2 -> 3" in capsys.readouterr().out
    before = open(os.path.join(out, "config.json")).read()
    assert main(args + ["--steps", "4", "--learning-rate", "0.5", "--seed", "3"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "differing fields: discriminator_learning_rate" in error
    assert "learning_rate (0.0005 -> 0.5)" in error and "seed (0 -> 3)" in error
    assert open(os.path.join(out, "config.json")).read() == before  # nothing in the run was touched
    assert main(["train", "--data-dir", str(tmp_path), "--out", out]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "is not a prepared TFDS version folder" in error
