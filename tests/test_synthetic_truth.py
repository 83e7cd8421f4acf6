"""Ground truth of the built-in chairs: warping a source view with the ray-cast flow reproduces the
target on visible pixels; the levels; the misaligned variant's jitter (labels nominal, truth follows
the true cameras)."""
import numpy as np
import pytest
import tensorflow as tf

from tfrf.data import synthetic
from tfrf.data import synthetic_cameras as cameras_lib
from tfrf.ops.warp import warp

PAIRS = [(0, 1), (0, 2), (3, 21), (10, 45), (5, 8), (20, 38), (30, 31)]


def _warp_errors(pair):
    """Per-pixel mean absolute error ([0, 1] units) of the warped source and of the unwarped source
    against the target, on the visible pixels."""
    source = tf.constant(pair["source"][None].astype(np.float32) / 255.0)
    warped = warp(source, tf.constant(pair["flow"][None]), backend="gather").numpy()[0]
    target = pair["target"].astype(np.float32) / 255.0
    visible = pair["visible"]
    return (np.abs(warped - target).mean(-1)[visible], np.abs(source.numpy()[0] - target).mean(-1)[visible])


@pytest.mark.parametrize("misaligned", [False, True])
def test_warping_the_source_with_the_ground_truth_reproduces_the_target(misaligned):
    # Lambert shading with lights fixed to the object: a surface point has one colour in every view.
    # What is left are bilinear samples across hard texture edges (stripes, checks) and silhouettes.
    for size, median_tolerance, mean_tolerance in ((128, 2 / 255, 0.06), (64, 8 / 255, 0.10)):
        warped, unwarped = [], []
        for index in range(2):
            for source_view, target_view in PAIRS:
                pair = synthetic.view_pair("test", index, source_view, target_view, size, misaligned=misaligned)
                assert pair["source"].shape == pair["target"].shape == (size, size, 3)
                assert pair["source"].dtype == np.uint8 and pair["flow"].dtype == np.float32
                assert pair["flow"].shape == (size, size, 2) and pair["visible"].dtype == bool
                assert pair["visible"].mean() > 0.03
                errors, zero = _warp_errors(pair)
                warped.append(errors)
                unwarped.append(zero)
        warped, unwarped = np.concatenate(warped), np.concatenate(unwarped)
        print(f"\n{size} px misaligned={misaligned}: warp error on visible pixels mean {warped.mean():.4f} "
              f"median {np.median(warped):.4f}; unwarped source mean {unwarped.mean():.4f}")
        assert np.median(warped) < median_tolerance and warped.mean() < mean_tolerance
        assert unwarped.mean() > 3 * warped.mean()


def test_the_pair_views_are_the_dataset_images_and_a_view_sees_itself():
    data = synthetic.generate(1, seed=0, split="test", image_size=32)
    pair = synthetic.view_pair("test", 0, 4, 22, image_size=32)
    np.testing.assert_array_equal(pair["source"], data["images"][4])
    np.testing.assert_array_equal(pair["target"], data["images"][22])
    same = synthetic.view_pair("test", 0, 7, 7, image_size=32)
    np.testing.assert_allclose(same["flow"], 0.0, atol=1e-4)
    # Every pixel whose centre ray hits the object (a render without anti-aliasing samples the
    # centres) is visible from its own camera, and no other pixel is.
    centres = synthetic.render_object(0, "test", 0, image_size=32, supersample=1)[7]
    np.testing.assert_array_equal(same["visible"], np.any(centres != 255, axis=-1))
    with pytest.raises(ValueError, match="view index"):
        synthetic.view_pair("test", 0, 54, 0)


def test_an_image_plane_shift_is_a_constant_flow():
    chair, nominal = synthetic.object_cameras(0, "test", 0)
    target = nominal.take([3])
    source = cameras_lib.Cameras(target.azimuth, target.elevation, target.distance, target.roll, [0.05], [-0.025],
                                 fov_deg=target.fov_deg)
    flow, visible, shown = cameras_lib.pair_ground_truth(chair, source, target, 64)
    assert np.all(visible <= shown)
    # The source picture moved right by 5 % and up by 2.5 % of 64 px: the target's pixel is found there.
    np.testing.assert_allclose(flow[0][visible[0]], np.tile([[3.2, -1.6]], (visible.sum(), 1)), atol=1e-4)
    assert visible.sum() > 200


