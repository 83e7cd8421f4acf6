"""Image metrics on [-1, 1] images against hand-computed values."""
import numpy as np
import pytest

from tfrf import metrics


def test_l1_and_psnr_of_a_constant_offset():
    target = np.zeros((2, 16, 16, 3), np.float32)
    prediction = target + np.array([0.2, 0.5], np.float32)[:, None, None, None]
    np.testing.assert_allclose(metrics.l1(prediction, target).numpy(), [0.2, 0.5], rtol=1e-6)
    # PSNR = 10 log10(max^2 / MSE) with max = 2: 10 log10(4 / 0.04) = 20 dB; 4 / 0.25 -> 12.04 dB.
    np.testing.assert_allclose(metrics.psnr(prediction, target).numpy(), [20.0, 10 * np.log10(16.0)], rtol=1e-5)


def test_ssim_is_one_for_identical_images_and_lower_for_noise():
    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
    assert metrics.ssim(image, image).numpy()[0] == pytest.approx(1.0, abs=1e-5)
    noisy = np.clip(image + rng.normal(0, 0.5, image.shape), -1, 1).astype(np.float32)
    assert metrics.ssim(noisy, image).numpy()[0] < 0.8


def test_accumulator_averages_over_images():
    accumulator = metrics.MetricAccumulator()
    target = np.zeros((3, 16, 16, 3), np.float32)
    accumulator.update(target + 0.1, target)
    accumulator.update(target[:1] + 0.4, target[:1])
    result = accumulator.result()
    assert result["examples"] == 4
    assert result["l1"] == pytest.approx((3 * 0.1 + 0.4) / 4, rel=1e-5)


def test_shape_errors_name_the_tensor():
    with pytest.raises(ValueError, match=r"prediction must be \[B, H, W, 3\]"):
        metrics.l1(np.zeros((16, 16, 3)), np.zeros((16, 16, 3)))
    with pytest.raises(ValueError, match="must match prediction"):
        metrics.psnr(np.zeros((1, 16, 16, 3)), np.zeros((1, 8, 8, 3)))
    with pytest.raises(ValueError, match="no images"):
        metrics.MetricAccumulator().result()
