"""GFLA's Market augmentation: keypoints move exactly as the image does (a rendered dot is found
where its keypoint went), zero augmentation is the identity, GFLA's ranges for sources and the
target, grey fill, keypoints leaving the image become missing, graph mode in tf.data."""
import math

import numpy as np
import pytest
import tensorflow as tf

from tfrf.data.augment import (GREY, AugmentConfig, augment_example, forward_matrices, sample_parameters,
                               transform_images, transform_keypoints)

HEIGHT, WIDTH = 48, 32


def blobs(keypoints, sigma=1.5):
    """[N, H, W, 3] images holding a Gaussian blob at each (y, x) keypoint (independent of tfrf)."""
    rows, columns = np.mgrid[0:HEIGHT, 0:WIDTH]
    images = np.zeros((len(keypoints), HEIGHT, WIDTH, 3), np.float32)
    for n, points in enumerate(keypoints):
        for y, x in points:
            images[n, :, :, 0] += np.exp(-((rows - y) ** 2 + (columns - x) ** 2) / (2 * sigma**2))
    return images


def centroid(channel, around, radius=5):
    """Intensity-weighted (y, x) centroid of `channel` within `radius` of `around`."""
    rows, columns = np.mgrid[0:HEIGHT, 0:WIDTH]
    near = (np.abs(rows - around[0]) <= radius) & (np.abs(columns - around[1]) <= radius)
    weights = np.where(near, channel, 0.0)
    return np.array([(weights * rows).sum(), (weights * columns).sum()]) / weights.sum()


def test_keypoints_follow_the_image():
    # One keypoint per image (sources and the target), well inside the frame.
    keypoints = np.array([[[20.0, 12.0]], [[30.0, 20.0]], [[24.0, 15.0]]], np.float32)
    config = AugmentConfig(rotation_degrees=5.0, shift_pixels=5.0, fill_value=0.0, interpolation="bilinear")
    for seed in (0, 1, 2):
        images, moved = augment_example(blobs(keypoints), keypoints, seed, config)
        images, moved = images.numpy(), moved.numpy()
        angles, shifts, scales = (v.numpy() for v in sample_parameters(seed, 3, config))
        assert np.abs(shifts).max() > 1.0 and np.abs(angles).max() > math.radians(0.5)  # a real move
        for n in range(3):
            found = centroid(images[n, :, :, 0], moved[n, 0])
            np.testing.assert_allclose(found, moved[n, 0], atol=0.15, err_msg=f"seed {seed} image {n}")
            assert np.linalg.norm(moved[n, 0] - keypoints[n, 0]) > 0.5  # it did move


def test_forward_map_by_hand():
    # 90 degrees about the centre (15.5, 23.5), scale 2, shift (1, -1): (x, y) = (16.5, 23.5),
    # one pixel right of the centre, goes to c + 2 * (0, 1) + (1, -1) = (16.5, 24.5).
    matrix = forward_matrices([math.pi / 2], [[1.0, -1.0]], [2.0], HEIGHT, WIDTH).numpy()[0]
    np.testing.assert_allclose(matrix @ [16.5, 23.5, 1.0], [16.5, 24.5, 1.0], atol=1e-5)
    moved = transform_keypoints([[[23.5, 16.5], [-1.0, -1.0]]], matrix[None], HEIGHT, WIDTH).numpy()
    np.testing.assert_allclose(moved[0], [[24.5, 16.5], [-1.0, -1.0]], atol=1e-5)  # (y, x); missing stays


def test_zero_augmentation_is_the_identity():
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, size=(3, HEIGHT, WIDTH, 3)).astype(np.float32)
    keypoints = rng.uniform(0, 30, size=(3, 18, 2)).astype(np.float32)
    keypoints[1, 4] = -1.0
    for interpolation in ("nearest", "bilinear"):
        out, moved = augment_example(images, keypoints, 7, AugmentConfig.identity(interpolation=interpolation))
        np.testing.assert_array_equal(out.numpy(), images)
        np.testing.assert_allclose(moved.numpy(), keypoints, atol=1e-5)


