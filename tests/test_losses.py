"""Losses against small numpy references computed here."""
import numpy as np
import pytest
import tensorflow as tf

from tfrf import losses

from helpers import numpy_bilinear_warp

# ---------------------------------------------------------------- numpy references


def _affine_reference(flow: np.ndarray, k: int) -> float:
    """Loop over every k x k patch, fit an affine map by lstsq, sum squared residuals."""
    n, h, w, _ = flow.shape
    rows, cols = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    design = np.stack([cols.ravel(), rows.ravel(), np.ones(k * k)], 1)
    total, count = 0.0, 0
    for b in range(n):
        for i in range(h - k + 1):
            for j in range(w - k + 1):
                for c in range(2):
                    grid = flow[b, i:i + k, j:j + k, c].ravel() + (cols.ravel() + j if c == 0 else rows.ravel() + i)
                    _, residual, _, _ = np.linalg.lstsq(design, grid, rcond=None)
                    total += float(residual[0]) if residual.size else 0.0
                count += 1
    return total / count


def _correctness_reference(source: np.ndarray, target: np.ndarray, flow: np.ndarray) -> float:
    eps = 1e-8
    b, h, w, c = source.shape
    src = source.reshape(b, -1, c)
    tgt = target.reshape(b, -1, c)
    src_unit = src / (np.linalg.norm(src, axis=-1, keepdims=True) + eps)
    tgt_unit = tgt / (np.linalg.norm(tgt, axis=-1, keepdims=True) + eps)
    best = np.einsum("bsc,btc->bst", src_unit, tgt_unit).max(axis=1)
    sampled = numpy_bilinear_warp(source, flow).reshape(b, -1, c)
    sim = (sampled * tgt).sum(-1) / np.maximum(np.linalg.norm(sampled, axis=-1) * np.linalg.norm(tgt, axis=-1), eps)
    return float(np.mean(np.exp(-sim / (best + eps)) - np.exp(-1.0)))


