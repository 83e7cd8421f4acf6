"""LPIPS v0.1 against an independent numpy reference (PyTorch NCHW conventions), with weights
given as state dicts under the official key names (torchvision `features.*`, lpips `lin*.model.1`)."""
import os

import numpy as np
import pytest

from tfrf.metrics import LPIPS
from tfrf.metrics.lpips import normalize_channels

from helpers import numpy_conv2d

SHIFT = np.array([-0.030, -0.088, -0.188])
SCALE = np.array([0.458, 0.448, 0.450])

# (torchvision features index, in, out, kernel, stride, padding), written out from torchvision.
ALEX_CONVS = [(0, 3, 64, 11, 4, 2), (3, 64, 192, 5, 1, 2), (6, 192, 384, 3, 1, 1), (8, 384, 256, 3, 1, 1),
              (10, 256, 256, 3, 1, 1)]
VGG_CONVS = [(0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256), (12, 256, 256), (14, 256, 256),
             (17, 256, 512), (19, 512, 512), (21, 512, 512), (24, 512, 512), (26, 512, 512), (28, 512, 512)]


# --- numpy reference ---------------------------------------------------------------------------
def conv2d(x, weight, bias, stride, padding):
    """PyTorch Conv2d on NCHW float64: zero padding, output floor((H + 2p - k) / s) + 1."""
    return numpy_conv2d(x, weight, stride, padding) + bias[None, :, None, None]


def max_pool(x, kernel, stride):
    """PyTorch MaxPool2d without padding, ceil_mode False."""
    out_h = (x.shape[2] - kernel) // stride + 1
    out_w = (x.shape[3] - kernel) // stride + 1
    out = np.full((x.shape[0], x.shape[1], out_h, out_w), -np.inf)
    for u in range(kernel):
        for v in range(kernel):
            out = np.maximum(out, x[:, :, u:u + stride * (out_h - 1) + 1:stride, v:v + stride * (out_w - 1) + 1:stride])
    return out


def alex_taps(x, state):
    taps = []
    h = x
    for position, (index, _, _, kernel, stride, padding) in enumerate(ALEX_CONVS):
        if position in (1, 2):
            h = max_pool(h, 3, 2)
        h = np.maximum(conv2d(h, state[f"features.{index}.weight"], state[f"features.{index}.bias"], stride, padding), 0)
        taps.append(h)
    return taps


def vgg_taps(x, state):
    taps = []
    h = x
    tap_after = {2, 7, 14, 21, 28}  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 follow these convs
    pool_before = {5, 10, 17, 24}
    for index, _, _ in VGG_CONVS:
        if index in pool_before:
            h = max_pool(h, 2, 2)
        h = np.maximum(conv2d(h, state[f"features.{index}.weight"], state[f"features.{index}.bias"], 1, 1), 0)
        if index in tap_after:
            taps.append(h)
    return taps


def reference(images, other_images, backbone, lin, taps_function):
    """Per-tap terms [B, 5], taps and normalised taps of both inputs (NCHW), the lpips package's way."""
    def taps_of(x):
        x = np.transpose(x.astype(np.float64), (0, 3, 1, 2))
        return taps_function((x - SHIFT[None, :, None, None]) / SCALE[None, :, None, None], backbone)

    taps0, taps1 = taps_of(images), taps_of(other_images)
    normalized0 = [t / (np.sqrt(np.sum(t ** 2, axis=1, keepdims=True)) + 1e-10) for t in taps0]
    normalized1 = [t / (np.sqrt(np.sum(t ** 2, axis=1, keepdims=True)) + 1e-10) for t in taps1]
    terms = []
    for k, (n0, n1) in enumerate(zip(normalized0, normalized1)):
        weighted = np.einsum("nchw,c->nhw", (n0 - n1) ** 2, lin[f"lin{k}.model.1.weight"][0, :, 0, 0])
        terms.append(weighted.mean(axis=(1, 2)))
    return np.stack(terms, axis=-1), taps0, normalized0