def test_gfla_ranges_for_sources_and_target():
    config = AugmentConfig()
    assert config.interpolation == "nearest" and config.fill_value == pytest.approx(128 / 127.5 - 1)
    angles, shifts, scales = [], [], []
    for seed in range(200):
        a, s, c = sample_parameters([seed, 3], 4, config)
        angles.append(np.degrees(a.numpy())), shifts.append(s.numpy()), scales.append(c.numpy())
    angles, shifts, scales = np.array(angles), np.array(shifts), np.array(scales)
    assert np.abs(angles[:, :3]).max() <= 5.0 and np.abs(angles[:, :3]).max() > 4.5
    assert np.abs(angles[:, 3]).max() <= 1.0 and np.abs(angles[:, 3]).max() > 0.9  # 0.2 x
    assert np.abs(shifts[:, :3]).max() <= 5.0 and np.abs(shifts[:, :3]).max() > 4.5
    assert np.abs(shifts[:, 3]).max() <= 2.5 and np.abs(shifts[:, 3]).max() > 2.2  # 0.5 x
    assert scales[:, :3].min() >= 0.95 and scales[:, :3].max() <= 1.05 and np.ptp(scales[:, :3]) > 0.09
    np.testing.assert_array_equal(scales[:, 3], 1.0)
    # Sources draw independently; equal seeds repeat.
    assert not np.allclose(angles[:, 0], angles[:, 1])
    np.testing.assert_array_equal(sample_parameters([5, 3], 4, config)[0], sample_parameters([5, 3], 4, config)[0])


def test_grey_fill_and_keypoints_leaving_the_image():
    images = np.full((1, HEIGHT, WIDTH, 3), 0.75, np.float32)
    matrix = forward_matrices([0.0], [[6.0, 0.0]], [1.0], HEIGHT, WIDTH)  # 6 px to the right
    out = transform_images(images, matrix, AugmentConfig()).numpy()
    np.testing.assert_allclose(out[0, :, :6], GREY)
    np.testing.assert_allclose(out[0, :, 6:], 0.75)
    keypoints = [[[10.0, 20.0], [10.0, 26.0], [10.0, 25.4], [5.0, -1.0]]]
    moved = transform_keypoints(keypoints, matrix, HEIGHT, WIDTH).numpy()[0]
    np.testing.assert_allclose(moved, [[10.0, 26.0], [-1.0, -1.0], [10.0, 31.0], [-1.0, -1.0]], atol=1e-5)


def test_runs_in_a_dataset_map_with_a_per_example_seed():
    rng = np.random.default_rng(1)
    images = rng.uniform(-1, 1, size=(4, 3, HEIGHT, WIDTH, 3)).astype(np.float32)
    keypoints = rng.uniform(5, 25, size=(4, 3, 18, 2)).astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((images, keypoints)).enumerate()
    dataset = dataset.map(lambda index, example: augment_example(example[0], example[1], tf.stack([index, 9])))
    outputs = list(dataset)
    assert len(outputs) == 4 and outputs[0][0].shape == (3, HEIGHT, WIDTH, 3)
    eager = augment_example(images[2], keypoints[2], tf.constant([2, 9], tf.int64))
    np.testing.assert_allclose(outputs[2][0], eager[0], atol=1e-6)
    np.testing.assert_allclose(outputs[2][1], eager[1], atol=1e-5)


def test_errors():
    with pytest.raises(ValueError, match="scale_range"):
        AugmentConfig(scale_range=(1.1, 0.9))
    with pytest.raises(ValueError, match="interpolation"):
        AugmentConfig(interpolation="cubic")
    with pytest.raises(ValueError, match="raw_keypoints"):
        augment_example(np.zeros((2, 8, 8, 3), np.float32), np.zeros((3, 18, 2), np.float32), 0)
