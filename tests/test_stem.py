"""`ModelConfig.full_resolution`: space-to-depth stems and a pixel-shuffle head.

- off (the default "conv"): the paper's network, variable names and shapes as before the switch
  existed (a digest recorded from the previous commit) and the paper's full-resolution layers;
- on ("space_to_depth"): `SpaceToDepthResBlockDown` equals a numpy reference (explicit
  space-to-depth loops, 3x3 convs by taps, LeakyReLU, 1x1 shortcut), the head equals
  tanh(depth_to_space(to_rgb)) with a numpy depth-to-space, every shape and intermediate is the
  same as with "conv", the output does not depend on the order of the sources, one real training
  step (TrainingModel, stage "full") gives finite losses and moves the stems and the head, the
  weights round-trip, and the export kernels equal the training graph.
The TFLite export of the switched-on network (float32 and full-int8, builtins only, no
convolution at H x W) is tested in tests/test_export_mobile.py.
"""
import hashlib
import json

import numpy as np
import pytest
import tensorflow as tf

import tfrf
from tfrf.layers.blocks import ResBlockDown, SpaceToDepthResBlockDown
from tfrf.models import Generator

from helpers import random_inputs

SLOPE = 0.1
# sha256 of json.dumps([[variable.name, shape], ...]) of Generator(ModelConfig.preset("synthetic",
# width_multiplier=0.125)) after one call, recorded at commit 00c9fb4 (before full_resolution existed).
CONV_VARIABLES_SHA256 = "758035445a18f5e48e1a543b3052ee2867bede6a21450aaf42017730570bd4bb"


def config(full_resolution="space_to_depth", **overrides):
    return tfrf.ModelConfig.preset("synthetic", width_multiplier=0.125, full_resolution=full_resolution, **overrides)


def built_generator(model_config, seed=0):
    tf.keras.utils.set_random_seed(seed)
    generator = Generator(model_config)
    generator(random_inputs(model_config, sources=1))
    return generator


def leaky_relu(x):
    return np.where(x > 0, x, SLOPE * x)


