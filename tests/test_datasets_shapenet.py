"""ShapeNet chairs builder over tiny generated benchmark files: counts, shapes, view bins,
K = 4 test tuples through the input pipeline, missing keys."""
import numpy as np
import pytest
import tensorflow_datasets as tfds

pytest.importorskip("h5py")

from tfrf.data import pipeline  # noqa: E402
from tfrf.data import tuples as tuples_lib  # noqa: E402
from tfrf.datasets import view_common  # noqa: E402
from tfrf.datasets.shapenet_chairs import ShapenetChairs, shapenet_view_bins  # noqa: E402
from tfrf.datasets.shapenet_chairs import dummy_data_generation  # noqa: E402

SPLIT_MODELS = {"train": ["aaa1", "bbb2", "ccc3"], "test": ["ddd4", "eee5"]}


def _config(size=8):
    return view_common.ViewConfig(name=f"test{size}", image_size=size, test_tuple_ks=(4,))


def _prepare(tmp_path, size=8, raw_size=16, **kwargs):
    manual = tmp_path / "raw"
    ids = dummy_data_generation.write_dummy_data(str(manual), SPLIT_MODELS, image_size=raw_size, **kwargs)
    builder = ShapenetChairs(config=_config(size), data_dir=str(tmp_path / "data"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    return builder, ids


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return _prepare(tmp_path_factory.mktemp("shapenet"))


def test_view_bins_from_the_hdf5_pose():
    assert shapenet_view_bins([0, 0]) == (0, 0)
    assert shapenet_view_bins([34, 20]) == (17, 2)
    assert shapenet_view_bins(np.array([12.0, 10.0])) == (6, 1)
    with pytest.raises(ValueError, match="'m_3_0'.*even"):
        shapenet_view_bins([3, 0], "m_3_0")
    with pytest.raises(ValueError, match="even and in 0..34"):
        shapenet_view_bins([36, 0])
    with pytest.raises(ValueError, match="elevation 30"):
        shapenet_view_bins([2, 30])


def test_counts_shapes_and_views(prepared):
    builder, ids = prepared
    assert builder.info.splits["train"].num_examples == 3 * 54
    assert builder.info.splits["test"].num_examples == 2 * 54
    source = builder.as_data_source(split="train")
    examples = [source[i] for i in range(len(source))]
    seen = set()
    for example in examples:
        assert example["image"].shape == (8, 8, 3) and example["image"].dtype == np.uint8
        azimuth_bin, elevation_bin = example["view"]
        model = example["model"].decode()
        number = SPLIT_MODELS["train"].index(model)
        assert example["model_index"] == number  # sorted model ids: aaa1, bbb2, ccc3
        assert example["model_elevation_index"] == 3 * number + elevation_bin
        assert example["key"].decode() == f"{model}_{2 * azimuth_bin}_{10 * elevation_bin}"
        np.testing.assert_array_equal(example["image"][0, 0], dummy_data_generation.view_color(number, azimuth_bin, elevation_bin))
        seen.add((model, int(azimuth_bin), int(elevation_bin)))
    assert len(seen) == 3 * 18 * 3


def test_view_maps_have_exactly_two_hot_channels(prepared):
    builder, _ = prepared
    table = pipeline.table_from_tfds(builder, "test")
    assert table.pose_encoder == "view21" and table.poses.shape == (108, 2)
    dataset = pipeline.make_dataset(table, 4, batch_size=6, training=False, tuples=builder.test_tuples(4))
    batch = next(iter(dataset))
    maps = np.concatenate([batch["source_poses"].numpy().reshape(-1, 8, 8, 21),
                           batch["target_pose"].numpy()], axis=0)
    assert maps.shape[-1] == 21
    np.testing.assert_array_equal(maps.sum(-1), 2.0)
    np.testing.assert_array_equal(maps[..., :18].sum(-1), 1.0)  # one azimuth of 18
    np.testing.assert_array_equal(maps[..., 18:].sum(-1), 1.0)  # one elevation of 3
    assert set(np.unique(maps)) == {0.0, 1.0}


def test_fixed_k4_test_tuples_are_written_and_feed_the_pipeline(prepared):
    builder, _ = prepared
    path = builder.test_tuples_path(4)
    tuples = tuples_lib.load_tuples(path)
    table = pipeline.table_from_tfds(builder, "test")
    assert tuples.shape == (108, 5)  # one tuple per test view, K = 4 sources + target
    tuples_lib.check_tuples(tuples, table.groups, 4)
    np.testing.assert_array_equal(builder.test_tuples(4), tuples)
    np.testing.assert_array_equal(tuples_lib.fixed_test_tuples(table.groups, 4, 0), tuples)
    batch = next(iter(pipeline.make_dataset(table, 4, batch_size=3, training=False, tuples=tuples)))
    assert batch["source_images"].shape == (3, 4, 8, 8, 3)
    assert batch["source_poses"].shape == (3, 4, 8, 8, 21)
    assert batch["target_image"].shape == (3, 8, 8, 3)
    # the sources of the first tuple show the same model as its target
    models = table.groups[tuples[:3]]
    assert (models == models[:, -1:]).all()


def test_a_key_missing_from_the_hdf5_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"'zzz9_0_0'.*id_chair_test\.txt.*data_chair\.hdf5"):
        _prepare(tmp_path, extra_test_keys=["zzz9_0_0"])
