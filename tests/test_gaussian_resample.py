"""gaussian_resample (GFLA's resample2d) against a numpy loop written after the CUDA kernel's
loops; gradients w.r.t. the flow against finite differences; XLA and unknown shapes; the
correctness loss's `sampler` option."""
import math

import numpy as np
import pytest
import tensorflow as tf

from tfrf import losses
from tfrf.ops import gaussian_resample


def cuda_loop_reference(features, flow, sigma=2.0, kernel_size=4):
    """`kernel_resample2d_update_output` as loops: features [B, H, W, C], flow [B, h, w, 2]."""
    batch, height, width, channels = features.shape
    out = np.zeros(flow.shape[:3] + (channels,))
    for b in range(batch):
        for y in range(flow.shape[1]):
            for x in range(flow.shape[2]):
                xf, yf = x + flow[b, y, x, 0], y + flow[b, y, x, 1]
                alpha, beta = xf - math.floor(xf), yf - math.floor(yf)
                value, total = np.zeros(channels), 0.0
                for fy in range(kernel_size // 2):
                    top = max(min(math.floor(yf) - fy, height - 1), 0)
                    bottom = max(min(math.floor(yf) + fy + 1, height - 1), 0)
                    for fx in range(kernel_size // 2):
                        left = max(min(math.floor(xf) - fx, width - 1), 0)
                        right = max(min(math.floor(xf) + fx + 1, width - 1), 0)
                        gauss = [math.exp(-d * d / (2 * sigma * sigma))
                                 for d in (fx + alpha, fx + 1 - alpha, fy + beta, fy + 1 - beta)]
                        left_p, right_p, top_p, bottom_p = gauss
                        for weight, row, column in ((top_p * left_p, top, left), (top_p * right_p, top, right),
                                                    (bottom_p * left_p, bottom, left),
                                                    (bottom_p * right_p, bottom, right)):
                            value += weight * features[b, row, column]
                            total += weight
                out[b, y, x] = value / total
    return out


def test_matches_the_cuda_loops_on_non_square_maps_with_flows_off_the_map():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(2, 5, 7, 3)).astype(np.float32)
    flow = rng.uniform(-4, 4, size=(2, 5, 7, 2)).astype(np.float32)
    flow[0, 0, 0] = (-9.3, -12.6)  # far off the top-left corner
    flow[1, 4, 6] = (5.5, 8.25)  # far off the bottom-right corner
    flow[1, 2, 3] = (-3.0, 1.0)  # integer coordinates
    result = gaussian_resample(features, flow).numpy()
    np.testing.assert_allclose(result, cuda_loop_reference(features, flow), rtol=1e-5, atol=1e-5)
    # Other kernel sizes and sigmas, and an output grid (the flow's) smaller than the map.
    small_flow = flow[:, :3, :4]
    for sigma, kernel_size in ((1.0, 2), (3.0, 6)):
        np.testing.assert_allclose(gaussian_resample(features, small_flow, sigma, kernel_size),
                                   cuda_loop_reference(features, small_flow, sigma, kernel_size), rtol=1e-5, atol=1e-5)


def test_zero_flow_blurs_with_hand_computed_weights():
    features = np.zeros((1, 9, 9, 1), np.float32)
    features[0, 4, 4, 0] = 1.0
    result = gaussian_resample(features, np.zeros((1, 9, 9, 2), np.float32))[0, :, :, 0].numpy()
    taps = np.exp(-np.array([1.0, 0.0, 1.0, 4.0]) / 8.0)  # offsets -1, 0, 1, 2 at sigma 2
    normalizer = taps.sum() ** 2
    # Output (y, x) reads (4, 4) through row offset 4 - y and column offset 4 - x.
    assert result[4, 4] == pytest.approx(1.0 / normalizer, rel=1e-6)
    assert result[3, 4] == pytest.approx(taps[2] * taps[1] / normalizer, rel=1e-6)  # row offset +1
    assert result[5, 2] == pytest.approx(taps[0] * taps[3] / normalizer, rel=1e-6)  # offsets -1, +2
    assert result[4, 1] == 0.0 and result[6, 4] == 0.0  # out of the 4x4 reach
    # A constant map stays constant, whatever the flow (weights are normalised, borders clamp).
    constant = np.full((1, 4, 6, 2), 3.5, np.float32)
    flow = np.random.default_rng(1).uniform(-10, 10, size=(1, 4, 6, 2)).astype(np.float32)
    np.testing.assert_allclose(gaussian_resample(constant, flow), constant, rtol=1e-6)


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(2)
    features = tf.constant(rng.normal(size=(1, 4, 6, 2)))
    # Fractions away from integers (floor jumps there), some points off the map.
    flow_values = rng.integers(-3, 3, size=(1, 4, 6, 2)) + rng.uniform(0.15, 0.85, size=(1, 4, 6, 2))
    flow_values[0, 0, 0] = (-6.3, 0.4)
    flow = tf.constant(flow_values)
    weights = tf.constant(rng.normal(size=(1, 4, 6, 2)))

    def loss(f, w):
        return tf.reduce_sum(tf.sin(gaussian_resample(f, w)) * weights)

    with tf.GradientTape(persistent=True) as tape:
        tape.watch([features, flow])
        value = loss(features, flow)
    flow_grad = tape.gradient(value, flow).numpy()
    feature_grad = tape.gradient(value, features).numpy()
    assert np.abs(flow_grad).max() > 1e-3
    step = 1e-6
    for index in [(0, 0, 0, 0), (0, 1, 2, 0), (0, 3, 5, 1), (0, 2, 1, 1)]:
        delta = np.zeros_like(flow_values)
        delta[index] = step
        numeric = (float(loss(features, flow + delta)) - float(loss(features, flow - delta))) / (2 * step)
        assert flow_grad[index] == pytest.approx(numeric, rel=1e-5, abs=1e-8), index
    for index in [(0, 0, 0, 0), (0, 3, 5, 1)]:
        delta = np.zeros(features.shape)
        delta[index] = step
        numeric = (float(loss(features + delta, flow)) - float(loss(features - delta, flow))) / (2 * step)
        assert feature_grad[index] == pytest.approx(numeric, rel=1e-5, abs=1e-8), index


def test_xla_and_unknown_shapes():
    rng = np.random.default_rng(3)
    features = rng.normal(size=(2, 6, 5, 3)).astype(np.float32)
    flow = rng.uniform(-3, 3, size=(2, 6, 5, 2)).astype(np.float32)
    expected = gaussian_resample(features, flow).numpy()
    compiled = tf.function(gaussian_resample, jit_compile=True)
    np.testing.assert_allclose(compiled(features, flow), expected, rtol=1e-5, atol=1e-6)
    spec = tf.TensorSpec([None, None, None, None], tf.float32)
    concrete = tf.function(gaussian_resample).get_concrete_function(spec, tf.TensorSpec([None, None, None, 2]))
    np.testing.assert_allclose(concrete(tf.constant(features), tf.constant(flow)), expected, rtol=1e-6)


def test_bad_arguments():
    features, flow = tf.zeros([1, 4, 4, 3]), tf.zeros([1, 4, 4, 2])
    with pytest.raises(ValueError, match="flow must be"):
        gaussian_resample(features, tf.zeros([1, 4, 4, 3]))
    with pytest.raises(ValueError, match="features must be"):
        gaussian_resample(tf.zeros([4, 4, 3]), flow)
    with pytest.raises(ValueError, match="kernel_size"):
        gaussian_resample(features, flow, kernel_size=3)
    with pytest.raises(ValueError, match="batch size"):
        gaussian_resample(tf.zeros([2, 4, 4, 3]), flow)


def test_correctness_loss_gaussian_sampler():
    rng = np.random.default_rng(4)
    source = rng.normal(size=(2, 5, 6, 8)).astype(np.float32)
    target = rng.normal(size=(2, 5, 6, 8)).astype(np.float32)
    flow = rng.uniform(-2, 2, size=(2, 5, 6, 2)).astype(np.float32)
    gaussian = float(losses.sampling_correctness_loss(source, target, flow, sampler="gaussian"))
    # numpy reference of GFLA's PerceptualCorrectness with the resample2d reference above.
    sampled = cuda_loop_reference(source, flow).reshape(2, -1, 8)
    source_flat, target_flat = source.reshape(2, -1, 8), target.reshape(2, -1, 8)
    unit = lambda a: a / (np.linalg.norm(a, axis=-1, keepdims=True) + 1e-8)  # noqa: E731
    best = np.einsum("bsc,btc->bst", unit(source_flat), unit(target_flat)).max(axis=1)
    cosine = (sampled * target_flat).sum(-1) / np.maximum(
        np.linalg.norm(sampled, axis=-1) * np.linalg.norm(target_flat, axis=-1), 1e-8)
    expected = np.mean(np.exp(-cosine / (best + 1e-8))) - np.exp(-1)
    assert gaussian == pytest.approx(expected, rel=1e-4)
    bilinear = float(losses.sampling_correctness_loss(source, target, flow))
    assert bilinear == float(losses.sampling_correctness_loss(source, target, flow, sampler="bilinear"))
    assert abs(bilinear - gaussian) > 1e-3  # the option changes the sampling
    with pytest.raises(ValueError, match="sampler"):
        losses.sampling_correctness_loss(source, target, flow, sampler="nearest")
    with pytest.raises(ValueError, match="warp_fn"):
        losses.sampling_correctness_loss(source, target, flow, sampler="gaussian", warp_fn=lambda f, w: f)
    # K sources per target go through the same path.
    stacked = losses.sampling_correctness_loss(source[:, None], target, flow[:, None], sampler="gaussian")
    assert float(stacked) == pytest.approx(gaussian, rel=1e-6)
