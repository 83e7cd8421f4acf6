"""The in-graph pose encoders and photo fitting (`tfrf.pose.graph`) equal the numpy / eager code of
the input pipeline and of dataset preparation."""
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfrf import pose as pose_lib
from tfrf.pose import face as face_lib
from tfrf.pose import graph
from tfrf.pose import keypoints as keypoints_lib


def random_keypoints(rng, shape, height, width):
    points = rng.uniform(0, 1, (*shape, 18, 2)) * [height - 1, width - 1]
    points[rng.uniform(size=(*shape, 18)) < 0.2] = -1  # some missing
    return points.astype(np.float32)


def smooth_photo(height, width, seed):
    """A photo-like uint8 image: smooth colour gradients and blobs (no pixel noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:height, :width] / max(height, width)
    channels = [np.sin(6 * x * rng.uniform(0.5, 2) + 4 * y * rng.uniform(0.5, 2) + rng.uniform(0, 6)) for _ in range(3)]
    return np.clip(np.rint(127.5 + 120 * np.stack(channels, -1)), 0, 255).astype(np.uint8)


def test_keypoint_maps_equal_the_numpy_formula_and_the_encoder():
    rng = np.random.default_rng(0)
    height, width = 64, 48
    keypoints = random_keypoints(rng, (2, 3), height, width)
    maps = tf.function(lambda k: graph.keypoint_maps(k, height, width))(keypoints).numpy()
    assert maps.shape == (2, 3, height, width, 18)
    sigma = 6.0 * height / 256
    rows, columns = np.mgrid[:height, :width]
    for index in np.ndindex(2, 3):
        encoded = pose_lib.encoder("keypoints18")(keypoints[index], height, width).numpy()
        np.testing.assert_allclose(maps[index], encoded, atol=1e-5, rtol=0)
        for channel, (y, x) in enumerate(keypoints[index]):
            expected = np.zeros((height, width)) if (y < 0 or x < 0) else \
                np.exp(-((rows - y) ** 2 + (columns - x) ** 2) / (2 * sigma**2))
            np.testing.assert_allclose(maps[index][..., channel], expected, atol=1e-5, rtol=0)


def test_view_maps_equal_the_encoder_and_refuse_bad_bins():
    views = np.array([[[3, 0], [17, 2]], [[0, 1], [9, 2]]], np.float32)
    maps = tf.function(lambda v: graph.view_maps(v, 8, 16))(views).numpy()
    for index in np.ndindex(2, 2):
        expected = pose_lib.encoder("view21")(views[index].astype(np.int64), 8, 16).numpy()
        np.testing.assert_allclose(maps[index], expected, atol=1e-5, rtol=0)
        assert maps[index].sum(-1).min() == 2.0
    for bad in ([18.0, 0.0], [1.5, 0.0], [2.0, 3.0], [-1.0, 0.0]):
        with pytest.raises(tf.errors.InvalidArgumentError, match="target_pose"):
            graph.view_maps(np.array([bad], np.float32), 8, 8, name="target_pose")


def test_camera_maps_equal_the_encoder():
    poses = np.random.default_rng(1).normal(size=(3, 2, 6)).astype(np.float32)
    maps = tf.function(lambda p: graph.camera_maps(p, 8, 4))(poses).numpy()
    np.testing.assert_allclose(maps, pose_lib.encoder("camera6")(poses, 8, 4).numpy(), atol=1e-5, rtol=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="source_poses holds NaN"):
        graph.camera_maps(np.full((1, 6), np.nan, np.float32), 8, 4, name="source_poses")


@pytest.mark.parametrize("mode", ["pad", "stretch"])
@pytest.mark.parametrize("size", [(256, 176), (300, 200), (91, 400), (64, 64)])
def test_fit_transform_and_keypoints_equal_numpy(mode, size):
    rng = np.random.default_rng(2)
    transform = graph.fit_transform(size, (64, 48), mode).numpy()
    assert transform.tolist() == list(keypoints_lib.fit_transform(size, (64, 48), mode))
    keypoints = random_keypoints(rng, (4,), *size)
    keypoints[0, 0] = (0, 0)  # a pixel centre that lands just below 0 when downscaling
    moved = graph.transform_keypoints(keypoints, np.broadcast_to(transform, (4, 4))).numpy()
    np.testing.assert_array_equal(moved, keypoints_lib.transform_keypoints(keypoints, tuple(transform)))


@pytest.mark.parametrize("method", ["bicubic", "bilinear"])
@pytest.mark.parametrize("size, out", [((37, 53), (37, 64)), ((300, 200), (300, 41)), ((17, 30), (256, 30)),
                                       ((100, 70), (9, 70)), ((4, 4), (4, 4))])
def test_pil_resize_of_one_axis_is_exact(method, size, out):
    image = np.random.default_rng(3).integers(0, 256, (*size, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(image).resize(out[::-1], getattr(Image, method.upper())))
    np.testing.assert_array_equal(graph.pil_resize(image, *out, method).numpy(), expected)


@pytest.mark.parametrize("method", ["bicubic", "bilinear"])
@pytest.mark.parametrize("size, out", [((37, 53), (64, 64)), ((300, 200), (64, 41)), ((256, 176), (100, 256)),
                                       ((1000, 700), (256, 179)), ((73, 86), (5, 36)), ((57, 36), (25, 25))])
def test_pil_resize_of_both_axes_is_exact(method, size, out):
    """Noise, the hardest case (bicubic overshoots and clips): exact only in Pillow's pass order."""
    image = np.random.default_rng(4).integers(0, 256, (*size, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(image).resize(out[::-1], getattr(Image, method.upper())))
    np.testing.assert_array_equal(graph.pil_resize(image, *out, method).numpy(), expected)


@pytest.mark.parametrize("size", [(64, 44), (64, 64), (32, 64), (128, 88), (50, 31), (700, 455)])
def test_fit_photo_matches_fit_image(size):
    image = smooth_photo(*size, seed=5)
    expected, transform = keypoints_lib.fit_image(image, (64, 64), "pad", 255)
    fitted, graph_transform = graph.fit_photo(image, 64, 64, "pad", 255)
    assert graph_transform.numpy().tolist() == list(transform)
    np.testing.assert_array_equal(fitted.numpy(), expected)


def test_resize_square_and_crop_face_match_the_datasets():
    image = smooth_photo(80, 120, seed=6)
    from tfrf.datasets import view_common

    expected = view_common.resize_square(image, 64)
    np.testing.assert_array_equal(graph.resize_square(image, 64, 64).numpy(), expected)
    np.testing.assert_array_equal(graph.resize_square(expected, 64, 64).numpy(), expected)
    for shift in ((0, 0), (-30, -20), (60, 40)):  # the box partly outside the photo: black there
        landmarks = face_lib.template_landmarks(60, 70) + np.array(shift, np.float32) + [20, 10]
        crop, moved = face_lib.crop_face(image, landmarks, 64)
        graph_crop, graph_moved = graph.crop_face(image, landmarks, 64)
        np.testing.assert_allclose(graph_moved.numpy(), moved, atol=1e-5, rtol=0)
        np.testing.assert_array_equal(graph_crop.numpy(), crop)


def test_decode_photo_equals_pil_for_png_and_refuses_other_bytes():
    image = np.random.default_rng(7).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    stream = io.BytesIO()
    Image.fromarray(image).save(stream, "PNG")
    np.testing.assert_array_equal(graph.decode_photo(stream.getvalue()).numpy(), image)
    grey = io.BytesIO()
    Image.fromarray(image[..., 0]).save(grey, "PNG")
    np.testing.assert_array_equal(graph.decode_photo(grey.getvalue()).numpy(),
                                  np.asarray(Image.open(io.BytesIO(grey.getvalue())).convert("RGB")))
    flags = graph.is_jpeg_or_png([stream.getvalue(), b"\xff\xd8\xff\xe0", b"GIF89a", b"", b"not an image"]).numpy()
    assert flags.tolist() == [True, True, False, False, False]


def test_check_shape_names_the_input():
    check = tf.function(lambda x: graph.check_shape(x, [None, 18, 2], "target_pose", "[B, 18, 2]"),
                        input_signature=[tf.TensorSpec(None, tf.float32)])
    assert check(np.zeros((3, 18, 2), np.float32)).shape == (3, 18, 2)
    for shape in ((3, 17, 2), (18, 2), (1, 18, 2, 1)):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"target_pose must be \[B, 18, 2\]"):
            check(np.zeros(shape, np.float32))
