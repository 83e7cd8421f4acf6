"""Generator: every preset and K, intermediates, permutation invariance, gradients, save/reload, errors."""
import numpy as np
import pytest
import tensorflow as tf

import tfrf
from tfrf.models import Generator

from helpers import random_inputs

NARROW = 0.125  # channel multiplier for tests: the real topology, few channels


make_inputs = random_inputs


def small_generator(preset="synthetic", **overrides):
    return Generator(tfrf.ModelConfig.preset(preset, width_multiplier=overrides.pop("width", NARROW), **overrides))


@pytest.mark.parametrize("preset", sorted(tfrf.PRESETS))
def test_every_preset_every_k(preset):
    generator = small_generator(preset)
    config = generator.config
    for sources in (1, 2, 3, 4):
        out = generator(make_inputs(config, sources=sources, seed=sources), return_intermediates=True)
        image = out["image"].numpy()
        assert image.shape == (1, config.image_height, config.image_width, 3)
        assert np.all(np.abs(image) <= 1.0) and np.isfinite(image).all()
        for level, stride in (("h8", 8), ("h4", 4)):
            h, w = config.image_height // stride, config.image_width // stride
            assert out[level]["flows"].shape == (1, sources, h, w, 2)
            assert out[level]["residual_flows"].shape == (1, sources, h, w, 2)
            assert out[level]["attention"].shape == (1, sources, h, w, 1)
            assert out[level]["occlusions"].shape == (1, sources, h, w, 1)
            np.testing.assert_allclose(out[level]["attention"].numpy().sum(axis=1), 1.0, atol=1e-5)
            occlusions = out[level]["occlusions"].numpy()
            assert occlusions.min() >= 0.0 and occlusions.max() <= 1.0


def test_presets_match_design():
    expected = {
        "deepfashion": (256, 256, 18),
        "market1501": (128, 64, 18),
        "shapenet_chairs": (256, 256, 21),
        "kitti": (256, 256, 6),
        "voxceleb2": (256, 256, 3),
        "synthetic": (64, 64, 21),
    }
    for name, (h, w, cp) in expected.items():
        config = tfrf.ModelConfig.preset(name)
        assert (config.image_height, config.image_width, config.pose_channels) == (h, w, cp)
    assert tfrf.ModelConfig.preset("deepfashion", width_multiplier=0.5).channels(64) == 32
    with pytest.raises(ValueError, match="unknown preset"):
        tfrf.ModelConfig.preset("celeba")
    with pytest.raises(ValueError, match="multiple of 32"):
        tfrf.ModelConfig.preset("synthetic", image_height=48)


def test_output_independent_of_source_order():
    generator = small_generator(width=0.25)
    inputs = make_inputs(generator.config, batch=2, sources=4)
    out = generator(inputs).numpy()
    for order in ([3, 1, 0, 2], [1, 2, 3, 0]):
        permuted = dict(inputs, source_images=inputs["source_images"][:, order], source_poses=inputs["source_poses"][:, order])
        np.testing.assert_allclose(generator(permuted).numpy(), out, atol=1e-5)


def test_built_at_k2_runs_at_k5_with_same_weights():
    generator = small_generator()
    generator(make_inputs(generator.config, sources=2))
    weights_before = [w.numpy().copy() for w in generator.weights]
    out = generator(make_inputs(generator.config, sources=5))
    assert out.shape == (1, 64, 64, 3)
    assert len(generator.weights) == len(weights_before)
    for before, after in zip(weights_before, generator.weights):
        np.testing.assert_array_equal(before, after.numpy())
    # One traced graph with unknown K serves every K.
    spec = {
        "source_images": tf.TensorSpec([None, None, 64, 64, 3]),
        "source_poses": tf.TensorSpec([None, None, 64, 64, 21]),
        "target_pose": tf.TensorSpec([None, 64, 64, 21]),
    }
    traced = tf.function(lambda x: generator(x)).get_concrete_function(spec)
    for sources in (1, 3):
        inputs = make_inputs(generator.config, sources=sources, seed=7)
        # Graph and eager kernels may differ at rounding level; the decoder amplifies that.
        np.testing.assert_allclose(traced(inputs).numpy(), generator(inputs).numpy(), atol=1e-4)


@pytest.mark.parametrize("variant", ["no_residual_flow", "no_occlusion", "no_attention", "baseline"])
def test_ablations_through_the_generator(variant):
    config = tfrf.ModelConfig.ablation(tfrf.ModelConfig.preset("synthetic", width_multiplier=NARROW), variant)
    generator = Generator(config)
    out = generator(make_inputs(config, sources=3), return_intermediates=True)
    for level in ("h8", "h4"):
        if not config.use_residual_flow:
            np.testing.assert_array_equal(out[level]["residual_flows"].numpy(), 0.0)
            assert generator.predictor.fusing[level].trainable_weights == []
        if not config.use_attention:
            np.testing.assert_allclose(out[level]["attention"].numpy(), 1 / 3, atol=1e-6)
        if not config.use_occlusion:
            np.testing.assert_array_equal(out[level]["occlusions"].numpy(), 0.0)


