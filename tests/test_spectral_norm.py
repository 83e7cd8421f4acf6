"""SpectralNormalization against numpy references of PyTorch's spectral_norm (one power-iteration
step, σ = uᵀWv, W / σ) and of its gradient w.r.t. weight_orig; the GFLA discriminator."""
import numpy as np
import pytest
import tensorflow as tf

from tfrf.layers import SpectralNormalization
from tfrf.models import GFLADiscriminator


def unit(x):
    return x / max(np.linalg.norm(x), 1e-12)


def torch_matrix(kernel):
    """TF conv kernel (kh, kw, in, out) -> PyTorch's W [out, in*kh*kw] (numpy, independently)."""
    return np.transpose(kernel, (3, 2, 0, 1)).reshape(kernel.shape[-1], -1)


def built_conv(seed=0, dtype="float32"):
    layer = SpectralNormalization(
        tf.keras.layers.Conv2D(5, 3, padding="same", bias_initializer="glorot_uniform", dtype=dtype), name="sn"
    )
    layer.build((None, 6, 7, 4))
    rng = np.random.default_rng(seed)
    layer.weight_orig.assign(rng.normal(size=(3, 3, 4, 5)))
    return layer, rng


def test_training_step_is_one_power_iteration_and_runs_with_w_over_sigma():
    layer, rng = built_conv()
    kernel, bias = layer.weight_orig.numpy(), layer.layer.bias.numpy()
    u0, v0 = layer.u.numpy(), layer.v.numpy()
    assert u0.shape == (5,) and v0.shape == (36,)
    np.testing.assert_allclose([np.linalg.norm(u0), np.linalg.norm(v0)], [1, 1], rtol=1e-5)
    matrix = torch_matrix(kernel)
    v1 = unit(matrix.T @ u0)
    u1 = unit(matrix @ v1)
    sigma = u1 @ matrix @ v1
    x = rng.normal(size=(2, 6, 7, 4)).astype(np.float32)

    out = layer(x, training=True)
    np.testing.assert_allclose(layer.u.numpy(), u1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.v.numpy(), v1, rtol=1e-5, atol=1e-6)
    expected = tf.nn.conv2d(x, (kernel / sigma).astype(np.float32), 1, "SAME") + bias
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(layer.weight_orig.numpy(), kernel)  # the kernel is never overwritten

    # Inference: the stored u, v give σ; nothing moves.
    out = layer(x, training=False)
    np.testing.assert_allclose(layer.u.numpy(), u1, rtol=1e-6)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    # Repeated training steps converge to the largest singular value.
    for _ in range(30):
        layer(x[:1], training=True)
    assert float(layer.sigma()) == pytest.approx(np.linalg.svd(matrix, compute_uv=False)[0], rel=1e-4)


def test_initial_u_v_give_a_positive_sigma_before_any_training_pass():
    tf.random.set_seed(0)
    layer = SpectralNormalization(tf.keras.layers.Dense(6, use_bias=False))
    layer.build((None, 5))
    matrix = layer.weight_orig.numpy().T
    u, v = layer.u.numpy(), layer.v.numpy()
    np.testing.assert_allclose(u, unit(matrix @ v), rtol=1e-5, atol=1e-6)  # one power-iteration step done
    assert float(layer.sigma()) == pytest.approx(np.linalg.norm(matrix @ v), rel=1e-5)
    assert float(layer.sigma()) > 0.2 * np.linalg.svd(matrix, compute_uv=False)[0]


def test_gradient_flows_through_sigma_analytic_dense():
    """Dense: out = x (K / σ), σ = uᵀ Kᵀ v with u, v constant: dL/dK = G/σ − ⟨G, K⟩/σ² · (u vᵀ)ᵀ."""
    layer = SpectralNormalization(tf.keras.layers.Dense(3, use_bias=False))
    layer.build((None, 4))
    rng = np.random.default_rng(1)
    layer.weight_orig.assign(rng.normal(size=(4, 3)))
    x = rng.normal(size=(5, 4)).astype(np.float32)
    r = rng.normal(size=(5, 3)).astype(np.float32)
    for training in (True, False):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(x, training=training) * r)
        grad = tape.gradient(loss, layer.weight_orig).numpy()
        kernel, u, v = layer.weight_orig.numpy(), layer.u.numpy(), layer.v.numpy()  # u, v after the update
        sigma = u @ kernel.T @ v
        g = x.T @ r  # dL / d(K/σ)
        expected = g / sigma - np.sum(g * kernel) / sigma**2 * np.outer(u, v).T
        np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-5)
        assert np.abs(expected - g / sigma).max() > 1e-3  # the σ term matters


