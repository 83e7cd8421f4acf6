"""tfrf.ops.extract_blocks and local_attention_reshape against loop references of GFLA's CUDA
kernels (block_extractor, local_attn_reshape): hand-computed blocks, flows pointing outside,
k = 3 and 5, non-square maps, gradients vs finite differences, float16, unknown shapes, XLA and a
builtin-only TFLite conversion run through the interpreter."""
import math

import numpy as np
import pytest
import tensorflow as tf

from tfrf.export.tflite import check_builtin_ops, load_interpreter
from tfrf.ops import extract_blocks, local_attention_reshape


def reference_blocks(source: np.ndarray, flow: np.ndarray, k: int) -> np.ndarray:
    """GFLA's `kernel_block_extractor_update_output`, one output element at a time (NHWC)."""
    batch, height, width, channels = source.shape
    _, flow_height, flow_width, _ = flow.shape
    out = np.zeros((batch, k * flow_height, k * flow_width, channels), np.float64)
    for b in range(batch):
        for y in range(k * flow_height):
            for x in range(k * flow_width):
                yf, xf = y // k, x // k
                dy = flow[b, yf, xf, 1] + (y % k - k // 2) + yf
                dx = flow[b, yf, xf, 0] + (x % k - k // 2) + xf
                x_left = max(min(int(math.floor(dx)), width - 1), 0)
                x_right = max(min(int(math.floor(dx)) + 1, width - 1), 0)
                y_top = max(min(int(math.floor(dy)), height - 1), 0)
                y_bottom = max(min(int(math.floor(dy)) + 1, height - 1), 0)
                wx_left, wx_right = 1 - (dx - math.floor(dx)), dx - math.floor(dx)
                wy_top, wy_bottom = 1 - (dy - math.floor(dy)), dy - math.floor(dy)
                out[b, y, x] = (
                    wx_left * wy_top * source[b, y_top, x_left]
                    + wx_right * wy_top * source[b, y_top, x_right]
                    + wx_left * wy_bottom * source[b, y_bottom, x_left]
                    + wx_right * wy_bottom * source[b, y_bottom, x_right]
                )
    return out


def reference_reshape(coefficients: np.ndarray, k: int) -> np.ndarray:
    """GFLA's `kernel_local_attn_reshape_update_output` (NHWC, one output channel)."""
    batch, height, width, _ = coefficients.shape
    out = np.zeros((batch, k * height, k * width, 1), coefficients.dtype)
    for b in range(batch):
        for y in range(k * height):
            for x in range(k * width):
                out[b, y, x, 0] = coefficients[b, y // k, x // k, (y % k) * k + (x % k)]
    return out


def random_case(seed, batch=2, height=5, width=7, channels=3, scale=3.0, flow_size=None):
    rng = np.random.default_rng(seed)
    source = rng.normal(size=(batch, height, width, channels))
    flow_height, flow_width = flow_size or (height, width)
    # Large enough that many blocks reach past the border (clamped corners).
    flow = rng.normal(size=(batch, flow_height, flow_width, 2)) * scale
    return source.astype(np.float32), flow.astype(np.float32)


def test_hand_computed_block():
    # A 3x3 map 0..8; the block of position (0, 0) with flow (dx, dy) = (0.5, 1) and k = 3
    # samples x in {-0.5, 0.5, 1.5}, y in {0, 1, 2}: x = -0.5 uses columns clamp(-1) = 0 and 0.
    source = np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1)
    flow = np.zeros((1, 1, 1, 2), np.float32)
    flow[0, 0, 0] = [0.5, 1.0]
    out = extract_blocks(source, flow, 3).numpy()[0, ..., 0]
    expected = np.array([[0.0, 0.5, 1.5], [3.0, 3.5, 4.5], [6.0, 6.5, 7.5]])
    np.testing.assert_allclose(out, expected, atol=1e-6)
    # Far outside: every corner clamps to the last column/row, so the block repeats that pixel.
    flow[0, 0] = [20.25, 30.5]
    np.testing.assert_allclose(extract_blocks(source, flow, 3).numpy(), np.full((1, 3, 3, 1), 8.0), atol=1e-6)


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("size,flow_size", [((5, 7), None), ((6, 4), None), ((4, 6), (3, 5))])
def test_matches_cuda_arithmetic(k, size, flow_size):
    source, flow = random_case(k, height=size[0], width=size[1], flow_size=flow_size)
    out = extract_blocks(source, flow, k).numpy()
    fh, fw = flow.shape[1:3]
    assert out.shape == (2, k * fh, k * fw, 3)
    np.testing.assert_allclose(out, reference_blocks(source, flow, k), atol=1e-5)


@pytest.mark.parametrize("k", [3, 5])
def test_zero_flow_path_equals_zero_flow(k):
    source, _ = random_case(7, height=4, width=6)
    zero = np.zeros(source.shape[:3] + (2,), np.float32)
    integer_blocks = extract_blocks(source, None, k).numpy()
    np.testing.assert_array_equal(integer_blocks, extract_blocks(source, zero, k).numpy())
    np.testing.assert_allclose(integer_blocks, reference_blocks(source, zero, k), atol=1e-6)
    # The block centres are the map itself.
    np.testing.assert_array_equal(integer_blocks[:, k // 2::k, k // 2::k], source)


@pytest.mark.parametrize("k", [3, 5])
def test_gradients_match_finite_differences(k):
    rng = np.random.default_rng(11)
    source = rng.normal(size=(1, 4, 5, 2))
    # Fractions kept away from integers so that the finite differences never cross a floor.
    whole = rng.integers(-4, 5, size=(1, 3, 4, 2))
    flow = whole + rng.uniform(0.2, 0.8, size=whole.shape)
    weights = rng.normal(size=(1, 3 * k, 4 * k, 2))

    def loss_source(features):
        return tf.reduce_sum(extract_blocks(features, flow, k) * weights, axis=[1, 2, 3])

    def loss_flow(offsets):
        return tf.reduce_sum(extract_blocks(source, offsets, k) * weights, axis=[1, 2, 3])

    for function, value in ((loss_source, source), (loss_flow, flow)):
        theoretical, numerical = tf.test.compute_gradient(function, [tf.constant(value, tf.float64)], delta=1e-4)
        assert np.abs(theoretical[0]).max() > 0.1
        np.testing.assert_allclose(theoretical[0], numerical[0], atol=1e-6)


def test_float16_follows_float32_with_float32_coordinates():
    source, flow = random_case(3, height=16, width=24, scale=6.0)
    flow[..., 0] += 10.3  # positions beyond float16's sub-pixel resolution would be visible here
    expected = extract_blocks(source, flow, 3).numpy()
    out = extract_blocks(tf.constant(source, tf.float16), tf.constant(flow, tf.float16), 3)
    assert out.dtype == tf.float16
    flow16 = flow.astype(np.float16).astype(np.float32)
    np.testing.assert_allclose(out.numpy().astype(np.float32), reference_blocks(source, flow16, 3), atol=2e-2)
    assert np.abs(out.numpy() - expected).max() < 0.1


def test_unknown_shapes_and_xla():
    function = tf.function(lambda features, flow: extract_blocks(features, flow, 3))
    concrete = function.get_concrete_function(
        tf.TensorSpec([None, None, None, 3], tf.float32), tf.TensorSpec([None, None, None, 2], tf.float32)
    )
    compiled = tf.function(lambda features, flow: extract_blocks(features, flow, 5), jit_compile=True)
    for seed, size in ((0, (5, 7)), (1, (8, 3))):
        source, flow = random_case(seed, height=size[0], width=size[1])
        np.testing.assert_allclose(concrete(tf.constant(source), tf.constant(flow)).numpy(),
                                   reference_blocks(source, flow, 3), atol=1e-5)
        np.testing.assert_allclose(compiled(source, flow).numpy(), reference_blocks(source, flow, 5), atol=1e-5)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_local_attention_reshape_matches_cuda_layout(k):
    coefficients = np.random.default_rng(k).normal(size=(2, 3, 4, k * k)).astype(np.float32)
    np.testing.assert_array_equal(local_attention_reshape(coefficients, k).numpy(), reference_reshape(coefficients, k))


def test_errors_name_the_tensor():
    source, flow = random_case(0)
    with pytest.raises(ValueError, match=r"flow must be \[B, h, w, 2\]"):
        extract_blocks(source, flow[..., :1], 3)
    with pytest.raises(ValueError, match="kernel_size must be a positive int"):
        extract_blocks(source, flow, 0)
    with pytest.raises(ValueError, match=r"features must be \[B, H, W, C\]"):
        extract_blocks(source[0], flow, 3)
    with pytest.raises(ValueError, match=r"coefficients must be \[B, h, w, 9\]"):
        local_attention_reshape(np.zeros((1, 2, 2, 4), np.float32), 3)


def test_tflite_builtins_only_and_matches(tmp_path):
    """extract_blocks + local_attention_reshape + the blend GFLA's attention does, as TFLite."""
    k, height, width, channels = 3, 6, 4, 5

    @tf.function(input_signature=[
        tf.TensorSpec([1, height, width, channels], tf.float32),
        tf.TensorSpec([1, height, width, 2], tf.float32),
        tf.TensorSpec([1, height, width, k * k], tf.float32),
    ])
    def attend(features, flow, coefficients):
        blocks = extract_blocks(features, flow, k)
        weights = local_attention_reshape(coefficients, k)
        return {"blocks": blocks, "target_blocks": extract_blocks(features, None, k), "weights": weights}

    module = tf.Module()
    module.attend = attend
    tf.saved_model.save(module, str(tmp_path), signatures={"attend": attend})
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path), signature_keys=["attend"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    model = converter.convert()
    names = check_builtin_ops(model)
    assert {"GATHER", "DEPTH_TO_SPACE"} <= set(names)
    runner = load_interpreter(model).get_signature_runner("attend")
    source, flow = random_case(5, batch=1, height=height, width=width, channels=channels)
    coefficients = np.random.default_rng(5).normal(size=(1, height, width, k * k)).astype(np.float32)
    out = runner(features=source, flow=flow, coefficients=coefficients)
    np.testing.assert_allclose(out["blocks"], reference_blocks(source, flow, k), atol=1e-5)
    np.testing.assert_allclose(out["target_blocks"], reference_blocks(source, 0 * flow, k), atol=1e-6)
    np.testing.assert_array_equal(out["weights"], reference_reshape(coefficients, k))
