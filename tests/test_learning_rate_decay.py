"""`TrainConfig.learning_rate_decay`: constant by default (the paper's); "cosine" falls from the
rate to COSINE_FLOOR of it over each stage's steps, as a schedule of the optimiser's step (so a
resumed run, which restores the step, continues the curve)."""
import math

import numpy as np
import pytest

from tfrf.training import runner
from tfrf.training.config import COSINE_FLOOR, TrainConfig


def test_cosine_runs_from_the_rate_to_the_floor_over_each_stage():
    with pytest.raises(ValueError, match="learning_rate_decay"):
        TrainConfig.preset("demo", learning_rate_decay="linear")
    config = TrainConfig.preset("demo", learning_rate_decay="cosine", flow_steps=40, full_steps=100,
                                learning_rate=1e-3, discriminator_learning_rate=2e-4,
                                loss_weights={"adversarial": 0.05})  # (the demo has no GAN term)
    assert TrainConfig.from_dict(config.to_dict()).learning_rate_decay == "cosine"
    for stage, steps in (("flow", 40), ("full", 100)):  # past the stage's end: the floor
        for rate in (1e-3, 2e-4):
            schedule = runner.stage_learning_rate(rate, config, stage)
            expected = [rate * (COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps)))
                        for step in (0, steps // 2, steps, 2 * steps)]
            np.testing.assert_allclose([float(schedule(step)) for step in (0, steps // 2, steps, 2 * steps)],
                                       expected, rtol=1e-5)
    # The optimisers of a compiled stage hold the schedules (generator and discriminator).
    networks = runner.create_networks(config)
    model = runner.compile_stage("full", networks, config)
    for optimizer, rate in ((model.generator_optimizer, 1e-3), (model.discriminator_optimizer, 2e-4)):
        held = optimizer.get_config()["learning_rate"]
        assert held["class_name"] == "CosineDecay", held
        assert held["config"]["decay_steps"] == 100 and held["config"]["initial_learning_rate"] == pytest.approx(rate)
        assert held["config"]["alpha"] == pytest.approx(COSINE_FLOOR)
    assert runner.stage_learning_rate(1e-3, TrainConfig.preset("demo", learning_rate_decay="constant"), "full") == 1e-3


def test_cosine_full_decays_stage_two_only():
    config = TrainConfig.preset("demo", learning_rate_decay="cosine_full", flow_steps=40, full_steps=100)
    assert runner.stage_learning_rate(1e-3, config, "flow") == 1e-3
    schedule = runner.stage_learning_rate(1e-3, config, "full")
    np.testing.assert_allclose([float(schedule(step)) for step in (0, 50, 100)],
                               [1e-3, 1e-3 * (COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5), 1e-3 * COSINE_FLOOR], rtol=1e-5)
    assert TrainConfig.from_dict(config.to_dict()).learning_rate_decay == "cosine_full"
