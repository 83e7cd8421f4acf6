"""Residual blocks, instance norm and the residual fusing block (paper eq. 3-6)."""
import numpy as np
import pytest
import tensorflow as tf

from tfrf.layers import InstanceNormalization, ResBlock, ResBlockDown, ResBlockUp, ResidualFusingBlock
from tfrf.ops import warp


@pytest.mark.parametrize(
    "layer, expected",
    [
        (ResBlockDown(16), (2, 4, 6, 16)),
        (ResBlockUp(16), (2, 16, 24, 16)),
        (ResBlock(16), (2, 8, 12, 16)),
        (ResBlock(5), (2, 8, 12, 5)),  # identity shortcut
        (ResBlockDown(16, spectral_norm=True), (2, 4, 6, 16)),
    ],
)
def test_block_shapes_and_config_round_trip(layer, expected):
    x = tf.random.normal([2, 8, 12, 5])
    y = layer(x)
    assert tuple(y.shape) == expected
    clone = type(layer).from_config(layer.get_config())
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(x).numpy(), y.numpy(), atol=1e-6)
    assert layer.get_config()["filters"] == expected[-1]


def test_identity_shortcut_has_no_projection():
    block = ResBlock(5)
    block(tf.zeros([1, 4, 4, 5]))
    assert not block.learned_shortcut
    assert ResBlockDown(5).normalization == "none" and ResBlockUp(5).normalization == "instance"


def test_bad_normalization_is_rejected():
    with pytest.raises(ValueError, match="normalization"):
        ResBlock(4, normalization="batch")


