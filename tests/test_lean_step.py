"""The lean training step computes what the straightforward reference step computes.

Both `TrainingModel`s share one set of networks; on the same batch the losses and the gradients of
every trained variable must agree. Float32 tolerances: losses 1e-5 relative; gradients 1e-4 of the
largest gradient entry of each variable plus 1e-6 of the model's largest (for gradients that are
zero up to rounding). The two steps sum the same terms in another order (VGG on
parts of the batch instead of one concatenation, split instead of concatenated residual conv,
tiles of the similarity, float32 instead of float64 fusion). Under mixed_float16 the two steps round
differently (the reference casts the flows to float16 before warping), so there both are held
against the float32 step on the same weights.
Also: the pieces on their own — tiled best match, VGG to a depth and resumed, the split
residual conv, float32 flows under mixed precision.
"""
from functools import partial

import numpy as np
import pytest
import tensorflow as tf

from tfrf.layers import ResidualFusingBlock
from tfrf.losses import VGGFeatures
from tfrf.losses.correctness import best_similarity, sampling_correctness_loss
from tfrf.benchmarks.reference_step import compile_reference_stage
from tfrf.training import runner

from helpers import tiny_config, tiny_train_config

SIZE, K, BATCH = 64, 2, 2


# The deepfashion training preset on its model at SIZE, 1/8 width and the gather warp, no VGG weights.
lean_config = partial(tiny_train_config, SIZE, "deepfashion", train_preset="deepfashion", batch_size=BATCH,
                      num_sources=K)


def random_batch(seed=0, pose_channels=18):
    rng = np.random.default_rng(seed)
    return {
        "source_images": tf.constant(rng.uniform(-1, 1, (BATCH, K, SIZE, SIZE, 3)), tf.float32),
        "source_poses": tf.constant(rng.uniform(0, 1, (BATCH, K, SIZE, SIZE, pose_channels)), tf.float32),
        "target_pose": tf.constant(rng.uniform(0, 1, (BATCH, SIZE, SIZE, pose_channels)), tf.float32),
        "target_image": tf.constant(rng.uniform(-1, 1, (BATCH, SIZE, SIZE, 3)), tf.float32),
    }


def losses_and_gradients(model, batch):
    inputs = {key: batch[key] for key in ("source_images", "source_poses", "target_pose")}
    variables = model.generator_variables()

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            total, values, _ = model.generator_losses(inputs, batch["target_image"], training=True)
        return values, tape.gradient(total, variables)

    values, gradients = step()
    return {name: float(value) for name, value in values.items()}, [g.numpy() for g in gradients], variables


def two_steps(config, stage, batch):
    """(lean, reference) results of `losses_and_gradients` on one set of networks."""
    networks = runner.create_networks(config)
    models = runner.compile_stage(stage, networks, config), compile_reference_stage(stage, networks, config)
    return networks, [losses_and_gradients(model, batch) for model in models]


def check_equal(lean, reference, loss_rtol, gradient_tolerance):
    (lean_values, lean_gradients, variables), (reference_values, reference_gradients, _) = lean, reference
    assert set(lean_values) == set(reference_values)
    for name, value in reference_values.items():
        assert lean_values[name] == pytest.approx(value, rel=loss_rtol, abs=1e-7), name
    # Gradients that are zero up to rounding (a bias before instance norm; the attention logits'
    # bias, under a softmax over K) are rounding noise in both steps: an absolute floor of 1e-6 of
    # the model's largest gradient entry covers them (they measure ~1e-8 of it).
    floor = 1e-6 * max(np.abs(reference).max() for reference in reference_gradients)
    for variable, lean_gradient, reference_gradient in zip(variables, lean_gradients, reference_gradients):
        scale = np.abs(reference_gradient).max()
        assert scale > 0, f"{variable.name} has no gradient in the reference step"
        error = np.abs(lean_gradient - reference_gradient).max()
        assert error <= gradient_tolerance * scale + floor, (variable.name, error / scale, scale)


def relative_error(gradients, reference_gradients):
    flat = np.concatenate([g.ravel() for g in gradients])
    reference = np.concatenate([g.ravel() for g in reference_gradients])
    return np.linalg.norm(flat - reference) / np.linalg.norm(reference)


@pytest.mark.parametrize("stage", ["flow", pytest.param("full", marks=pytest.mark.slow)])
def test_lean_step_equals_reference_step(stage):
    _, (lean, reference) = two_steps(lean_config(), stage, random_batch(0))
    check_equal(lean, reference, loss_rtol=1e-5, gradient_tolerance=1e-4)
    assert lean[0]["correctness_loss"] > 0


@pytest.mark.slow
def test_lean_step_under_mixed_precision_is_as_close_to_float32_as_the_reference():
    """Under mixed_float16 both steps round; the reference also casts the flows to float16 before
    warping. With the mixed networks' weights copied into float32 networks, the float32 step is
    the yardstick: the lean mixed step's losses are within 2e-3 of it, and its gradients (all
    variables, relative L2 error) within 10% and no further from it than the reference mixed
    step's (measured: lean 6.1%, reference 7.4%; flow extractor's worst variable 16% vs 28%)."""
    batch = random_batch(1)
    tf.keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        mixed_networks, (lean, reference) = two_steps(lean_config(), "full", batch)
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
    float32_networks = runner.create_networks(lean_config())
    float32_networks.generator.set_weights(mixed_networks.generator.get_weights())
    float32_networks.discriminator.set_weights(mixed_networks.discriminator.get_weights())
    model = runner.compile_stage("full", float32_networks, lean_config())
    exact_values, exact_gradients, _ = losses_and_gradients(model, batch)
    for name, value in exact_values.items():
        assert lean[0][name] == pytest.approx(value, rel=2e-3, abs=1e-6), name
    lean_error = relative_error(lean[1], exact_gradients)
    reference_error = relative_error(reference[1], exact_gradients)
    assert lean_error < 0.1
    assert lean_error <= 1.1 * reference_error, (lean_error, reference_error)


