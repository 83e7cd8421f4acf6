"""The built-in synthetic multi-view dataset: determinism, splits, shapes, geometry, cache."""
import os
import time

import numpy as np
import pytest

from tfrf.data import synthetic
from tfrf.data.synthetic_chairs import random_chair
from tfrf.data.synthetic_render import render_views, render_views_reference
from tfrf.pose import views

SMALL = dict(image_size=32, supersample=1)


def _views(data, num_objects):
    return data["images"].reshape(num_objects, 54, *data["images"].shape[1:])


def _foreground(image):
    return np.any(image != 255, axis=-1)


def test_shapes_dtypes_and_poses():
    start = time.perf_counter()
    data = synthetic.generate(2, seed=0)
    print(f"\nsynthetic: 2 objects x 54 views at 64 px in {time.perf_counter() - start:.2f} s")
    assert data["images"].shape == (108, 64, 64, 3) and data["images"].dtype == np.uint8
    assert data["poses"].shape == (108, 2) and data["poses"].dtype == np.int32
    assert data["groups"].dtype == np.int64 and data["order"].dtype == np.int64
    np.testing.assert_array_equal(data["groups"], np.repeat([0, 1], 54))
    np.testing.assert_array_equal(data["order"], np.tile(np.arange(54), 2))
    # Every object has each of the 18 x 3 views exactly once, elevation-major.
    poses = data["poses"][:54]
    assert len({tuple(p) for p in poses}) == 54
    np.testing.assert_array_equal(poses[:, 0], np.tile(np.arange(18), 3))
    np.testing.assert_array_equal(poses[:, 1], np.repeat(np.arange(3), 18))
    assert synthetic.VIEWS_PER_OBJECT == views.NUM_AZIMUTH_BINS * views.NUM_ELEVATION_BINS
    # The object is in frame: not touching the border, and covering a good part of it.
    foreground = _foreground(data["images"])
    assert not foreground[:, 0].any() and not foreground[:, -1].any()
    assert not foreground[:, :, 0].any() and not foreground[:, :, -1].any()
    assert 0.05 < foreground.mean() < 0.6


def test_deterministic_by_seed_and_independent_of_threads():
    first = synthetic.generate(3, seed=5, workers=1, **SMALL)
    second = synthetic.generate(3, seed=5, workers=3, **SMALL)
    for name in first:
        assert first[name].tobytes() == second[name].tobytes(), name
    other = synthetic.generate(3, seed=6, **SMALL)
    assert first["images"].tobytes() != other["images"].tobytes()
    # Object i depends only on (seed, split, i): a smaller set is a prefix of a larger one.
    smaller = synthetic.generate(2, seed=5, **SMALL)
    np.testing.assert_array_equal(smaller["images"], first["images"][:108])


def test_train_and_test_objects_are_disjoint():
    train = synthetic.generate(4, seed=0, split="train", **SMALL)
    test = synthetic.generate(4, seed=0, split="test", **SMALL)
    train_images = {image.tobytes() for image in train["images"]}
    assert not any(image.tobytes() in train_images for image in test["images"])
    # Per object, the front view differs from every front view of the other split.
    train_fronts = _views(train, 4)[:, 0].astype(int)
    test_fronts = _views(test, 4)[:, 0].astype(int)
    distances = np.abs(train_fronts[:, None] - test_fronts[None]).mean(axis=(2, 3, 4))
    assert distances.min() > 1.0
    with pytest.raises(ValueError, match="split"):
        synthetic.generate(1, split="validation")