def test_levels_are_the_geometry_at_each_size():
    levels = synthetic.ground_truth_levels("test", 1, [0, 20], 2, image_size=64)
    assert sorted(levels) == ["h", "h4", "h8"]
    for level, size in (("h", 64), ("h4", 16), ("h8", 8)):
        assert levels[level]["flow"].shape == (2, size, size, 2) and levels[level]["visible"].shape == (2, size, size)
    full = synthetic.view_pair("test", 1, 0, 2, image_size=64)
    np.testing.assert_array_equal(levels["h"]["flow"][0], full["flow"])
    np.testing.assert_array_equal(levels["h"]["visible"][0], full["visible"])
    # The rays of a 16 px map are those of a 64 px map through the coarse pixels' centres, so the
    # flow is the full-resolution flow at those points divided by 4 (half-pixel centres).
    coarse = synthetic.view_pair("test", 1, 0, 2, image_size=16)
    np.testing.assert_allclose(levels["h4"]["flow"][0], coarse["flow"], atol=1e-5)
    both = levels["h4"]["visible"][0]
    magnitude = np.linalg.norm(levels["h4"]["flow"][0][both], axis=-1).mean() * 4
    assert magnitude == pytest.approx(np.linalg.norm(full["flow"][full["visible"]], axis=-1).mean(), rel=0.25)
    tuples = np.array([[0, 20, 2], [54 + 5, 54 + 6, 54 + 7]])
    groups, order = np.repeat([0, 1], 54), np.tile(np.arange(54), 2)
    stacked = synthetic.tuple_ground_truth(groups, order, tuples, 64, split="test")
    assert stacked["h4"]["flow"].shape == (2, 2, 16, 16, 2) and stacked["h8"]["visible"].shape == (2, 2, 8, 8)
    assert stacked["h4"]["shown"].shape == (2, 16, 16)
    direct = synthetic.ground_truth_levels("test", 1, [5, 6], 7, levels=("h4",))
    assert sorted(direct) == ["h4"]
    np.testing.assert_array_equal(stacked["h4"]["flow"][1], direct["h4"]["flow"])
    assert np.all(stacked["h4"]["visible"] <= stacked["h4"]["shown"][:, None])


def test_misaligned_labels_stay_nominal_while_ground_truth_follows_the_jitter(tmp_path):
    aligned = synthetic.generate(2, seed=3, split="train", image_size=32)
    data = synthetic.generate(2, seed=3, split="train", image_size=32, misaligned=True)
    np.testing.assert_array_equal(data["poses"], aligned["poses"])  # labels: the nominal bins
    np.testing.assert_array_equal(data["groups"], aligned["groups"])
    np.testing.assert_array_equal(data["order"], aligned["order"])
    assert np.abs(data["images"].astype(int) - aligned["images"]).mean() > 3.0
    cameras = data["cameras"]
    assert cameras.shape == (108, 6)
    bins = np.tile(synthetic.view_bins(), (2, 1))
    nominal_azimuth, nominal_elevation = bins[:, 0] * 20.0, np.array([0.0, 10.0, 20.0])[bins[:, 1]]
    offsets = np.stack([cameras[:, 0] - nominal_azimuth, cameras[:, 1] - nominal_elevation,
                        cameras[:, 2] / 3.5 - 1, cameras[:, 3], cameras[:, 4], cameras[:, 5]], axis=-1)
    limits = np.array([8.0, 8.0, 0.15, 5.0, 0.06, 0.06])
    assert np.all(np.abs(offsets) <= limits) and np.all(np.abs(offsets).max(axis=0) > 0.6 * limits)
    # Deterministic by seed, and the cache keeps the variant apart.
    again = synthetic.generate(2, seed=3, split="train", image_size=32, misaligned=True, workers=1)
    np.testing.assert_array_equal(again["images"], data["images"])
    np.testing.assert_array_equal(again["cameras"], data["cameras"])
    other = synthetic.generate(1, seed=4, split="train", image_size=32, misaligned=True)
    assert np.any(other["cameras"] != data["cameras"][:54])
    assert synthetic.cache_path("train", 2, 3, 32, 2, str(tmp_path), misaligned=True) != synthetic.cache_path(
        "train", 2, 3, 32, 2, str(tmp_path))
    loaded = synthetic.load("train", cache_dir=str(tmp_path), seed=3, num_objects=2, image_size=32, misaligned=True)
    np.testing.assert_array_equal(loaded["images"], data["images"])
    np.testing.assert_array_equal(synthetic.load("train", cache_dir=str(tmp_path), seed=3, num_objects=2,
                                                 image_size=32, misaligned=True)["cameras"], cameras)
    table = synthetic.load_table("train", cache_dir=str(tmp_path), seed=3, num_objects=2, image_size=32,
                                 misaligned=True)
    np.testing.assert_array_equal(table.pose(25), [7, 1])
    # The pair's views are the misaligned dataset's images; its truth follows the true cameras:
    # the nominal cameras' flow explains the jittered images much worse than the true ones.
    pair = synthetic.view_pair("train", 1, 3, 5, image_size=32, misaligned=True, seed=3)
    np.testing.assert_array_equal(pair["source"], data["images"][54 + 3])
    np.testing.assert_array_equal(pair["target"], data["images"][54 + 5])
    nominal = synthetic.view_pair("train", 1, 3, 5, image_size=32, misaligned=False, seed=3)
    true_error, _ = _warp_errors(pair)
    nominal_error, _ = _warp_errors({**pair, "flow": nominal["flow"], "visible": pair["visible"] & nominal["visible"]})
    print(f"\nmisaligned pair: warp error with the true cameras' flow {true_error.mean():.4f}, with the bins' "
          f"{nominal_error.mean():.4f}")
    assert nominal_error.mean() > 1.5 * true_error.mean()
    assert np.abs(pair["flow"] - nominal["flow"])[pair["visible"] & nominal["visible"]].mean() > 0.3
