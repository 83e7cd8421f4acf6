"""`LossWeights.saturation`: the hinge on the output's pre-tanh values that gives a saturated
output its gradient back (not in the paper; 0 in its presets)."""
import numpy as np
import pytest
import tensorflow as tf

from tfrf import losses
from tfrf.training import LossWeights, TrainConfig, runner
from tfrf.training.model import split_example

from helpers import tiny_train_config
from test_training import BATCH, K, SIZE, dataset_of, random_batch


def test_the_limit_is_where_an_8_bit_image_stops_telling_values_apart():
    assert (np.tanh(losses.SATURATION_LIMIT) + 1.0) * 127.5 == pytest.approx(254.5, abs=1e-9)
    assert losses.SATURATION_LIMIT == pytest.approx(3.1162, abs=1e-4)


def test_saturation_loss_known_values_and_gradient():
    logits = tf.constant([[0.0, 3.0, -3.1], [5.0, -7.0, 3.2]])
    limit = losses.SATURATION_LIMIT
    expected = ((5.0 - limit) + (7.0 - limit) + (3.2 - limit)) / 6
    with tf.GradientTape() as tape:
        tape.watch(logits)
        loss = losses.saturation_loss(logits)
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    np.testing.assert_allclose(tape.gradient(loss, logits).numpy(),
                               np.array([[0, 0, 0], [1, -1, 1]]) / 6, atol=1e-7)
    assert float(losses.saturation_loss(tf.zeros([2, 4, 4, 3]), limit=0.5)) == 0.0
    assert losses.saturation_loss(tf.constant([4.0], tf.float16)).dtype == tf.float32


def config(saturation):
    return tiny_train_config(SIZE, name="tiny", batch_size=BATCH, num_sources=K, flow_steps=1, full_steps=1,
                             steps_per_epoch=1, learning_rate=1e-3, discriminator_learning_rate=1e-3,
                             loss_weights=LossWeights(perceptual=0.0, style=0.0, saturation=saturation))


@pytest.fixture(scope="module")
def networks():
    return runner.create_networks(config(1.0))


def test_the_output_logits_are_what_the_tanh_maps_to_the_image(networks):
    inputs, _ = split_example({key: tf.constant(value) for key, value in random_batch(3).items()})
    outputs = networks.generator(inputs, training=False, return_intermediates=True)
    assert outputs["output_logits"].shape == (BATCH, SIZE, SIZE, 3)
    np.testing.assert_allclose(np.tanh(outputs["output_logits"].numpy()), outputs["image"].numpy(), atol=1e-6)


def test_a_saturated_output_gets_its_gradient_back_only_with_the_term(networks):
    """An output pushed far past +1 (to_rgb's bias +20: tanh' ~ 1e-17) has no gradient from L1; with
    the hinge, the step pulls to_rgb's bias down and reports the term in the total."""
    batch = random_batch(4)
    bias = networks.generator.predictor.to_rgb.bias
    original = bias.numpy().copy()
    gradients, reported = {}, {}
    for weight in (0.0, 1.0):
        model = runner.compile_stage("full", networks, config(weight))
        bias.assign(np.full_like(original, 20.0))
        inputs, target = split_example({key: tf.constant(value) for key, value in batch.items()})
        with tf.GradientTape() as tape:
            total, values, generated = model.generator_losses(inputs, target)
        gradients[weight] = tape.gradient(total, bias).numpy()
        reported[weight] = {name: float(value) for name, value in values.items()}
        assert float(tf.reduce_min(generated)) == 1.0  # every pixel saturated
    bias.assign(original)
    assert np.abs(gradients[0.0]).max() < 1e-6
    assert (gradients[1.0] > 0.2).all()  # d/d bias_c of mean(|x| - limit): 1/3 per channel
    assert "saturation_loss" not in reported[0.0]
    values = reported[1.0]
    assert values["saturation_loss"] > 15.0
    others = values["flow_loss"] + 2.5 * values["l1_loss"] + values["adversarial_loss"] * model.loss_weights_.adversarial
    assert values["generator_loss"] == pytest.approx(others + values["saturation_loss"], rel=1e-5)


def test_the_term_is_reported_by_fit_and_off_in_stage_one_and_the_presets(networks):
    model = runner.compile_stage("full", networks, config(0.5))
    assert "saturation_loss" in model.loss_names
    history = model.fit(dataset_of([random_batch(5)]).repeat(), steps_per_epoch=1, epochs=1, verbose=0)
    assert np.isfinite(history.history["saturation_loss"][0])
    assert "saturation_loss" not in runner.compile_stage("flow", networks, config(0.5)).loss_names
    for name in ("deepfashion", "market1501", "shapenet_chairs", "kitti", "voxceleb2", "synthetic"):
        assert TrainConfig.preset(name).loss_weights.saturation == 0.0, name  # the paper's recipe
    with pytest.raises(ValueError, match="only the rf generator returns"):
        TrainConfig.preset("demo", model={"architecture": "gfla"}, num_sources=1, eval_ks=(1,))  # the demo's hinge
    assert TrainConfig.preset("demo", model={"architecture": "gfla"}, num_sources=1, eval_ks=(1,),
                              loss_weights={"saturation": 0.0})
