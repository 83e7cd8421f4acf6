"""`TrainConfig.full_generator_epsilon`: the epsilon of the generator's Adam in stage 2.

Keras's default (1e-7, the recipe's) unless set; stage 1 and the discriminator always keep it. A
larger epsilon keeps Adam from rescaling the vanishing gradients of a saturated tanh to full-size
steps (seed 1's full model on the chairs otherwise collapses to a white image in stage 2)."""
import json

import numpy as np
import pytest
import tensorflow as tf

from tfrf.benchmarks import ablation
from tfrf.training import runner
from tfrf.training.config import KERAS_ADAM_EPSILON, TrainConfig


def test_default_is_keras_epsilon_and_the_option_round_trips_through_json():
    assert KERAS_ADAM_EPSILON == 1e-7
    assert TrainConfig.preset("demo").full_generator_epsilon == 1e-7
    config = TrainConfig.preset("demo", full_generator_epsilon=1e-3)
    loaded = TrainConfig.from_dict(json.loads(config.to_json()))
    assert loaded.full_generator_epsilon == 1e-3 and loaded == config
    # A config.json written before the field existed loads with Keras's epsilon.
    old = json.loads(TrainConfig.preset("demo").to_json())
    del old["full_generator_epsilon"]
    assert TrainConfig.from_dict(old).full_generator_epsilon == 1e-7
    for bad in (0.0, -1e-3, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="full_generator_epsilon"):
            TrainConfig.preset("demo", full_generator_epsilon=bad)


def test_only_the_stage_2_generator_optimizer_takes_it():
    config = TrainConfig.preset("demo", full_generator_epsilon=1e-3, model={"image_height": 32, "image_width": 32},
                                loss_weights={"adversarial": 0.05})  # (the demo has no GAN term)
    assert runner.generator_epsilon(config, "flow") == 1e-7
    assert runner.generator_epsilon(config, "full") == 1e-3
    networks = runner.create_networks(config)
    full = runner.compile_stage("full", networks, config)
    assert full.generator_optimizer.get_config()["epsilon"] == pytest.approx(1e-3)
    assert full.discriminator_optimizer.get_config()["epsilon"] == pytest.approx(1e-7)
    flow = runner.compile_stage("flow", networks, config)
    assert flow.generator_optimizer.get_config()["epsilon"] == pytest.approx(1e-7)


@pytest.mark.parametrize("epsilon", [1e-7, 1e-3])
def test_adam_updates_equal_the_hand_computed_ones(epsilon):
    """Three updates of the stage-2 generator optimiser against Adam written out by hand: with
    gradients far below epsilon the large epsilon shrinks the step, the default does not."""
    config = TrainConfig.preset("demo", full_generator_epsilon=epsilon)
    optimizer = tf.keras.optimizers.Adam(config.learning_rate, config.beta_1, config.beta_2,
                                         epsilon=runner.generator_epsilon(config, "full"))
    start = np.array([0.5, -0.25, 1.0], np.float32)
    variable = tf.Variable(start)
    gradients = [np.array([1e-5, -2e-5, 4e-6], np.float32), np.array([2e-5, -1e-5, 4e-6], np.float32),
                 np.array([1e-4, 1e-5, -4e-6], np.float32)]
    lr, b1, b2 = config.learning_rate, config.beta_1, config.beta_2
    m = v = np.zeros(3, np.float64)
    expected = start.astype(np.float64)
    for t, gradient in enumerate(gradients, start=1):
        optimizer.apply_gradients([(tf.constant(gradient), variable)])
        m = b1 * m + (1 - b1) * gradient
        v = b2 * v + (1 - b2) * gradient.astype(np.float64) ** 2
        # Keras's form: lr_t = lr sqrt(1 - b2^t) / (1 - b1^t); step lr_t m / (sqrt(v) + epsilon).
        expected = expected - lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (np.sqrt(v) + epsilon)
        np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-6, atol=1e-9)
    first_step = np.abs(start - variable.numpy())
    if epsilon == 1e-7:  # sign-like steps of about lr whatever the gradient's size
        assert first_step.min() > 0.5 * lr
    else:  # gradients ~1e-5 against epsilon 1e-3: steps about a hundredth of lr
        assert first_step.max() < 0.1 * lr


def test_ablation_passes_it_to_stage_2_and_keeps_the_shared_warm_up():
    args = ablation.parse_arguments(["--full-generator-epsilon", "1e-3", "--quick"])
    settings = ablation.settings_of(args)
    assert settings["full_generator_epsilon"] == 1e-3
    assert ablation.ablation_config(settings, "full").full_generator_epsilon == 1e-3
    assert ablation.ablation_config(settings, "no_residual_flow").full_generator_epsilon == 1e-3
    default = ablation.settings_of(ablation.parse_arguments(["--quick"]))
    assert "full_generator_epsilon" not in default
    assert ablation.ablation_config(default, "full").full_generator_epsilon == 1e-7
    with pytest.raises(ValueError, match="full-generator-epsilon"):
        ablation.settings_of(ablation.parse_arguments(["--full-generator-epsilon", "0"]))


def test_ablation_full_learning_rate_sets_stage_2_only():
    settings = ablation.settings_of(ablation.parse_arguments(["--full-learning-rate", "1e-4", "--quick"]))
    demo = TrainConfig.preset("demo")
    for variant in ("full", "no_residual_flow", "baseline"):
        config = ablation.ablation_config(settings, variant)
        assert config.learning_rate == 1e-4 and config.discriminator_learning_rate == demo.discriminator_learning_rate
    assert ablation.ablation_config(settings, "gfla").learning_rate == TrainConfig.preset("gfla_synthetic").learning_rate
    default = ablation.settings_of(ablation.parse_arguments(["--quick"]))
    assert ablation.ablation_config(default, "full").learning_rate == demo.learning_rate
    for bad in ("0", "-1e-4", "nan"):
        with pytest.raises(ValueError, match="full-learning-rate"):
            ablation.settings_of(ablation.parse_arguments([f"--full-learning-rate={bad}"]))