def test_gradient_matches_finite_differences_conv_float64():
    layer, rng = built_conv(seed=2, dtype="float64")
    assert layer.u.dtype == tf.float64
    x = tf.constant(rng.normal(size=(1, 6, 7, 4)))
    r = tf.constant(rng.normal(size=(1, 6, 7, 5)))
    layer(x, training=True)  # move u, v off their initial draw; the check runs at inference

    def loss():
        return float(tf.reduce_sum(tf.sin(layer(x, training=False)) * r))

    with tf.GradientTape() as tape:
        value = tf.reduce_sum(tf.sin(layer(x, training=False)) * r)
    grad = tape.gradient(value, layer.weight_orig).numpy()
    kernel = layer.weight_orig.numpy()
    step = 1e-6
    for index in [(0, 0, 0, 0), (1, 2, 3, 4), (2, 1, 0, 2), (1, 1, 2, 1)]:
        bumped = kernel.copy()
        bumped[index] += step
        layer.weight_orig.assign(bumped)
        up = loss()
        bumped[index] -= 2 * step
        layer.weight_orig.assign(bumped)
        down = loss()
        layer.weight_orig.assign(kernel)
        assert grad[index] == pytest.approx((up - down) / (2 * step), rel=1e-5, abs=1e-8), index


def test_torch_layout_weights_u_and_v():
    """A PyTorch state (weight_orig (out, in, kh, kw), weight_u, weight_v) gives σ = u·W·v in that layout."""
    layer = SpectralNormalization(tf.keras.layers.Conv2D(6, 4, strides=2, padding="valid"))
    layer.build((None, 8, 8, 3))
    rng = np.random.default_rng(3)
    weight = rng.normal(size=(6, 3, 4, 4)).astype(np.float32)
    u, v, bias = unit(rng.normal(size=6)), unit(rng.normal(size=48)), rng.normal(size=6)
    layer.set_torch_weights(weight, u, v, bias)
    sigma = u @ weight.reshape(6, -1) @ v
    assert float(layer.sigma()) == pytest.approx(sigma, rel=1e-5)
    x = rng.normal(size=(1, 8, 8, 3)).astype(np.float32)
    # numpy reference of PyTorch's conv2d (cross-correlation, stride 2, no padding).
    reference = np.zeros((3, 3, 6))
    for i in range(3):
        for j in range(3):
            patch = x[0, 2 * i:2 * i + 4, 2 * j:2 * j + 4, :]  # (kh, kw, in)
            reference[i, j] = np.einsum("hwc,ochw->o", patch, weight / sigma) + bias
    np.testing.assert_allclose(layer(x)[0], reference, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="weight_u"):
        layer.set_torch_weights(weight, u[:3])


def test_transposed_conv_matrix_has_output_channels_first():
    layer = SpectralNormalization(tf.keras.layers.Conv2DTranspose(7, 3, strides=2, padding="same"))
    layer.build((None, 4, 4, 2))
    assert layer.u.shape == (7,) and layer.v.shape == (18,)
    rng = np.random.default_rng(4)
    weight = rng.normal(size=(2, 7, 3, 3)).astype(np.float32)  # PyTorch ConvTranspose2d: (in, out, kh, kw)
    u, v = unit(rng.normal(size=7)), unit(rng.normal(size=18))
    layer.set_torch_weights(weight, u, v)
    matrix = np.transpose(weight, (1, 0, 2, 3)).reshape(7, -1)  # torch spectral_norm(dim=1)
    assert float(layer.sigma()) == pytest.approx(u @ matrix @ v, rel=1e-5)
    assert layer(tf.zeros([1, 4, 4, 2])).shape == (1, 8, 8, 7)


def test_config_round_trip_and_errors():
    layer, _ = built_conv()
    config = tf.keras.layers.serialize(layer)
    clone = tf.keras.layers.deserialize(config)
    assert isinstance(clone, SpectralNormalization) and clone.power_iterations == 1
    assert clone.layer.filters == 5 and clone.epsilon == 1e-12
    with pytest.raises(ValueError, match="kernel"):
        SpectralNormalization(tf.keras.layers.AveragePooling2D()).build((None, 4, 4, 1))
    with pytest.raises(ValueError, match="power_iterations"):
        SpectralNormalization(tf.keras.layers.Dense(2), power_iterations=0)


def test_mixed_precision_normalises_in_float32():
    policy = tf.keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        layer = SpectralNormalization(tf.keras.layers.Conv2D(3, 3, padding="same"))
        out = layer(tf.ones([1, 4, 4, 2], tf.float16), training=True)
        # Built inside a float16 parent's call (the discriminator's blocks).
        from tfrf.layers import ResBlockDown

        block_out = ResBlockDown(4, spectral_norm=True)(tf.ones([1, 8, 8, 3], tf.float16), training=True)
    finally:
        tf.keras.mixed_precision.set_global_policy(policy)
    assert out.dtype == tf.float16 and layer.u.dtype == tf.float32
    assert layer.trainable_weights == layer.layer.trainable_weights
    assert np.isfinite(out.numpy()).all()
    assert block_out.dtype == tf.float16 and np.isfinite(block_out.numpy()).all()


