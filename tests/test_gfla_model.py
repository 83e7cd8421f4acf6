"""GFLAGenerator: the K = 1 contract, intermediates, the view-synthesis variant, build_generator,
serialisation, a training step and XLA. GFLA's exact parameter counts and the equality with GFLA's
own forward pass: tests/test_gfla_convert.py (its full-width models)."""
import numpy as np
import pytest
import tensorflow as tf

import tfrf
from tfrf.models import GFLAGenerator, build_generator

from gfla_reference import randomize_weights
from helpers import random_inputs, tiny_config


def gfla_config(preset="deepfashion", **changes):
    """The GFLA architecture of `preset` at 64x64 and 1/8 width."""
    return tiny_config(preset, **{"architecture": "gfla", **changes})


def built(config, seed=0):
    """A GFLAGenerator with image-like random weights."""
    generator = GFLAGenerator(config)
    generator(generator.dummy_inputs())
    randomize_weights(generator, seed)
    return generator


def small_inputs(config, sources=1, seed=0, size=64):
    return random_inputs(config, batch=2, sources=sources, seed=seed, height=size, width=size)


def test_build_generator_maps_the_architecture():
    assert type(build_generator(gfla_config())) is GFLAGenerator
    assert type(build_generator(gfla_config().replace(architecture="rf"))) is tfrf.models.Generator
    with pytest.raises(ValueError, match="architecture must be one of"):
        gfla_config(architecture="unet")
    with pytest.raises(ValueError, match="gfla_attention_kernel_sizes must hold one"):
        gfla_config(gfla_attention_kernel_sizes=(3,))
    with pytest.raises(ValueError, match="ordered subset"):
        gfla_config(gfla_attention_levels=("h4", "h8"))


def test_one_source_only():
    generator = GFLAGenerator(gfla_config())
    assert generator.max_sources == 1
    with pytest.raises(ValueError, match=r"K = 2"):
        generator(small_inputs(generator.config, sources=2))
    with pytest.raises(ValueError, match=r"K = 3"):
        generator.encode_sources(np.zeros((1, 3, 64, 64, 3), np.float32))
    # A K unknown when traced fails at run time: tests/test_gfla_export.py (serving signature).


@pytest.mark.parametrize("preset,levels,kernels",
                         [("deepfashion", ("h8", "h4"), (3, 5)), ("market1501", ("h4",), (3,))])
def test_outputs_and_intermediates(preset, levels, kernels):
    generator = built(gfla_config(preset))
    inputs = small_inputs(generator.config)
    out = generator(inputs, return_intermediates=True)
    assert generator.levels == levels and sorted(out) == sorted(("image", "coverage") + levels)
    coverage = out["coverage"].numpy()  # one source: its share is GFLA's mask at the finest level
    assert coverage.shape == (2, 64, 64, 2) and coverage.min() >= 0.0 and coverage.max() <= 1.0
    np.testing.assert_allclose(coverage.sum(-1), 1.0, atol=1e-5)
    finest = tf.image.resize(out[levels[-1]]["masks"][:, 0], (64, 64)).numpy()[..., 0]
    np.testing.assert_allclose(coverage[..., 0], finest, atol=1e-5)
    image = out["image"].numpy()
    assert image.shape == (2, 64, 64, 3) and image.dtype == np.float32 and np.abs(image).max() <= 1.0
    assert image.std() > 0.1
    np.testing.assert_array_equal(generator(inputs).numpy(), image)
    for level, k in zip(levels, kernels):
        size = 64 // int(level[1:])
        intermediates = {name: value.numpy() for name, value in out[level].items()}
        assert intermediates["flows"].shape == (2, 1, size, size, 2)
        assert intermediates["local_attention"].shape == (2, 1, size, size, k * k)
        np.testing.assert_allclose(intermediates["local_attention"].sum(-1), 1.0, atol=1e-5)  # softmax over k^2
        np.testing.assert_allclose(intermediates["occlusions"] + intermediates["masks"], 1.0, atol=1e-6)
        assert ((intermediates["masks"] > 0) & (intermediates["masks"] < 1)).all()