def test_gradients_reach_every_trainable_weight():
    generator = small_generator()
    inputs = make_inputs(generator.config, batch=2, sources=2)
    target = tf.random.uniform([2, 64, 64, 3], -1, 1, seed=3)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.abs(generator(inputs, training=True) - target))
    grads = tape.gradient(loss, generator.trainable_weights)
    missing = [w.name for w, g in zip(generator.trainable_weights, grads) if g is None or not np.any(g.numpy())]
    assert not missing, f"no gradient reaches {missing}"


def test_tfa_and_gather_generators_agree():
    tfa_generator = small_generator(warp_backend="tfa")
    gather_generator = small_generator(warp_backend="gather")
    inputs = make_inputs(tfa_generator.config, sources=3)
    tfa_generator(inputs), gather_generator(inputs)
    gather_generator.set_weights(tfa_generator.get_weights())
    np.testing.assert_allclose(gather_generator(inputs).numpy(), tfa_generator(inputs).numpy(), atol=1e-5)


def test_gather_generator_compiles_with_xla():
    generator = small_generator(warp_backend="gather")
    inputs = make_inputs(generator.config, sources=2)
    eager = generator(inputs).numpy()
    compiled = tf.function(lambda x: generator(x), jit_compile=True)
    np.testing.assert_allclose(compiled(inputs).numpy(), eager, atol=1e-4)


@pytest.mark.slow
def test_save_and_reload_give_identical_outputs(tmp_path):
    generator = small_generator()
    inputs = make_inputs(generator.config, sources=2)
    expected = generator(inputs).numpy()

    weights_path = str(tmp_path / "generator.weights.h5")
    generator.save_weights(weights_path)
    restored = Generator(generator.config)
    restored(make_inputs(generator.config, sources=1))
    restored.load_weights(weights_path)
    np.testing.assert_array_equal(restored(inputs).numpy(), expected)

    model_dir = str(tmp_path / "saved_model")
    generator.save(model_dir, save_format="tf")
    reloaded = tf.keras.models.load_model(model_dir)
    np.testing.assert_allclose(reloaded(inputs).numpy(), expected, atol=1e-6)
    assert isinstance(reloaded, Generator) and reloaded.config == generator.config
    # Reloaded at K = 2, the model still takes K = 3.
    assert reloaded(make_inputs(generator.config, sources=3)).shape == (1, 64, 64, 3)


def test_config_round_trip():
    generator = small_generator(use_occlusion=False)
    clone = Generator.from_config(generator.get_config())
    assert clone.config == generator.config


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda x: dict(x, source_poses=x["source_poses"][:, :1]), r"source_poses must be \[B, K=2, H, W, 21\].*K differs"),
        (lambda x: dict(x, source_poses=x["source_poses"][..., :18]), r"source_poses must be \[B, K, H, W, 21\]"),
        (lambda x: dict(x, target_pose=x["target_pose"][..., :3]), r"target_pose must be \[B, H, W, 21\]"),
        (lambda x: dict(x, source_images=x["source_images"][:, :0], source_poses=x["source_poses"][:, :0]), r"K >= 1"),
        (lambda x: {k: (v[..., :48, :, :] if k != "target_pose" else v[:, :48]) for k, v in x.items()}, r"multiples of 32.*H = 48"),
        (lambda x: dict(x, source_images=x["source_images"][0]), r"source_images must be \[B, K, H, W, 3\]"),
        (lambda x: {k: v for k, v in x.items() if k != "target_pose"}, r"lack \['target_pose'\]"),
    ],
)
def test_bad_inputs_raise_value_errors(change, message):
    generator = small_generator()
    with pytest.raises(ValueError, match=message):
        generator(change(make_inputs(generator.config, sources=2)))


def test_predict_on_a_dataset_matches_eager_call():
    # Regression: TF 2.15's oneDNN rewrite fed the source images to the pose encoder when all
    # inputs came from one IteratorGetNext node (Keras predict/evaluate).
    generator = small_generator()
    inputs = make_inputs(generator.config, batch=4, sources=2)
    predicted = generator.predict(tf.data.Dataset.from_tensor_slices(inputs).batch(2), verbose=0)
    np.testing.assert_allclose(predicted, generator(inputs).numpy(), atol=1e-4)


def test_traced_generator_keeps_static_image_size_for_unknown_batch_and_sources():
    """A signature with unknown B and K still reports the image's H and W (exports and TF-Serving
    metadata show them): the nearest upsampling and the residual-flow conv keep static shapes."""
    from tfrf.config import ModelConfig
    from tfrf.models import build_generator

    config = ModelConfig.preset("synthetic", width_multiplier=0.125)
    generator = build_generator(config)
    size, channels = config.image_height, config.pose_channels
    traced = tf.function(lambda inputs: generator(inputs, return_intermediates=True), input_signature=[{
        "source_images": tf.TensorSpec([None, None, size, size, 3]),
        "source_poses": tf.TensorSpec([None, None, size, size, channels]),
        "target_pose": tf.TensorSpec([None, size, size, channels])}])
    outputs = traced.get_concrete_function().structured_outputs
    assert outputs["image"].shape.as_list() == [None, size, size, 3]
    assert outputs["h4"]["residual_flows"].shape.as_list() == [None, None, size // 4, size // 4, 2]