def random_backbone(convs, rng, with_classifier=True):
    state = {}
    for conv in convs:
        index, cin, cout = conv[:3]
        kernel = conv[3] if len(conv) > 3 else 3
        state[f"features.{index}.weight"] = (rng.normal(size=(cout, cin, kernel, kernel))
                                             * np.sqrt(2.0 / (cin * kernel * kernel))).astype(np.float32)
        state[f"features.{index}.bias"] = rng.normal(0, 0.1, cout).astype(np.float32)
    if with_classifier:  # torchvision checkpoints carry the classifier; LPIPS ignores it
        state["classifier.1.weight"] = rng.normal(size=(8, 4)).astype(np.float32)
        state["classifier.1.bias"] = rng.normal(size=(8,)).astype(np.float32)
    return state


def random_lin(channels, rng):
    return {f"lin{k}.model.1.weight": rng.uniform(0, 1, (1, c, 1, 1)).astype(np.float32)
            for k, c in enumerate(channels)}


def to_nhwc(x):
    return np.transpose(x, (0, 2, 3, 1))


@pytest.fixture(scope="module")
def alex_weights():
    rng = np.random.default_rng(7)
    return random_backbone(ALEX_CONVS, rng), random_lin((64, 192, 384, 256, 256), rng)


@pytest.fixture(scope="module")
def alex(alex_weights):
    model = LPIPS("alex")
    model.load_torch_weights(*alex_weights)
    return model