def test_the_target_pose_drives_the_image_and_source_pose_drives_the_flows():
    generator = built(gfla_config())
    inputs = small_inputs(generator.config, seed=1)
    other = small_inputs(generator.config, seed=2)
    first = generator(inputs, return_intermediates=True)
    changed_target = generator(dict(inputs, target_pose=other["target_pose"]), return_intermediates=True)
    assert np.abs(first["image"].numpy() - changed_target["image"].numpy()).max() > 1e-3
    changed_source_pose = generator(dict(inputs, source_poses=other["source_poses"]), return_intermediates=True)
    assert np.abs(first["h4"]["flows"].numpy() - changed_source_pose["h4"]["flows"].numpy()).max() > 1e-4


def test_view_synthesis_variant_reads_pose_vectors():
    config = gfla_config("shapenet_chairs")
    assert config.gfla_view_synthesis and config.pose_channels == 21
    generator = built(config)
    one_hot = np.eye(21, dtype=np.float32)

    def views(source_vector, target_vector):
        inputs = random_inputs(config, batch=1, sources=1, seed=5, height=64, width=64)
        inputs["source_poses"] = np.broadcast_to(source_vector, (1, 1, 64, 64, 21)).copy()
        inputs["target_pose"] = np.broadcast_to(target_vector, (1, 64, 64, 21)).copy()
        return generator(inputs, return_intermediates=True)

    base = views(one_hot[2] + one_hot[18], one_hot[5] + one_hot[19])
    turned = views(one_hot[2] + one_hot[18], one_hot[9] + one_hot[19])
    assert np.abs(base["image"].numpy() - turned["image"].numpy()).max() > 1e-3
    # The flow network sees the source image and the pose difference only (GFLA's ShapeNet
    # flow net): shifting both poses by the same vector keeps the flows, not the image.
    shift = 0.5 * one_hot[7]
    shifted = views(one_hot[2] + one_hot[18] + shift, one_hot[5] + one_hot[19] + shift)
    for level in ("h8", "h4"):
        np.testing.assert_allclose(shifted[level]["flows"].numpy(), base[level]["flows"].numpy(), atol=1e-5)
        assert np.abs(turned[level]["flows"].numpy() - base[level]["flows"].numpy()).max() > 1e-6
    assert np.abs(shifted["image"].numpy() - base["image"].numpy()).max() > 1e-3
    assert generator.flow_extractor.encoder[0].norm_in.gamma.shape == (3,)  # the image alone


def test_config_round_trip_and_weights_reload(tmp_path):
    generator = built(gfla_config("market1501", image_height=128, image_width=64))
    inputs = random_inputs(generator.config, batch=1, sources=1, seed=3)
    expected = generator(inputs).numpy()
    clone = GFLAGenerator.from_config(generator.get_config())
    assert clone.config == generator.config
    clone(clone.dummy_inputs())
    path = str(tmp_path / "gfla.weights.h5")
    generator.save_weights(path)
    clone.load_weights(path)
    np.testing.assert_array_equal(clone(inputs).numpy(), expected)


def test_training_step_reaches_every_variable_and_xla_matches():
    generator = built(gfla_config())
    inputs = small_inputs(generator.config, seed=6)
    target = np.random.default_rng(6).uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.abs(generator(inputs, training=True) - target))
    gradients = tape.gradient(loss, generator.trainable_variables)
    unreached = [v.name for v, g in zip(generator.trainable_variables, gradients) if g is None]
    assert not unreached
    assert all(np.isfinite(g.numpy()).all() for g in gradients)
    before = [v.numpy() for v in generator.trainable_variables]
    tf.keras.optimizers.Adam(1e-3).apply_gradients(zip(gradients, generator.trainable_variables))
    assert all(np.abs(b - v.numpy()).max() > 0 for b, v in zip(before, generator.trainable_variables))
    compiled = tf.function(lambda x: generator(x), jit_compile=True)
    np.testing.assert_allclose(compiled(inputs).numpy(), generator(inputs).numpy(), atol=1e-4)
