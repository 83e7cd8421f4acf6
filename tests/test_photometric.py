"""The photometric warping loss: zero where a source warped by its flow is the target, the
minimum over sources, and a gradient that moves a flow toward the true shift."""
import numpy as np
import tensorflow as tf

from tfrf.losses import photometric_loss
from tfrf.training.config import LossWeights


def smooth_image(seed, size=16):
    """Smooth colours inside, zero in a 3-pixel border (what the warp reads outside the map)."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(-1, 1, (1, 4, 4, 3)).astype(np.float32)
    inside = tf.image.resize(small, (size - 6, size - 6), method="bicubic")
    return tf.pad(inside, [[0, 0], [3, 3], [3, 3], [0, 0]])


def shifted(image, dx):
    """The image moved right by `dx` whole pixels: target pixel x shows source x - dx."""
    return tf.concat([tf.zeros_like(image[:, :, :dx]), image[:, :, :-dx]], axis=2)


def test_zero_for_the_true_flow_and_positive_for_zero_flow():
    source = smooth_image(0)
    target = shifted(source, 2)
    flow = np.zeros((1, 1, 16, 16, 2), np.float32)
    flow[..., 0] = -2.0  # target (x, y) reads the source at (x - 2, y)
    sources = source[:, None]
    exact = float(photometric_loss(sources, target, flow))
    still = float(photometric_loss(sources, target, np.zeros_like(flow)))
    assert exact < 1e-5 and still > 0.05, (exact, still)


def test_minimum_over_sources_and_resize_to_the_flow_map():
    target = smooth_image(1)
    other = smooth_image(2)
    zero = np.zeros((1, 2, 4, 4, 2), np.float32)  # an H/4 flow of a 16 x 16 image
    both = float(photometric_loss(tf.stack([other, target], axis=1), target, zero))
    assert both < 1e-6
    alone = float(photometric_loss(other[:, None], target, zero[:, :1]))
    small = tf.image.resize(target, (4, 4), method="area"), tf.image.resize(other, (4, 4), method="area")
    np.testing.assert_allclose(alone, float(tf.reduce_mean(tf.abs(small[0] - small[1]))), rtol=1e-5)


def test_gradient_moves_the_flow_toward_the_shift():
    source = smooth_image(3)
    target = shifted(source, 1)
    flow = tf.Variable(np.zeros((1, 1, 16, 16, 2), np.float32))
    with tf.GradientTape() as tape:
        loss = photometric_loss(source[:, None], target, flow)
    gradient = tape.gradient(loss, flow).numpy()
    assert gradient[..., 0].sum() > 0  # descending lowers dx toward -1


def test_off_by_default():
    assert LossWeights().photometric == 0.0