def test_instance_norm_standardises_each_channel():
    x = tf.random.normal([3, 6, 7, 4]) * 5.0 + 2.0
    y = InstanceNormalization()(x).numpy()
    np.testing.assert_allclose(y.mean(axis=(1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.std(axis=(1, 2)), 1.0, atol=1e-3)


def fusing_inputs(batch=2, sources=3, height=6, width=5, channels=4, seed=0):
    rng = np.random.default_rng(seed)
    return dict(
        target_feature=rng.normal(size=(batch, height, width, channels)).astype(np.float32),
        source_features=rng.normal(size=(batch, sources, height, width, channels)).astype(np.float32),
        flows=(rng.normal(size=(batch, sources, height, width, 2)) * 2).astype(np.float32),
        attention_logits=rng.normal(size=(batch, sources, height, width, 1)).astype(np.float32),
        occlusions=rng.uniform(size=(batch, sources, height, width, 1)).astype(np.float32),
    )


def call_block(block, inputs, **kwargs):
    return block(
        inputs["target_feature"],
        inputs["source_features"],
        inputs["flows"],
        inputs["attention_logits"],
        inputs["occlusions"],
        **kwargs,
    )


def reference_fusion(inputs, residual_kernel=None, residual_bias=None, attention=True, occlusion=True):
    """Paper eq. 3-6, one source at a time, with an explicit conv for R."""
    ft = inputs["target_feature"]
    sources = inputs["source_features"].shape[1]
    logits = inputs["attention_logits"]
    weights = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True) if attention else np.full_like(logits, 1 / sources)
    out = np.zeros_like(ft)
    for k in range(sources):
        fk, wk = inputs["source_features"][:, k], inputs["flows"][:, k]
        fw = warp(fk, wk, backend="tfa").numpy()
        if residual_kernel is not None:
            r = tf.nn.conv2d(np.concatenate([ft, fw], -1), residual_kernel, 1, "SAME").numpy() + residual_bias
            fw = warp(fk, wk + r, backend="tfa").numpy()
        m = inputs["occlusions"][:, k] if occlusion else 0.0
        out += weights[:, k] * (fw * (1 - m) + ft * m)
    return out


@pytest.mark.parametrize("backend", ["tfa", "gather"])
def test_fusing_matches_paper_equations(backend):
    inputs = fusing_inputs()
    block = ResidualFusingBlock(warp_backend=backend)
    call_block(block, inputs)
    kernel = np.random.default_rng(1).normal(size=(3, 3, 8, 2)).astype(np.float32) * 0.1
    bias = np.array([0.3, -0.2], np.float32)
    block.residual_conv.set_weights([kernel, bias])
    out, extra = call_block(block, inputs, return_intermediates=True)
    np.testing.assert_allclose(out.numpy(), reference_fusion(inputs, kernel, bias), atol=1e-4)
    # The residual flow is really used: it is non-zero and changes the result.
    assert np.abs(extra["residual_flows"].numpy()).mean() > 0.05
    assert np.abs(out.numpy() - reference_fusion(inputs)).max() > 1e-3
    np.testing.assert_allclose(extra["attention"].numpy().sum(axis=1), 1.0, atol=1e-6)


def test_fusing_permutation_invariant_and_any_k():
    block = ResidualFusingBlock()
    for sources in (1, 2, 5):
        inputs = fusing_inputs(sources=sources, seed=sources)
        out = call_block(block, inputs).numpy()
        order = np.random.default_rng(0).permutation(sources)
        permuted = {k: (v[:, order] if v.ndim == 5 else v) for k, v in inputs.items()}
        np.testing.assert_allclose(call_block(block, permuted).numpy(), out, atol=1e-5)


def test_without_residual_flow_uses_initial_flow_and_has_no_weights():
    inputs = fusing_inputs()
    block = ResidualFusingBlock(use_residual_flow=False)
    out, extra = call_block(block, inputs, return_intermediates=True)
    assert block.trainable_weights == []
    np.testing.assert_allclose(out.numpy(), reference_fusion(inputs), atol=1e-5)
    np.testing.assert_array_equal(extra["residual_flows"].numpy(), 0.0)


def test_without_attention_weights_are_one_over_k():
    inputs = fusing_inputs(sources=4)
    block = ResidualFusingBlock(use_residual_flow=False, use_attention=False)
    out, extra = call_block(block, inputs, return_intermediates=True)
    np.testing.assert_allclose(extra["attention"].numpy(), 0.25)
    np.testing.assert_allclose(out.numpy(), reference_fusion(inputs, attention=False), atol=1e-5)


def test_without_occlusion_target_never_leaks_in():
    inputs = fusing_inputs()
    block = ResidualFusingBlock(use_residual_flow=False, use_occlusion=False)
    out, extra = call_block(block, inputs, return_intermediates=True)
    np.testing.assert_array_equal(extra["occlusions"].numpy(), 0.0)
    changed = dict(inputs, target_feature=inputs["target_feature"] + 10.0)
    np.testing.assert_array_equal(call_block(block, changed).numpy(), out.numpy())
    np.testing.assert_allclose(out.numpy(), reference_fusion(inputs, occlusion=False), atol=1e-5)
    # ...whereas with occlusion on, a full mask returns the target feature itself.
    full_mask = dict(inputs, occlusions=np.ones_like(inputs["occlusions"]))
    np.testing.assert_allclose(
        call_block(ResidualFusingBlock(use_residual_flow=False), full_mask).numpy(), inputs["target_feature"], atol=1e-5
    )


def test_fusing_gradients_reach_residual_conv():
    inputs = {k: tf.constant(v) for k, v in fusing_inputs().items()}
    block = ResidualFusingBlock()
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(call_block(block, inputs) ** 2)
    grads = tape.gradient(loss, block.trainable_weights)
    assert len(grads) == 2 and all(float(tf.reduce_sum(tf.abs(g))) > 0 for g in grads)


def test_fusing_config_round_trip():
    block = ResidualFusingBlock(use_occlusion=False, warp_backend="gather", name="rf")
    clone = ResidualFusingBlock.from_config(block.get_config())
    assert (clone.use_residual_flow, clone.use_occlusion, clone.use_attention, clone.warp_backend) == (True, False, True, "gather")


def test_fusing_rejects_bad_shapes():
    inputs = fusing_inputs()
    block = ResidualFusingBlock()
    with pytest.raises(ValueError, match=r"flows must be \[B, K, h, w, 2\]"):
        call_block(block, dict(inputs, flows=inputs["flows"][..., :1]))
    with pytest.raises(ValueError, match="attention_logits"):
        call_block(block, dict(inputs, attention_logits=inputs["attention_logits"][:, :2]))
    with pytest.raises(ValueError, match="K >= 1"):
        call_block(block, {k: (v[:, :0] if v.ndim == 5 else v) for k, v in inputs.items()})
