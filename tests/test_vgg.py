"""VGGFeatures with random weights (nothing downloads): layers, strides, channels, preprocessing."""
import numpy as np
import pytest
import tensorflow as tf

from tfrf import losses
from tfrf.losses.vgg import VGGFeatures, layer_name, layer_stride

CHANNELS = {"relu1_1": 64, "relu2_1": 128, "relu3_1": 256, "relu4_1": 512, "relu5_1": 512}


@pytest.fixture(scope="module")
def extractor():
    return VGGFeatures(weights=None)


def test_five_layers_with_strides_and_channels(extractor):
    images = tf.random.uniform([2, 32, 48, 3], -1.0, 1.0)
    features = extractor(images)
    assert tuple(features) == losses.PERCEPTUAL_LAYERS
    for name, value in features.items():
        stride = layer_stride(name)
        assert value.shape == (2, 32 // stride, 48 // stride, CHANNELS[name]), name
        assert value.dtype == tf.float32
        assert float(tf.reduce_min(value)) >= 0.0  # after the ReLU
    assert layer_stride("relu3_1") == 4 and layer_stride("relu4_1") == 8


def test_frozen_but_differentiable_in_the_input(extractor):
    assert extractor.trainable_weights == []
    # Kernels and biases of the 13 convolutions up to relu5_1; the last 3 are never built.
    assert len(extractor.non_trainable_weights) == 2 * 13
    images = tf.random.uniform([1, 32, 32, 3], -1.0, 1.0)
    with tf.GradientTape() as tape:
        tape.watch(images)
        features = extractor(images)
        total = tf.add_n([tf.reduce_mean(f) for f in features.values()])
    grad = tape.gradient(total, images)
    assert np.all(np.isfinite(grad)) and float(tf.reduce_max(tf.abs(grad))) > 0


def test_imagenet_preprocessing():
    images = tf.constant([[[[-1.0, 0.0, 1.0]]]])
    expected = np.array([255.0, 127.5, 0.0]) - np.array([103.939, 116.779, 123.68])  # BGR, mean removed
    np.testing.assert_allclose(VGGFeatures.preprocess(images)[0, 0, 0], expected, rtol=1e-6)
    reference = tf.keras.applications.vgg19.preprocess_input(((images + 1.0) * 127.5).numpy())
    np.testing.assert_allclose(VGGFeatures.preprocess(images), reference, rtol=1e-6)


def test_layer_names_and_keras_names():
    assert layer_name("block4_conv1") == "relu4_1"
    assert layer_name("relu3_4") == "relu3_4"
    for bad in ("relu2_3", "relu6_1", "conv4_1"):
        with pytest.raises(ValueError, match="VGG"):
            layer_name(bad)


def test_selected_layers_and_weights_from_a_local_file(tmp_path, extractor):
    path = str(tmp_path / "vgg19_notop.h5")
    backbone = tf.keras.applications.VGG19(include_top=False, weights=None, input_shape=(None, None, 3))
    backbone.save_weights(path)
    loaded = VGGFeatures(layers=("block3_conv1", "relu4_1"), weights=path)
    images = tf.random.uniform([1, 16, 16, 3], -1.0, 1.0)
    features = loaded(images)
    assert sorted(features) == ["relu3_1", "relu4_1"]
    truncated = tf.keras.Model(backbone.input, backbone.get_layer("block4_conv1").output)
    reference = truncated(VGGFeatures.preprocess(images))
    np.testing.assert_allclose(features["relu4_1"], reference, rtol=1e-5, atol=1e-5)
    config = loaded.get_config()
    assert config["layers"] == ["relu3_1", "relu4_1"] and config["weights"] == path


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="weights"):
        VGGFeatures(weights=str(tmp_path / "missing.h5"))


def test_mixed_precision_features_are_float32():
    policy = tf.keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        extractor = VGGFeatures(layers=("relu1_1", "relu2_1"), weights=None)
        features = extractor(tf.random.uniform([1, 16, 16, 3], -1.0, 1.0, dtype=tf.float16))
    finally:
        tf.keras.mixed_precision.set_global_policy(policy)
    assert all(f.dtype == tf.float32 for f in features.values())
    assert features["relu2_1"].shape == (1, 8, 8, 128)


def test_one_pass_over_a_concatenated_batch_splits_per_image(extractor):
    target = tf.random.uniform([2, 32, 32, 3], -1.0, 1.0)
    sources = tf.random.uniform([4, 32, 32, 3], -1.0, 1.0)
    target_features, source_features = losses.split_features(extractor(tf.concat([target, sources], 0)), [2, 4])
    alone = extractor(sources)
    for name in losses.PERCEPTUAL_LAYERS:
        assert target_features[name].shape[0] == 2
        np.testing.assert_allclose(source_features[name], alone[name], rtol=1e-4, atol=1e-4)


def test_correctness_on_vgg_features_of_a_shifted_image_prefers_the_right_flow(extractor):
    # A smooth random image, and the same image shifted left by 8 px (one relu4_1 pixel):
    # target(x, y) = source(x + 8, y), so the right H/8 flow is dx = 1.
    rng = np.random.default_rng(0)
    coarse = rng.uniform(-1, 1, size=(1, 8, 12, 3)).astype(np.float32)
    source = tf.image.resize(coarse, [64, 96], method="bicubic")
    target = tf.concat([source[:, :, 8:], tf.zeros([1, 64, 8, 3])], axis=2)
    source_features, target_features = losses.split_features(extractor(tf.concat([source, target], 0)), [1, 1])
    layer = losses.CORRECTNESS_LAYERS["h8"]
    h, w = target_features[layer].shape[1:3]
    assert (h, w) == (8, 12)
    inside = np.zeros([1, h, w, 1], np.float32)
    inside[:, 1:-1, 1:-3] = 1.0  # away from zero padding and the shifted-in border
    right = tf.concat([tf.ones([1, h, w, 1]), tf.zeros([1, h, w, 1])], -1)
    scores = [
        float(losses.sampling_correctness_loss(source_features[layer], target_features[layer], flow, mask=inside))
        for flow in (right, tf.zeros_like(right), -right)
    ]
    # Random-weight relu4_1 features are all similar in direction, hence small margins.
    assert abs(scores[0]) < 1e-4 and min(scores[1:]) > 0.01, scores