def test_views_differ_and_rotate_consistently():
    object_views = _views(synthetic.generate(3, seed=1, **SMALL), 3)
    for chair in object_views:
        elevation0 = chair[:18]
        # Distinct views: azimuth 0 vs 180 and elevation 0 vs 20 are different images.
        assert np.abs(elevation0[0].astype(int) - elevation0[9]).mean() > 2.0
        assert np.abs(chair[0].astype(int) - chair[36]).mean() > 1.0
        masks = _foreground(elevation0)
        # The chairs are mirror-symmetric in x: azimuth a and 360 - a see mirrored silhouettes,
        # and the front and back views are symmetric themselves.
        for azimuth in range(18):
            mirrored = masks[(18 - azimuth) % 18][:, ::-1]
            assert np.mean(masks[azimuth] != mirrored) < 0.01, azimuth
        # Seen from near +x (80 degrees) the back, which stands at -z, is right of the seat;
        # seen from near -x (260 degrees) it is on the left.
        right_side, left_side = masks[4], masks[13]  # 80 and 260 degrees
        top_rows = slice(0, 10)
        columns = np.nonzero(right_side[top_rows])[1]
        assert columns.mean() > 16, "the chair back should appear right of centre at 80 degrees"
        columns = np.nonzero(left_side[top_rows])[1]
        assert columns.mean() < 16, "the chair back should appear left of centre at 260 degrees"


def test_fast_renderer_matches_reference():
    chair = random_chair(np.random.default_rng(3))
    azimuths = np.array([0.0, 40.0, 200.0])
    elevations = np.array([0.0, 10.0, 20.0])
    kwargs = dict(size=24, distance=3.5, fov_deg=35.0, supersample=2)
    fast = render_views(chair, azimuths, elevations, **kwargs)
    reference = render_views_reference(chair, azimuths, elevations, **kwargs)
    np.testing.assert_array_equal(fast, reference)


def test_load_caches_atomically_and_reuses(tmp_path, monkeypatch):
    cache = str(tmp_path / "cache")
    data = synthetic.load("test", cache_dir=cache, num_objects=2, **SMALL)
    files = os.listdir(cache)
    assert len(files) == 1 and files[0].endswith(".npz") and not files[0].startswith(".tmp")

    def fail(*args, **kwargs):
        raise AssertionError("the cached split should not be regenerated")

    monkeypatch.setattr(synthetic, "generate", fail)
    cached = synthetic.load("test", cache_dir=cache, num_objects=2, **SMALL)
    for name in data:
        np.testing.assert_array_equal(cached[name], data[name])
    # Other parameters are other files.
    assert synthetic.cache_path("test", 2, 0, 32, 1, cache) != synthetic.cache_path("test", 2, 1, 32, 1, cache)
    assert synthetic.cache_path("test", 2, 0, 32, 1, cache) != synthetic.cache_path("train", 2, 0, 32, 1, cache)


def test_unreadable_cache_is_regenerated(tmp_path):
    cache = str(tmp_path)
    path = synthetic.cache_path("train", 1, 0, 32, 1, cache)
    with open(path, "wb") as stream:
        stream.write(b"not a zip file")
    with pytest.warns(UserWarning, match="unreadable cache"):
        data = synthetic.load("train", cache_dir=cache, num_objects=1, **SMALL)
    assert data["images"].shape == (54, 32, 32, 3)
    with np.load(path) as stored:
        np.testing.assert_array_equal(stored["images"], data["images"])


def test_default_cache_dir_honours_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TFRF_CACHE_DIR", str(tmp_path))
    assert synthetic.default_cache_dir() == os.path.join(str(tmp_path), "synthetic")


def test_load_table_uses_the_view21_encoder(tmp_path):
    table = synthetic.load_table("train", cache_dir=str(tmp_path), num_objects=1, **SMALL)
    assert len(table) == 54 and table.pose_encoder == "view21" and table.pose_channels == 21
    index = 18 + 7  # elevation bin 1, azimuth bin 7
    np.testing.assert_array_equal(table.pose(index), [7, 1])
    pose_map = np.asarray(views.encode_view(table.pose(index), 4, 4))
    assert pose_map.shape == (4, 4, 21)
    np.testing.assert_array_equal(np.nonzero(pose_map[0, 0])[0], [7, 18 + 1])
