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


# --- torchvision VGG19 weights (GFLA's losses) --------------------------------------------------

from tfrf.losses.vgg import PREPROCESSING, TORCHVISION_FEATURE_INDEX, preprocess_images  # noqa: E402

# torchvision vgg19().features: (index, in, out) of each 3x3 convolution.
TORCH_CONVS = [(index, cin, cout) for index, cin, cout in zip(
    TORCHVISION_FEATURE_INDEX.values(),
    (3, 64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512),
    (64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512))]


def torch_state(rng, up_to=34, dtype=np.float32):
    """A random torchvision-layout VGG19 state dict (He-scaled, so activations stay O(1))."""
    state = {}
    for index, cin, cout in TORCH_CONVS:
        if index > up_to:
            break
        state[f"features.{index}.weight"] = (rng.normal(size=(cout, cin, 3, 3)) * np.sqrt(2 / (9 * cin))).astype(dtype)
        state[f"features.{index}.bias"] = rng.normal(scale=0.1, size=cout).astype(dtype)
    return state


def numpy_conv_relu(x, weight, bias):
    """PyTorch Conv2d(3x3, padding 1) + ReLU on [H, W, C] with weight (O, I, 3, 3), in float64."""
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    patches = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(0, 1))  # [H, W, C, 3, 3]
    return np.maximum(np.einsum("hwcij,ocij->hwo", patches, weight.astype(np.float64)) + bias, 0.0)


def numpy_pool(x):
    h, w = x.shape[0] // 2, x.shape[1] // 2
    return x[:2 * h, :2 * w].reshape(h, 2, w, 2, -1).max(axis=(1, 3))


def test_torchvision_npz_weights_match_a_numpy_vgg_with_gfla_input(tmp_path):
    rng = np.random.default_rng(0)
    state = torch_state(rng, up_to=10)  # relu3_1 needs features.0 ... features.10
    state["classifier.0.weight"] = np.zeros((4, 2), np.float32)  # ignored
    path = tmp_path / "vgg19.npz"
    np.savez(path, **state)
    layers = ("relu1_1", "relu1_2", "relu2_1", "relu2_2", "relu3_1")
    extractor = VGGFeatures(layers=layers, weights=str(path), preprocessing="gfla")
    images = rng.uniform(-1, 1, size=(1, 8, 12, 3)).astype(np.float32)
    features = extractor(images)

    expected = {}
    x = images[0].astype(np.float64)  # GFLA: the [-1, 1] RGB image as it is
    x = expected["relu1_1"] = numpy_conv_relu(x, state["features.0.weight"], state["features.0.bias"])
    x = expected["relu1_2"] = numpy_conv_relu(x, state["features.2.weight"], state["features.2.bias"])
    x = expected["relu2_1"] = numpy_conv_relu(numpy_pool(x), state["features.5.weight"], state["features.5.bias"])
    x = expected["relu2_2"] = numpy_conv_relu(x, state["features.7.weight"], state["features.7.bias"])
    expected["relu3_1"] = numpy_conv_relu(numpy_pool(x), state["features.10.weight"], state["features.10.bias"])
    for name in layers:
        assert features[name].shape[1:3] == expected[name].shape[:2], name
        np.testing.assert_allclose(features[name][0], expected[name], rtol=1e-4, atol=1e-4, err_msg=name)
    assert extractor.get_config()["preprocessing"] == "gfla"


def test_full_torchvision_state_dict_loads_from_a_mapping():
    state = torch_state(np.random.default_rng(1))
    state.update({"classifier.6.weight": np.zeros((3, 3), np.float32), "classifier.6.bias": np.zeros(3, np.float32)})
    extractor = VGGFeatures(weights=None, preprocessing="gfla")  # relu1_1 ... relu5_1
    extractor.load_torch_weights(state)
    conv = extractor.backbone.get_layer("block5_conv1")
    np.testing.assert_array_equal(conv.kernel.numpy(), np.transpose(state["features.28.weight"], (2, 3, 1, 0)))
    np.testing.assert_array_equal(conv.bias.numpy(), state["features.28.bias"])


def test_torchvision_state_dict_errors_name_the_keys(tmp_path):
    extractor = VGGFeatures(layers=("relu2_1",), weights=None)
    good = torch_state(np.random.default_rng(2), up_to=5)
    before = extractor.backbone.get_layer("block1_conv1").kernel.numpy()
    missing = dict(good)
    del missing["features.5.bias"]
    with pytest.raises(ValueError, match=r"missing keys: features\.5\.bias"):
        extractor.load_torch_weights(missing)
    with pytest.raises(ValueError, match=r"unused keys: features\.1\.weight"):
        extractor.load_torch_weights({**good, "features.1.weight": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match=r"features\.0\.weight has shape \(64, 4, 3, 3\)"):
        extractor.load_torch_weights({**good, "features.0.weight": np.zeros((64, 4, 3, 3), np.float32)})
    # Nothing is assigned unless the whole state dict checks out.
    np.testing.assert_array_equal(before, extractor.backbone.get_layer("block1_conv1").kernel.numpy())
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        extractor.load_torch_weights(str(tmp_path / "missing.npz"))
    with pytest.raises(ValueError, match="preprocessing"):
        VGGFeatures(weights=None, preprocessing="bgr")


def test_pth_without_pytorch_is_a_clear_error(tmp_path):
    try:
        import torch  # noqa: F401
        pytest.skip("PyTorch is installed")
    except ImportError:
        pass
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    path.write_bytes(b"not read")
    with pytest.raises(ImportError, match=r"PyTorch.*\.npz"):
        VGGFeatures(layers=("relu1_1",), weights=str(path), preprocessing="gfla")


def test_input_conventions():
    images = tf.constant([[[[-1.0, 0.0, 1.0]]]])
    np.testing.assert_allclose(preprocess_images(images, "gfla"), images)
    expected = (np.array([0.0, 0.5, 1.0]) - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(preprocess_images(images, "torchvision")[0, 0, 0], expected, rtol=1e-6)
    np.testing.assert_allclose(preprocess_images(images, "caffe"), VGGFeatures.preprocess(images))
    assert PREPROCESSING[0] == "caffe" and VGGFeatures(layers=("relu1_1",), weights=None).preprocessing == "caffe"
