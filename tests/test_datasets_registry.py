"""`import tfrf.datasets` registers the five builders; prepared data describe themselves (TFDS
metadata), so a read-only `builder_from_directory` gives the same ViewTable; `tfds.load` and
`as_dataset()` stream array_record data."""
import os

import numpy as np
import tensorflow_datasets as tfds

import tfrf.datasets
from tfrf.data.pipeline import table_from_tfds
from tfrf.data.prepared import open_prepared, preset_of_dataset

DUMMY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "datasets", "market1501",
                     "dummy_data")


def test_every_builder_is_registered():
    assert set(tfrf.datasets.BUILDERS) == {"deep_fashion_in_shop", "market1501", "shapenet_chairs",
                                           "kitti_odometry", "voxceleb2"}
    for name, cls in tfrf.datasets.BUILDERS.items():
        assert tfds.builder_cls(name) is cls


def test_prepared_market_loads_through_tfds_and_from_its_folder(tmp_path):
    builder = tfrf.datasets.Market1501(data_dir=str(tmp_path))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=DUMMY))
    examples = list(tfds.as_numpy(tfds.load("market1501", data_dir=str(tmp_path), split="train")))
    assert len(examples) == builder.info.splits["train"].num_examples == 5
    assert examples[0]["image"].shape == (128, 64, 3) and examples[0]["keypoints"].shape == (18, 2)
    source = builder.as_data_source(split="train")  # the same examples, by random access
    assert sorted(example["name"] for example in examples) == sorted(source[i]["name"] for i in range(len(source)))
    # The view table is stored with the data: a read-only builder needs no tfrf class.
    folder = os.fspath(builder.data_dir)
    read_only = tfds.builder_from_directory(folder)
    assert read_only.info.metadata["view_table"]["pose_encoder"] == "keypoints18"
    from_folder, from_class = table_from_tfds(read_only, "train"), table_from_tfds(builder, "train")
    np.testing.assert_array_equal(from_folder.groups, from_class.groups)
    np.testing.assert_array_equal(from_folder.targets_ok, from_class.targets_ok)
    np.testing.assert_array_equal(from_folder.image(2), from_class.image(2))
    # What `tfrf train --data-dir` opens, in both spellings, and the preset it picks.
    assert open_prepared(folder).info.name == "market1501"
    assert os.fspath(open_prepared(str(tmp_path), "market1501").data_dir) == folder
    assert preset_of_dataset(folder) == preset_of_dataset(str(tmp_path), "market1501") == "market1501"