def test_only_the_kernel_and_bias_train_in_a_tf_function():
    layer, rng = built_conv()
    x = tf.constant(rng.normal(size=(1, 6, 7, 4)), tf.float32)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(layer(x, training=True)))
        return tape.gradient(loss, layer.trainable_variables)

    u0 = layer.u.numpy()
    grads = step()
    assert len(grads) == 2 and all(g is not None for g in grads)
    assert not np.allclose(layer.u.numpy(), u0)  # the update ran inside the graph
    assert {v.name.split("/")[-1] for v in layer.non_trainable_weights} == {"u:0", "v:0"}


def test_gfla_discriminator_layout_and_parameter_count():
    """GFLA ResDiscriminator(ndf=32, img_f=128, layers=4): 3->32->64->128->128, patch logits at H/16."""
    model = GFLADiscriminator(num_blocks=4)
    logits = model(tf.random.uniform([2, 64, 32, 3], -1, 1), training=True)
    assert logits.shape == (2, 4, 2, 1) and logits.dtype == tf.float32

    def block(cin, cout, hidden):  # conv3 (cin->hidden) + conv4 s2 (hidden->cout) + 1x1 bypass
        return (9 * cin * hidden + hidden) + (16 * hidden * cout + cout) + (cin * cout + cout)

    expected = block(3, 32, 32) + block(32, 64, 32) + block(64, 128, 64) + block(128, 128, 128) + (128 + 1)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == expected
    # Every conv is spectrally normalised: 3 per block + the head.
    assert len([l for l in model.submodules if isinstance(l, SpectralNormalization)]) == 3 * 4 + 1
    market = GFLADiscriminator(num_blocks=3)
    assert market(tf.zeros([1, 32, 16, 3])).shape == (1, 4, 2, 1)
    clone = GFLADiscriminator.from_config(market.get_config())
    assert clone.get_config() == market.get_config()


def test_gfla_discriminator_block_matches_numpy():
    """One block (A -> conv3 -> A -> conv4 s2 p1, + avgpool2 -> conv1x1) and the head, against numpy."""
    model = GFLADiscriminator(num_blocks=1, base_channels=4, max_channels=4)
    x = np.random.default_rng(5).uniform(-1, 1, size=(1, 6, 4, 3)).astype(np.float32)
    out = model(x).numpy()  # inference: stored u, v

    def leaky(a):
        return np.maximum(a, 0.1 * a)

    def conv(a, sn, stride, pad):
        kernel = sn.weight_orig.numpy() / float(sn.sigma())
        bias = sn.layer.bias.numpy()
        kh, kw, _, cout = kernel.shape
        a = np.pad(a, ((pad, pad), (pad, pad), (0, 0)))
        h = (a.shape[0] - kh) // stride + 1
        w = (a.shape[1] - kw) // stride + 1
        res = np.zeros((h, w, cout))
        for i in range(h):
            for j in range(w):
                res[i, j] = np.einsum("hwc,hwco->o", a[i * stride:i * stride + kh, j * stride:j * stride + kw], kernel)
        return res + bias

    block = model.blocks[0]
    main = conv(leaky(conv(leaky(x[0]), block.conv1, 1, 1)), block.conv2, 2, 1)
    pooled = x[0].reshape(3, 2, 2, 2, 3).mean(axis=(1, 3))
    expected = conv(leaky(main + conv(pooled, block.shortcut, 1, 0)), model.head, 1, 0)
    np.testing.assert_allclose(out[0], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("which", ["gfla", "rf"])
def test_discriminators_read_the_right_input_from_a_dataset(which):
    """Regression: fed from one multi-output IteratorGetNext (Keras fit/evaluate), TF 2.15's oneDNN
    rewrite made a fused LeakyReLU read another output of that node (here output 0, the 1-channel
    `decoy`: dataset dict keys are sorted)."""
    from tfrf.config import ModelConfig
    from tfrf.models import Discriminator

    if which == "gfla":
        model = GFLADiscriminator(num_blocks=3, base_channels=4, max_channels=8)
    else:
        model = Discriminator(ModelConfig.preset("synthetic", image_height=32, image_width=32, width_multiplier=0.125))
    images = np.random.default_rng(6).uniform(-1, 1, size=(2, 32, 32, 3)).astype(np.float32)
    model(images, training=True)

    class Probe(tf.keras.Model):
        def test_step(self, data):
            return {"logits": model(data["images"], training=False)}

    probe = Probe()
    probe.compile()
    data = tf.data.Dataset.from_tensor_slices({"decoy": images[None, ..., :1], "images": images[None]})
    logits = probe.evaluate(data, return_dict=True, verbose=0)["logits"]
    np.testing.assert_allclose(np.asarray(logits), model(images).numpy(), rtol=1e-5, atol=1e-6)