def test_alexnet_taps_normalisation_lin_and_distance_match_numpy(alex, alex_weights):
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
    other_images = np.clip(images + rng.normal(0, 0.3, images.shape), -1, 1).astype(np.float32)
    terms, taps, normalized = reference(images, other_images, *alex_weights, alex_taps)

    ours = alex.features(images)
    assert [t.shape[1:3] for t in ours] == [(15, 15), (7, 7), (3, 3), (3, 3), (3, 3)]  # PyTorch sizes at 64
    for tap, expected, expected_normalized in zip(ours, taps, normalized):
        tap = tap.numpy()
        np.testing.assert_allclose(tap, to_nhwc(expected), rtol=1e-4, atol=1e-4 * np.abs(expected).max())
        np.testing.assert_allclose(normalize_channels(tap).numpy(), to_nhwc(expected_normalized),
                                   rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(alex.per_tap_distances(images, other_images).numpy(), terms, rtol=1e-4)
    np.testing.assert_allclose(alex(images, other_images).numpy(), terms.sum(-1), rtol=1e-4)
    np.testing.assert_allclose(alex.distances(images, other_images, batch_size=1), terms.sum(-1), rtol=1e-4)


def test_vgg16_matches_numpy():
    rng = np.random.default_rng(1)
    backbone = random_backbone(VGG_CONVS, rng)
    lin = random_lin((64, 128, 256, 512, 512), rng)
    model = LPIPS("vgg", weights=(backbone, lin))
    images = rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    other_images = rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    terms, taps, _ = reference(images, other_images, backbone, lin, vgg_taps)
    for tap, expected in zip(model.features(images), taps):
        np.testing.assert_allclose(tap.numpy(), to_nhwc(expected), rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    np.testing.assert_allclose(model.per_tap_distances(images, other_images).numpy(), terms, rtol=1e-4)
    np.testing.assert_allclose(model(images, other_images).numpy(), terms.sum(-1), rtol=1e-4)


def test_normalisation_puts_epsilon_outside_the_root():
    # f / (sqrt(sum f^2) + 1e-10): [3e-10, 4e-10] -> [3, 4] / 6; inside the root it would be ~1e-5.
    features = np.array([[[[3e-10, 4e-10]]], [[[0.0, 0.0]]]], np.float32)
    np.testing.assert_allclose(normalize_channels(features).numpy()[0, 0, 0], [0.5, 4 / 6], rtol=1e-5)
    np.testing.assert_array_equal(normalize_channels(features).numpy()[1], 0.0)


def test_identical_images_are_at_distance_zero(alex):
    images = np.random.default_rng(2).uniform(-1, 1, (3, 40, 48, 3)).astype(np.float32)
    np.testing.assert_array_equal(alex(images, images).numpy(), 0.0)


def test_load_refuses_missing_unused_and_misshapen_keys(alex_weights):
    backbone, lin = alex_weights
    model = LPIPS("alex")
    missing = {key: value for key, value in backbone.items() if key != "features.3.bias"}
    with pytest.raises(ValueError, match=r"missing keys: features\.3\.bias"):
        model.load_torch_weights(missing, lin)
    with pytest.raises(ValueError, match=r"unused keys: features\.4\.weight"):
        model.load_torch_weights({**backbone, "features.4.weight": np.zeros((1,), np.float32)}, lin)
    with pytest.raises(ValueError, match=r"missing keys: lin4\.model\.1\.weight"):
        model.load_torch_weights(backbone, {key: value for key, value in lin.items() if not key.startswith("lin4")})
    with pytest.raises(ValueError, match=r"features\.6\.weight has shape \(384, 192, 5, 5\)"):
        model.load_torch_weights({**backbone, "features.6.weight": np.zeros((384, 192, 5, 5), np.float32)}, lin)
    # Nothing was assigned by the refused loads: the model is still randomly initialised.
    assert not np.allclose(model.backbone.get_layer("features_0").kernel.numpy(),
                           np.transpose(backbone["features.0.weight"], (2, 3, 1, 0)))


def test_npz_files_load_and_the_conversion_is_cached(tmp_path, alex, alex_weights):
    backbone, lin = alex_weights
    np.savez(tmp_path / "alexnet.npz", **backbone)
    np.savez(tmp_path / "alex_lin.npz", **lin)
    cache_dir = tmp_path / "cache"
    images = np.random.default_rng(3).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    other_images = -images
    expected = alex(images, other_images).numpy()

    first = LPIPS("alex", cache_dir=cache_dir)
    assert first.load_torch_weights(str(tmp_path / "alexnet.npz"), str(tmp_path / "alex_lin.npz")) is False
    cached = [name for name in os.listdir(cache_dir) if name.endswith(".weights.h5")]
    assert len(cached) == 1 and cached[0].startswith("lpips-alex-")
    np.testing.assert_allclose(first(images, other_images).numpy(), expected, rtol=1e-6)

    second = LPIPS("alex", cache_dir=cache_dir)
    assert second.load_torch_weights(str(tmp_path / "alexnet.npz"), str(tmp_path / "alex_lin.npz")) is True
    np.testing.assert_allclose(second(images, other_images).numpy(), expected, rtol=1e-6)
    # The cached file alone reproduces the model, through the `weights=` argument.
    third = LPIPS("alex", weights=str(cache_dir / cached[0]))
    np.testing.assert_allclose(third(images, other_images).numpy(), expected, rtol=1e-6)

    # Other content under the same file name is a different key: converted again, not reused.
    np.savez(tmp_path / "alex_lin.npz", **{key: value * 2 for key, value in lin.items()})
    fourth = LPIPS("alex", cache_dir=cache_dir)
    assert fourth.load_torch_weights(str(tmp_path / "alexnet.npz"), str(tmp_path / "alex_lin.npz")) is False
    np.testing.assert_allclose(fourth(images, other_images).numpy(), 2 * expected, rtol=1e-5)
    assert len([name for name in os.listdir(cache_dir) if name.endswith(".weights.h5")]) == 2


def test_pth_without_torch_names_the_remedy(tmp_path):
    try:
        import torch  # noqa: F401
        pytest.skip("PyTorch is installed")
    except ImportError:
        pass
    (tmp_path / "alexnet.pth").write_bytes(b"not read")
    with pytest.raises(ImportError, match="needs PyTorch"):
        LPIPS("alex").load_torch_weights(str(tmp_path / "alexnet.pth"), str(tmp_path / "alexnet.pth"), cache_dir=False)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        LPIPS("alex").load_torch_weights(str(tmp_path / "missing.npz"), str(tmp_path / "missing.npz"), cache_dir=False)


def test_bad_inputs_name_the_expected_shape(alex):
    with pytest.raises(ValueError, match=r"\[B, H, W, 3\]"):
        alex(np.zeros((2, 64, 64, 1), np.float32), np.zeros((2, 64, 64, 1), np.float32))
    with pytest.raises(ValueError, match="one shape"):
        alex(np.zeros((2, 64, 64, 3), np.float32), np.zeros((1, 64, 64, 3), np.float32))
    with pytest.raises(ValueError, match=">= 31"):
        alex(np.zeros((1, 30, 64, 3), np.float32), np.zeros((1, 30, 64, 3), np.float32))
    with pytest.raises(ValueError, match="unknown net"):
        LPIPS("squeeze")