def numpy_space_to_depth(x, block=2):
    """`[B, H, W, C]` -> `[B, H/2, W/2, 4C]`, channel (a * 2 + b) * C + c = pixel (2i + a, 2j + b)."""
    b, h, w, c = x.shape
    out = np.zeros((b, h // block, w // block, block * block * c), x.dtype)
    for i in range(h // block):
        for j in range(w // block):
            for a in range(block):
                for d in range(block):
                    out[:, i, j, (a * block + d) * c:(a * block + d + 1) * c] = x[:, block * i + a, block * j + d]
    return out


def numpy_depth_to_space(x, block=2):
    """Inverse of `numpy_space_to_depth`."""
    b, h, w, cc = x.shape
    c = cc // (block * block)
    out = np.zeros((b, h * block, w * block, c), x.dtype)
    for i in range(h):
        for j in range(w):
            for a in range(block):
                for d in range(block):
                    out[:, block * i + a, block * j + d] = x[:, i, j, (a * block + d) * c:(a * block + d + 1) * c]
    return out


def numpy_conv_same(x, kernel, bias):
    """'SAME' convolution, stride 1, by explicit loops over the taps; x `[B, h, w, Ci]`."""
    _, h, w, _ = x.shape
    kh, kw = kernel.shape[:2]
    padded = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    out = np.zeros(x.shape[:3] + (kernel.shape[-1],)) + bias
    for i in range(kh):
        for j in range(kw):
            out += padded[:, i:i + h, j:j + w] @ kernel[i, j]
    return out


def test_default_is_the_paper_network_with_unchanged_variables():
    model_config = tfrf.ModelConfig.preset("synthetic", width_multiplier=0.125)
    assert model_config.full_resolution == "conv"
    # A config.json written before the field existed reads as "conv".
    legacy = {key: value for key, value in model_config.to_dict().items() if key != "full_resolution"}
    assert tfrf.ModelConfig.from_dict(legacy) == model_config
    generator = built_generator(model_config)
    names = [[variable.name, list(variable.shape)] for variable in generator.weights]
    assert hashlib.sha256(json.dumps(names).encode()).hexdigest() == CONV_VARIABLES_SHA256
    shapes = dict((name, shape) for name, shape in names)
    cp, c = model_config.pose_channels, 8  # channels(32 or 64) at width 0.125 = 8
    # The paper's full-resolution layers: 3x3 convs straight on the 3 + 2 Cp, 3 and Cp input
    # channels, a ResBlockUp to H (learned shortcut) and a 3-channel to_rgb.
    assert shapes["generator/flow_confidence_extractor/down1/conv1/kernel:0"] == [3, 3, 3 + 2 * cp, c]
    assert shapes["generator/source_appearance_extractor/down1/conv1/kernel:0"] == [3, 3, 3, c]
    assert shapes["generator/target_image_predictor/pose_down1/conv1/kernel:0"] == [3, 3, cp, c]
    assert shapes["generator/target_image_predictor/decode_h2_up/conv_shortcut/kernel:0"] == [1, 1, c, c]
    assert shapes["generator/target_image_predictor/to_rgb/kernel:0"] == [3, 3, c, 3]
    assert not any(isinstance(layer, SpaceToDepthResBlockDown) for layer in generator.submodules)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match=r"full_resolution must be one of \('conv', 'space_to_depth'\).*'pixel'"):
        config("pixel")
    with pytest.raises(ValueError, match="full_resolution='space_to_depth' applies to architecture 'rf' only"):
        config(architecture="gfla")
    assert tfrf.ModelConfig.preset("voxceleb2_mobile").full_resolution == "space_to_depth"
    round_trip = tfrf.ModelConfig.from_dict(json.loads(config().to_json()))
    assert round_trip == config()


def test_space_to_depth_block_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 4, 3)).astype(np.float32)
    block = SpaceToDepthResBlockDown(5, leaky_relu_slope=SLOPE)
    output = block(tf.constant(x)).numpy()
    assert output.shape == ResBlockDown(5)(tf.constant(x)).shape == (2, 3, 2, 5)
    for variable in block.trainable_variables:
        variable.assign(rng.normal(size=variable.shape))
    output = block(tf.constant(x)).numpy()
    assert block.conv1.kernel.shape == (3, 3, 12, 5) and block.conv_shortcut.kernel.shape == (1, 1, 12, 5)
    s = numpy_space_to_depth(x.astype(np.float64))
    np.testing.assert_array_equal(tf.nn.space_to_depth(x, 2).numpy(), numpy_space_to_depth(x))
    hidden = numpy_conv_same(leaky_relu(s), block.conv1.kernel.numpy(), block.conv1.bias.numpy())
    residual = numpy_conv_same(leaky_relu(hidden), block.conv2.kernel.numpy(), block.conv2.bias.numpy())
    shortcut = numpy_conv_same(s, block.conv_shortcut.kernel.numpy(), block.conv_shortcut.bias.numpy())
    expected = residual + shortcut
    assert np.abs(expected).max() > 5.0
    np.testing.assert_allclose(output, expected, atol=1e-4 * np.abs(expected).max(), rtol=0)
    # Keras round trip of the layer's config.
    clone = SpaceToDepthResBlockDown.from_config(block.get_config())
    assert (clone.filters, clone.normalization, clone.leaky_relu_slope) == (5, "none", SLOPE)


def test_switched_on_shapes_and_no_full_resolution_convolution():
    on = built_generator(config("space_to_depth"), 1)
    model_config = on.config
    h, w = model_config.image_height, model_config.image_width
    for sources in (1, 3):
        inputs = random_inputs(model_config, sources=sources, seed=sources)
        result = on(inputs, return_intermediates=True)
        assert result["image"].shape == (1, h, w, 3)
        image = result["image"].numpy()
        assert np.isfinite(image).all() and np.abs(image).max() <= 1.0 and image.std() > 0.01
        for level, stride in (("h8", 8), ("h4", 4)):
            expected = {"flows": 2, "residual_flows": 2, "attention": 1, "occlusions": 1}
            for name, channels in expected.items():
                assert result[level][name].shape == (1, sources, h // stride, w // stride, channels), (level, name)
    encoded = on.encode_sources(inputs["source_images"])
    assert {k: tuple(v.shape) for k, v in encoded.items()} == {"h8": (1, 3, h // 8, w // 8, 32),
                                                               "h4": (1, 3, h // 4, w // 4, 16)}
    # The stems and the head: space-to-depth input channels, a 12-channel to_rgb, no ResBlockUp to H.
    cp = model_config.pose_channels
    assert on.flow_extractor.encoder[0].conv1.kernel.shape == (3, 3, 4 * (3 + 2 * cp), 8)
    assert on.source_extractor.down1.conv1.kernel.shape == (3, 3, 12, 8)
    assert on.predictor.pose_encoder[0].conv1.kernel.shape == (3, 3, 4 * cp, 8)
    assert on.predictor.to_rgb.kernel.shape == (3, 3, 8, 12)
    assert [type(block).__name__ for block in on.predictor.decode_h2] == ["ResBlock", "ResBlock"]
    # Every convolution of the traced graph runs at H/2 or below.
    graph = tf.function(lambda x: on(x)).get_concrete_function(
        {key: tf.TensorSpec(value.shape, tf.float32) for key, value in random_inputs(model_config).items()}).graph
    convs = [op for op in graph.get_operations() if op.type == "Conv2D"]
    assert len(convs) > 40
    assert max(op.inputs[0].shape[1] for op in convs) == h // 2


def test_head_is_depth_to_space_of_to_rgb():
    generator = built_generator(config(), 2)
    inputs = random_inputs(generator.config, sources=2, seed=3)
    original, recorded = generator.predictor.to_rgb, []

    def recording_to_rgb(x):
        recorded.append(original(x).numpy())
        return recorded[-1]

    generator.predictor.__dict__["to_rgb"] = recording_to_rgb  # plain attribute: no layer tracking
    try:
        image = generator(inputs).numpy()
    finally:
        generator.predictor.__dict__["to_rgb"] = original
    (rgb,) = recorded
    assert rgb.shape == (1, 32, 32, 12)
    np.testing.assert_allclose(image, np.tanh(numpy_depth_to_space(rgb.astype(np.float64))), atol=1e-6, rtol=0)


def test_switched_on_output_independent_of_source_order():
    generator = built_generator(config(), 3)
    inputs = random_inputs(generator.config, batch=2, sources=4, seed=4)
    out = generator(inputs).numpy()
    for order in ([3, 1, 0, 2], [1, 2, 3, 0]):
        permuted = dict(inputs, source_images=inputs["source_images"][:, order],
                        source_poses=inputs["source_poses"][:, order])
        np.testing.assert_allclose(generator(permuted).numpy(), out, atol=1e-5)


def test_switched_on_trains_one_step_and_moves_the_stems():
    from tfrf.training import TrainConfig
    from tfrf.training import runner

    model_config = config(warp_backend="gather")
    train_config = TrainConfig.preset("demo", model=model_config, vgg_weights=None, batch_size=2, num_sources=2)
    networks = runner.create_networks(train_config)
    model = runner.compile_stage("full", networks, train_config)
    rng = np.random.default_rng(5)
    batch = {key: tf.constant(value) for key, value in random_inputs(model_config, batch=2, sources=2, seed=5).items()}
    batch["target_image"] = tf.constant(rng.uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32))
    generator = networks.generator
    watched = {
        "flow stem": generator.flow_extractor.encoder[0].conv1.kernel,
        "source stem": generator.source_extractor.down1.conv1.kernel,
        "pose stem": generator.predictor.pose_encoder[0].conv1.kernel,
        "head block": generator.predictor.decode_h2[1].conv2.kernel,
        "to_rgb": generator.predictor.to_rgb.kernel,
    }
    before = {name: variable.numpy().copy() for name, variable in watched.items()}
    with tf.GradientTape() as tape:
        total, values, _ = model.generator_losses(
            {key: batch[key] for key in ("source_images", "source_poses", "target_pose")}, batch["target_image"])
    gradients = tape.gradient(total, list(watched.values()))
    assert np.isfinite(float(total)) and all(np.isfinite(float(value)) for value in values.values())
    for name, gradient in zip(watched, gradients):
        assert gradient is not None and np.abs(gradient.numpy()).max() > 0, name
    logs = model.train_step(batch)
    assert all(np.isfinite(float(value)) for value in logs.values()), logs
    for name, variable in watched.items():
        assert np.abs(variable.numpy() - before[name]).max() > 0, f"{name} did not move"


def test_switched_on_weights_round_trip_and_do_not_load_into_conv(tmp_path):
    generator = built_generator(config(), 6)
    inputs = random_inputs(generator.config, sources=2, seed=6)
    path = str(tmp_path / "mobile.weights.h5")
    generator.save_weights(path)
    restored = built_generator(config(), 7)
    restored.load_weights(path)
    np.testing.assert_array_equal(restored(inputs).numpy(), generator(inputs).numpy())
    with pytest.raises(ValueError):
        built_generator(config("conv"), 8).load_weights(path)


def test_export_impl_equals_training_graph():
    from tfrf.export import export_generator
    from tfrf.models import rebuild_generator

    tf.keras.utils.set_random_seed(9)
    generator = export_generator(config(), tflite=True)
    inputs = random_inputs(generator.config, sources=2, seed=9)
    training = generator(inputs).numpy()
    export_built = rebuild_generator(generator, "export")
    stems = [layer for layer in export_built.submodules if isinstance(layer, SpaceToDepthResBlockDown)]
    assert len(stems) == 3 and all(layer.impl == "export" for layer in stems)
    exported = export_built(inputs).numpy()
    np.testing.assert_allclose(exported, training, atol=1e-4, rtol=0)