def _shift(features: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """target(x, y) = features(x + dx, y + dy), zero outside."""
    b, h, w, c = features.shape
    out = np.zeros_like(features)
    for y in range(h):
        for x in range(w):
            if 0 <= x + dx < w and 0 <= y + dy < h:
                out[:, y, x] = features[:, y + dy, x + dx]
    return out


# ---------------------------------------------------------------- affine regularisation


@pytest.mark.parametrize("k", [3, 5])
def test_affine_regularization_is_zero_for_affine_flow(k):
    rng = np.random.default_rng(0)
    h, w = 8, 9
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    flows = []
    for _ in range(2):
        a = rng.normal(size=(2, 3))
        flows.append(np.stack([a[0, 0] * xs + a[0, 1] * ys + a[0, 2], a[1, 0] * xs + a[1, 1] * ys + a[1, 2]], -1))
    flow = np.stack(flows).astype(np.float32)
    loss = float(losses.affine_regularization_loss(flow, k))
    assert abs(loss) < 1e-8
    assert _affine_reference(flow.astype(np.float64), k) < 1e-10


@pytest.mark.parametrize("k", [3, 5])
def test_affine_regularization_matches_least_squares_reference(k):
    flow = np.random.default_rng(1).normal(size=(2, 7, 8, 2)).astype(np.float32)
    loss = float(losses.affine_regularization_loss(flow, k))
    reference = _affine_reference(flow.astype(np.float64), k)
    assert loss > 0.1
    np.testing.assert_allclose(loss, reference, rtol=1e-4)


def test_affine_regularization_accepts_k_sources_and_has_gradient():
    flow = tf.constant(np.random.default_rng(2).normal(size=(2, 3, 6, 6, 2)), tf.float32)
    flat = tf.reshape(flow, [6, 6, 6, 2])
    np.testing.assert_allclose(
        losses.affine_regularization_loss(flow, 3), losses.affine_regularization_loss(flat, 3), rtol=1e-6
    )
    with tf.GradientTape() as tape:
        tape.watch(flow)
        loss = losses.affine_regularization_loss(flow, 3)
    grad = tape.gradient(loss, flow)
    assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0


def test_affine_residual_matrix_annihilates_affine_patches():
    residual = losses.affine_residual_matrix(3)
    rows, cols = np.meshgrid(np.arange(3), np.arange(3), indexing="ij")
    for patch in (cols.ravel(), rows.ravel(), np.ones(9), 2 * cols.ravel() - rows.ravel() + 4):
        np.testing.assert_allclose(residual @ patch, 0, atol=1e-12)
    # A projection minus identity: idempotent up to sign, rank k^2 - 3.
    np.testing.assert_allclose(residual @ residual, -residual, atol=1e-12)
    assert np.linalg.matrix_rank(residual) == 6


def test_affine_regularization_rejects_bad_shapes():
    with pytest.raises(ValueError, match="flow must be"):
        losses.affine_regularization_loss(tf.zeros([1, 8, 8, 3]), 3)
    with pytest.raises(ValueError, match="smaller than"):
        losses.affine_regularization_loss(tf.zeros([1, 4, 8, 2]), 5)


# ---------------------------------------------------------------- sampling correctness


def _features(seed=0, shape=(2, 8, 8, 16)):
    return np.random.default_rng(seed).uniform(0.0, 1.0, size=shape).astype(np.float32)


def test_correctness_loss_is_lowest_for_the_aligning_flow():
    source = _features()
    dx, dy = 2, 1
    target = _shift(source, dx, dy)
    shape = source.shape[:3] + (2,)
    right = np.broadcast_to(np.array([dx, dy], np.float32), shape)
    zero = np.zeros(shape, np.float32)
    wrong = -right
    scores = {name: float(losses.sampling_correctness_loss(source, target, flow))
              for name, flow in (("right", right), ("zero", zero), ("wrong", wrong))}
    assert scores["right"] < min(scores["zero"], scores["wrong"]) - 0.01, scores
    # Where the target is inside the source the right flow samples the best match exactly.
    inside = np.zeros(source.shape[:3] + (1,), np.float32)
    inside[:, : 8 - dy, : 8 - dx] = 1.0
    masked = float(losses.sampling_correctness_loss(source, target, right, mask=inside))
    assert abs(masked) < 1e-5
    assert float(losses.sampling_correctness_loss(source, target, zero, mask=inside)) > 0.01


@pytest.mark.parametrize("seed", [0, 1])
def test_correctness_loss_matches_numpy_reference(seed):
    rng = np.random.default_rng(seed)
    source = _features(seed)
    target = _features(seed + 10)
    flow = rng.uniform(-2.5, 2.5, size=source.shape[:3] + (2,)).astype(np.float32)
    loss = float(losses.sampling_correctness_loss(source, target, flow))
    np.testing.assert_allclose(loss, _correctness_reference(source, target, flow), rtol=1e-4, atol=1e-6)


def test_correctness_loss_k_sources_broadcast_target_and_gradient():
    source = tf.constant(_features(3, (2, 3, 8, 8, 8)))
    target = tf.constant(_features(4, (2, 8, 8, 8)))
    flow = tf.constant(np.random.default_rng(5).uniform(-1, 1, size=(2, 3, 8, 8, 2)), tf.float32)
    stacked = losses.sampling_correctness_loss(source, target, flow)
    per_source = [losses.sampling_correctness_loss(source[:, k], target, flow[:, k]) for k in range(3)]
    np.testing.assert_allclose(float(stacked), np.mean(per_source), rtol=1e-5)
    with tf.GradientTape() as tape:
        tape.watch(flow)
        loss = losses.sampling_correctness_loss(source, target, flow)
    grad = tape.gradient(loss, flow)
    assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0


def test_correctness_loss_float16_inputs_give_float32():
    source = _features()
    half = source.astype(np.float16)
    loss = losses.sampling_correctness_loss(half, half, np.zeros((2, 8, 8, 2), np.float16))
    assert loss.dtype == tf.float32
    assert abs(float(loss)) < 1e-3


def test_correctness_loss_rejects_mismatched_resolution():
    with pytest.raises(ValueError, match="flow"):
        losses.sampling_correctness_loss(tf.zeros([1, 8, 8, 4]), tf.zeros([1, 8, 8, 4]), tf.zeros([1, 4, 4, 2]))
    with pytest.raises(ValueError, match="target_features"):
        losses.sampling_correctness_loss(tf.zeros([1, 8, 8, 4]), tf.zeros([1, 8, 8, 5]), tf.zeros([1, 8, 8, 2]))


# ---------------------------------------------------------------- content losses


def test_l1_loss_known_values():
    a = np.array([[1.0, -2.0], [0.5, 3.0]], np.float32)
    b = np.array([[0.0, 2.0], [0.5, 1.0]], np.float32)
    assert float(losses.l1_loss(a, b)) == pytest.approx((1 + 4 + 0 + 2) / 4)
    assert losses.l1_loss(a.astype(np.float16), b).dtype == tf.float32


def test_gram_matrix_known_tensor():
    # One image, 1 x 2 pixels, 2 channels: F (HW x C) = [[1, 2], [3, 4]].
    features = np.array([[[[1.0, 2.0], [3.0, 4.0]]]], np.float32)
    expected = np.array([[1 * 1 + 3 * 3, 1 * 2 + 3 * 4], [2 * 1 + 4 * 3, 2 * 2 + 4 * 4]], np.float32) / (2 * 1 * 2)
    np.testing.assert_allclose(losses.gram_matrix(features)[0], expected)


def test_style_and_perceptual_losses_against_numpy():
    rng = np.random.default_rng(7)
    names = ("relu1_1", "relu3_1")
    a = {n: rng.normal(size=(2, 4, 3, 5)).astype(np.float32) for n in names}
    b = {n: rng.normal(size=(2, 4, 3, 5)).astype(np.float32) for n in names}

    def gram(f):
        flat = f.reshape(f.shape[0], -1, f.shape[-1])
        return np.einsum("bnc,bnd->bcd", flat, flat) / (f.shape[1] * f.shape[2] * f.shape[3])

    style_expected = sum(np.mean(np.abs(gram(a[n]) - gram(b[n]))) for n in names)
    perceptual_expected = sum(np.mean(np.abs(a[n] - b[n])) for n in names)
    np.testing.assert_allclose(float(losses.style_loss(a, b)), style_expected, rtol=1e-5)
    np.testing.assert_allclose(float(losses.perceptual_loss(a, b)), perceptual_expected, rtol=1e-5)
    np.testing.assert_allclose(float(losses.perceptual_loss(a, b, layers=["relu3_1"])),
                               np.mean(np.abs(a["relu3_1"] - b["relu3_1"])), rtol=1e-5)
    assert float(losses.style_loss(a, a)) == 0.0


def test_content_losses_name_missing_layers():
    a = {"relu1_1": tf.zeros([1, 2, 2, 3])}
    with pytest.raises(ValueError, match="relu2_1"):
        losses.perceptual_loss(a, a, layers=["relu2_1"])


# ---------------------------------------------------------------- adversarial


def _softplus(x):
    return np.log1p(np.exp(x))


@pytest.mark.parametrize("form", losses.GAN_LOSS_FORMS)
def test_adversarial_losses_on_known_logits(form):
    real = np.array([2.0, -1.0, 0.5], np.float32)
    fake = np.array([0.5, -3.0, 1.5], np.float32)
    expected_d = {
        "nonsaturating": np.mean(_softplus(-real)) + np.mean(_softplus(fake)),
        "lsgan": np.mean((real - 1) ** 2) + np.mean(fake ** 2),
        "hinge": np.mean(np.maximum(0, 1 - real)) + np.mean(np.maximum(0, 1 + fake)),
    }[form]
    expected_g = {
        "nonsaturating": np.mean(_softplus(-fake)),
        "lsgan": np.mean((fake - 1) ** 2),
        "hinge": -np.mean(fake),
    }[form]
    np.testing.assert_allclose(float(losses.discriminator_adversarial_loss(real, fake, form)), expected_d, rtol=1e-5)
    np.testing.assert_allclose(float(losses.generator_adversarial_loss(fake, form)), expected_g, rtol=1e-5)


def test_nonsaturating_discriminator_loss_is_eq11_negated():
    # eq. 11 with D = sigmoid(logits): -(log D(real) + log(1 - D(fake))).
    real, fake = np.float32(0.7), np.float32(-0.2)
    sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    expected = -(np.log(sigmoid(real)) + np.log(1 - sigmoid(fake)))
    loss = losses.discriminator_adversarial_loss([real], [fake], "nonsaturating")
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


def test_adversarial_rejects_unknown_form():
    with pytest.raises(ValueError, match="form must be one of"):
        losses.generator_adversarial_loss([0.0], form="wgan")


def test_flow_losses_under_xla_and_unknown_shapes_match_eager():
    source = tf.constant(_features(0))
    target = tf.constant(_features(1))
    flow = tf.constant(np.random.default_rng(3).normal(size=(2, 8, 8, 2)), tf.float32)

    def flow_loss(s, t, f):
        return losses.sampling_correctness_loss(s, t, f) + losses.affine_regularization_loss(f, 3)

    eager = float(flow_loss(source, target, flow))
    compiled = tf.function(flow_loss, jit_compile=True)
    np.testing.assert_allclose(float(compiled(source, target, flow)), eager, rtol=1e-4)
    signature = [tf.TensorSpec([None, None, None, 16])] * 2 + [tf.TensorSpec([None, None, None, 2])]
    unknown = tf.function(flow_loss, input_signature=signature)
    np.testing.assert_allclose(float(unknown(source, target, flow)), eager, rtol=1e-5)
