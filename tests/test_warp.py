"""tfrf.ops.warp: hand-computed grids, identity, tfa/gather parity, gradients, dtypes, XLA."""
import numpy as np
import pytest
import tensorflow as tf

from tfrf.ops import base_grid, warp

BACKENDS = ("tfa", "gather")


def reference_warp(features: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Loop-level numpy reference: bilinear sampling at (x + dx, y + dy), zeros outside."""
    batch, height, width, channels = features.shape
    out = np.zeros_like(features, dtype=np.float64)
    for b in range(batch):
        for i in range(height):
            for j in range(width):
                x = j + flow[b, i, j, 0]
                y = i + flow[b, i, j, 1]
                x0, y0 = int(np.floor(x)), int(np.floor(y))
                for xi, yi in ((x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)):
                    weight = (1 - abs(x - xi)) * (1 - abs(y - yi))
                    if 0 <= xi < width and 0 <= yi < height:
                        out[b, i, j] += weight * features[b, yi, xi]
    return out


def random_case(seed=0, batch=2, height=5, width=7, channels=3, scale=3.0):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(batch, height, width, channels)).astype(np.float32)
    # Large enough that many samples land partly or wholly outside the map.
    flow = (rng.normal(size=(batch, height, width, 2)) * scale).astype(np.float32)
    return features, flow


def test_base_grid_is_x_then_y():
    grid = base_grid(2, 3).numpy()
    np.testing.assert_array_equal(grid[..., 0], [[0, 1, 2], [0, 1, 2]])
    np.testing.assert_array_equal(grid[..., 1], [[0, 0, 0], [1, 1, 1]])


@pytest.mark.parametrize("backend", BACKENDS)
def test_hand_computed_tiny_grid(backend):
    # A 2x2 single-channel map [[1, 2], [3, 4]].
    features = np.array([[[[1.0], [2.0]], [[3.0], [4.0]]]], np.float32)
    flow = np.zeros((1, 2, 2, 2), np.float32)
    flow[0, 0, 0] = [0.5, 0.0]  # halfway between 1 and 2 -> 1.5
    flow[0, 0, 1] = [-0.5, 0.5]  # centre of the four -> 2.5
    flow[0, 1, 0] = [0.0, 1.0]  # below the last row: (0, 2) is outside -> 0
    flow[0, 1, 1] = [0.25, -0.5]  # x = 1.25 (right half outside), y = 0.5: 0.75 * (2 + 4) / 2 = 2.25
    out = warp(features, flow, backend=backend).numpy()
    np.testing.assert_allclose(out[0, ..., 0], [[1.5, 2.5], [0.0, 2.25]], atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_integer_shift_moves_content(backend):
    features = np.arange(1, 17, dtype=np.float32).reshape(1, 4, 4, 1)
    flow = np.zeros((1, 4, 4, 2), np.float32)
    flow[..., 0] = 1.0  # read one pixel to the right
    out = warp(features, flow, backend=backend).numpy()[0, ..., 0]
    np.testing.assert_allclose(out[:, :3], features[0, :, 1:, 0])
    np.testing.assert_allclose(out[:, 3], 0.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_flow_is_identity(backend):
    features, _ = random_case(1)
    out = warp(features, np.zeros(features.shape[:3] + (2,), np.float32), backend=backend)
    np.testing.assert_allclose(out.numpy(), features, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_loop_reference(backend):
    features, flow = random_case(2)
    np.testing.assert_allclose(warp(features, flow, backend=backend).numpy(), reference_warp(features, flow), atol=1e-5)


def test_gather_matches_tfa_forward_and_gradients():
    features, flow = random_case(3, batch=3, height=9, width=11, channels=4, scale=4.0)
    features, flow = tf.constant(features), tf.constant(flow)
    upstream = tf.random.stateless_normal(features.shape, seed=[1, 2])
    results = {}
    for backend in BACKENDS:
        with tf.GradientTape() as tape:
            tape.watch([features, flow])
            out = warp(features, flow, backend=backend)
            loss = tf.reduce_sum(out * upstream)
        results[backend] = (out, *tape.gradient(loss, [features, flow]))
    for a, b in zip(results["tfa"], results["gather"]):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
    # Gradients are real, not all zero.
    assert np.abs(results["gather"][1].numpy()).sum() > 0
    assert np.abs(results["gather"][2].numpy()).sum() > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_match_finite_differences(backend):
    rng = np.random.default_rng(4)
    features = rng.normal(size=(1, 4, 5, 2))
    # Keep every sample away from integer coordinates, where bilinear sampling has kinks.
    flow = np.round(rng.normal(size=(1, 4, 5, 2)) * 2) + rng.uniform(0.2, 0.8, size=(1, 4, 5, 2))

    if backend == "gather":  # the tfa kernel has no float64 gradient; check it below in float32
        theoretical, numerical = tf.test.compute_gradient(
            lambda feat, fl: warp(feat, fl, backend=backend),
            [tf.constant(features, tf.float64), tf.constant(flow, tf.float64)],
            delta=1e-4,
        )
        for t, n in zip(theoretical, numerical):
            np.testing.assert_allclose(t, n, atol=1e-5)
    # Both backends: a directional finite difference in float32 along the flow.
    direction = rng.normal(size=flow.shape)
    eps = 1e-3
    flow32 = tf.constant(flow, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(flow32)
        loss = tf.reduce_sum(warp(tf.constant(features, tf.float32), flow32, backend=backend) ** 2)
    grad = tape.gradient(loss, flow32).numpy()
    plus = np.sum(warp(features.astype(np.float32), (flow + eps * direction).astype(np.float32), backend=backend).numpy() ** 2)
    minus = np.sum(warp(features.astype(np.float32), (flow - eps * direction).astype(np.float32), backend=backend).numpy() ** 2)
    np.testing.assert_allclose((plus - minus) / (2 * eps), np.sum(grad * direction), rtol=2e-2)


def test_gather_float16():
    features, flow = random_case(5)
    out16 = warp(tf.constant(features, tf.float16), tf.constant(flow, tf.float16), backend="gather")
    assert out16.dtype == tf.float16
    reference = reference_warp(features, flow.astype(np.float16).astype(np.float32))
    np.testing.assert_allclose(out16.numpy().astype(np.float32), reference, atol=2e-2)


def test_gather_unknown_shapes_and_xla():
    spec_features = tf.TensorSpec([None, None, None, 3], tf.float32)
    spec_flow = tf.TensorSpec([None, None, None, 2], tf.float32)
    plain = tf.function(lambda f, fl: warp(f, fl, backend="gather")).get_concrete_function(spec_features, spec_flow)
    compiled = tf.function(lambda f, fl: warp(f, fl, backend="gather"), jit_compile=True)
    for seed, (b, h, w) in enumerate([(1, 4, 6), (3, 8, 5)]):
        features, flow = random_case(10 + seed, batch=b, height=h, width=w)
        expected = reference_warp(features, flow)
        np.testing.assert_allclose(plain(tf.constant(features), tf.constant(flow)).numpy(), expected, atol=1e-5)
        np.testing.assert_allclose(compiled(tf.constant(features), tf.constant(flow)).numpy(), expected, atol=1e-5)


def test_gather_graph_has_only_core_ops():
    spec = (tf.TensorSpec([None, None, None, 3]), tf.TensorSpec([None, None, None, 2]))
    graph = tf.function(lambda f, fl: warp(f, fl, backend="gather")).get_concrete_function(*spec).graph
    op_types = {op.type for op in graph.get_operations()}
    assert not any(t.startswith("Addons>") for t in op_types)
    assert {"GatherV2", "Floor"} <= op_types


def test_bad_shapes_raise_clear_errors():
    with pytest.raises(ValueError, match=r"flow must be \[B, h, w, 2\]"):
        warp(tf.zeros([1, 4, 4, 3]), tf.zeros([1, 4, 4, 3]))
    with pytest.raises(ValueError, match="h differs"):
        warp(tf.zeros([1, 4, 4, 3]), tf.zeros([1, 5, 4, 2]))
    with pytest.raises(ValueError, match="backend"):
        warp(tf.zeros([1, 4, 4, 3]), tf.zeros([1, 4, 4, 2]), backend="cuda")