def _unit(array):
    return array / np.linalg.norm(array, axis=-1, keepdims=True)


@pytest.mark.parametrize("tile", [1, 7, 64, 1000])
def test_tiled_best_match_equals_the_whole_matrix(tile):
    rng = np.random.default_rng(3)
    source, target = _unit(rng.normal(size=(3, 50, 8))), _unit(rng.normal(size=(3, 45, 8)))
    expected = np.max(np.einsum("bqc,blc->bql", source, target), axis=1)  # numpy reference
    static = best_similarity(tf.constant(source, tf.float32), tf.constant(target, tf.float32), tile)
    np.testing.assert_allclose(static.numpy(), expected, atol=1e-6)
    dynamic = tf.function(lambda s, t: best_similarity(s, t, tile),
                          input_signature=[tf.TensorSpec([None, None, 8])] * 2)
    np.testing.assert_allclose(dynamic(tf.constant(source, tf.float32), tf.constant(target, tf.float32)).numpy(),
                               expected, atol=1e-6)


def test_tiled_correctness_loss_equals_untiled_and_has_no_gradient_through_the_max():
    rng = np.random.default_rng(4)
    source = tf.constant(rng.normal(size=(2, 2, 8, 8, 16)), tf.float32)
    target = tf.constant(rng.normal(size=(2, 8, 8, 16)), tf.float32)
    flow = tf.Variable(rng.normal(size=(2, 2, 8, 8, 2)) * 2, dtype=tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        whole = sampling_correctness_loss(source, target, flow)
        tiled = sampling_correctness_loss(source, target, flow, tile_size=10)
    assert float(tiled) == pytest.approx(float(whole), rel=1e-6)
    np.testing.assert_allclose(tape.gradient(tiled, flow).numpy(), tape.gradient(whole, flow).numpy(), atol=1e-7)


def test_vgg_features_to_a_depth_and_resumed_equal_the_whole_pass():
    vgg = VGGFeatures(weights=None)
    images = tf.constant(np.random.default_rng(5).uniform(-1, 1, (2, 32, 32, 3)), tf.float32)
    whole = vgg(images)
    shallow = vgg.features(images, ["relu3_1", "relu4_1"])
    assert set(shallow) == {"relu3_1", "relu4_1"}
    deeper = vgg.features(None, ["relu5_1"], start=("relu4_1", shallow["relu4_1"]))
    for name, value in {**shallow, **deeper}.items():
        np.testing.assert_allclose(value.numpy(), whole[name].numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="not among"):
        VGGFeatures(["relu3_1"], weights=None).features(images, ["relu5_1"])


def test_fusing_default_path_equals_the_reference_path():
    rng = np.random.default_rng(6)
    block = ResidualFusingBlock(warp_backend="gather", residual_init_stddev=0.1)
    reference_block = ResidualFusingBlock(warp_backend="gather", impl="reference")
    target = tf.constant(rng.normal(size=(2, 8, 8, 6)), tf.float32)
    sources = tf.constant(rng.normal(size=(2, 3, 8, 8, 6)), tf.float32)
    flows = tf.constant(rng.normal(size=(2, 3, 8, 8, 2)) * 3, tf.float32)
    logits = tf.constant(rng.normal(size=(2, 3, 8, 8, 1)), tf.float32)
    occlusions = tf.constant(rng.uniform(size=(2, 3, 8, 8, 1)), tf.float32)
    lean, lean_parts = block(target, sources, flows, logits, occlusions, return_intermediates=True, training=True)
    reference_block(target, sources, flows, logits, occlusions)
    reference_block.set_weights(block.get_weights())
    reference, reference_parts = reference_block(target, sources, flows, logits, occlusions, return_intermediates=True,
                                           training=True)
    assert float(tf.reduce_max(tf.abs(lean_parts["residual_flows"]))) > 0.1
    np.testing.assert_allclose(lean.numpy(), reference.numpy(), atol=1e-5)
    np.testing.assert_allclose(lean_parts["residual_flows"].numpy(), reference_parts["residual_flows"].numpy(),
                               atol=1e-5)
    inference = block(target, sources, flows, logits, occlusions, training=False)
    np.testing.assert_allclose(inference.numpy(), lean.numpy(), atol=1e-5)


def test_flows_are_float32_under_mixed_precision():
    from tfrf.models import build_generator

    tf.keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        config = tiny_config("deepfashion", SIZE, warp_backend="gather")
        generator = build_generator(config)
        outputs = generator(generator.dummy_inputs(1, 2), return_intermediates=True)
        for level in ("h8", "h4"):
            assert outputs[level]["flows"].dtype == tf.float32, level
        assert outputs["image"].dtype == tf.float32
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
