"""`python -m tfrf.benchmarks.flow_ceiling`: the flow extractor trained on the renderer's ground truth,
scored on held-out tuples; its loss by hand; a careless user's command lines."""
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import tiny_train_config
from tfrf.benchmarks import flow_ceiling
from tfrf.evaluation import data as data_lib
from tfrf.evaluation.mechanism import end_point_errors
from tfrf.training.config import LossWeights


def test_the_loss_is_the_mean_end_point_error_on_visible_pixels():
    rng = np.random.default_rng(0)
    flow, truth = rng.normal(size=(2, 3, 4, 4, 2)), rng.normal(size=(2, 3, 4, 4, 2))
    visible = rng.uniform(size=(2, 3, 4, 4)) < 0.4
    loss = flow_ceiling._visible_epe(tf.constant(flow, tf.float32), tf.constant(truth, tf.float32),
                                     tf.constant(visible, tf.float32))
    assert float(loss) == pytest.approx(end_point_errors(flow, truth, visible).mean(), rel=1e-5)
    nothing = flow_ceiling._visible_epe(tf.constant(flow, tf.float32), tf.constant(truth, tf.float32),
                                        tf.zeros(visible.shape))
    assert float(nothing) == 0.0  # no visible pixel: no loss, not NaN


def test_training_on_the_truth_moves_the_flow_below_the_zero_flow(tmp_path, capsys):
    config = tiny_train_config(size=32, train_objects=3, test_objects=2, learning_rate=2e-3, batch_size=8, seed=1,
                               loss_weights=LossWeights(correctness=0.0, photometric=1.0))
    cache = str(tmp_path / "cache")
    result = flow_ceiling.flow_ceiling(config, steps=(60, 1), k=2, examples=8, cache_dir=cache, verbose=0,
                                       then_stage1=4)
    assert [(row["loss"], row["steps"]) for row in result["rows"]] == [("ground truth", 1), ("ground truth", 60),
                                                                       ("stage 1", 64)]
    first, last, then = result["rows"]
    # Four steps of the photometric stage 1 moved the flow the truth had trained.
    assert then["seconds"] > last["seconds"] and then["epe_flow_h4"] != last["epe_flow_h4"]
    assert then["epe_zero_h4"] == last["epe_zero_h4"]
    # The zero flow's EPE is the mean ground-truth length on the visible pixels of the held-out tuples.
    data = data_lib.open_data("synthetic", seed=1, test_objects=2, image_size=32, cache_dir=cache, verbose=False)
    tuples, _ = data.test_tuples(2, 8)
    truth = data.ground_truth(tuples, 32)
    for level in ("h8", "h4"):
        zero = np.linalg.norm(truth[level]["flow"], axis=-1)[truth[level]["visible"]].mean()
        assert first[f"epe_zero_{level}"] == last[f"epe_zero_{level}"] == pytest.approx(zero, rel=1e-6)
    assert result["goal_h4"] == pytest.approx(0.5 * last["epe_zero_h4"])
    assert last["epe_flow_h4"] < first["epe_flow_h4"] and last["epe_flow_h4"] < last["epe_zero_h4"]
    assert last["seconds"] > first["seconds"] > 0
    table = flow_ceiling.format_result(result)
    share = last["epe_flow_h4"] / last["epe_zero_h4"]
    assert (f"| ground truth | 60 | {last['seconds']:.0f} | {last['epe_flow_h8']:.3f} ({last['epe_zero_h8']:.3f}) | "
            f"{last['epe_flow_h4']:.3f} ({last['epe_zero_h4']:.3f}) | {share:.0%} | {last['gain_flow_h4']:.2f} | ") in table
    assert "| stage 1 | 64 |" in table
    assert f"goal: EPE at H/4 <= {result['goal_h4']:.3f}" in table


@pytest.mark.parametrize("argv, message", [
    (["--steps", "0"], "must be >= 1"),
    (["--preset", "nonesuch"], "choose from"),
    (["--preset", "gfla_synthetic", "--steps", "1"], "needs 'rf'"),
    (["--dataset", "textured", "--steps", "1"], "--dataset textured"),
    (["--then-stage1", "-1"], "--then-stage1 must be >= 0"),
])
def test_a_careless_command_line_is_one_line_and_exit_2(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        code = flow_ceiling.main(argv + ["--cache-dir", str(tmp_path), "--out", str(tmp_path / "x.json")])
        raise SystemExit(code)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert message in error and "Traceback" not in error
    assert not (tmp_path / "x.json").exists()

