"""KITTI builder over tiny generated data in both layouts: counts, shapes, 6-DOF poses, test
neighbours, sources within +-10 frames of the target in the same sequence, errors."""
import numpy as np
import pytest
import tensorflow_datasets as tfds

pytest.importorskip("h5py")

from tfrf.data import pipeline  # noqa: E402
from tfrf.data import tuples as tuples_lib  # noqa: E402
from tfrf.datasets.kitti import KittiConfig, KittiOdometry, read_pose_file  # noqa: E402
from tfrf.datasets.kitti import dummy_data_generation as dummy  # noqa: E402
from tfrf.pose import camera  # noqa: E402

FRAMES = {0: 40, 3: 25}
TEST_KEYS = ["00_000003", "00_000030", "03_000012"]


def _prepare(tmp_path, layout, manual_writer, size=8):
    manual = tmp_path / "raw"
    manual_writer(str(manual))
    config = KittiConfig(name=f"test_{layout}", layout=layout, image_size=size, test_tuple_ks=(2, 4),
                         train_sequences=(0,), test_sequences=(3,))
    builder = KittiOdometry(config=config, data_dir=str(tmp_path / "data"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    return builder


@pytest.fixture(scope="module")
def hdf5_builder(tmp_path_factory):
    return _prepare(tmp_path_factory.mktemp("kitti_hdf5"), "hdf5",
                    lambda root: dummy.write_dummy_hdf5(root, FRAMES, TEST_KEYS, image_size=16))


@pytest.fixture(scope="module")
def odometry_builder(tmp_path_factory):
    return _prepare(tmp_path_factory.mktemp("kitti_odometry"), "odometry",
                    lambda root: dummy.write_dummy_odometry(root, {0: 14, 3: 12}))


def _examples(builder, split):
    source = builder.as_data_source(split=split)
    return [source[i] for i in range(len(source))]


def test_hdf5_counts_and_test_neighbours(hdf5_builder):
    assert hdf5_builder.info.splits["train"].num_examples == 65 - 3
    test = _examples(hdf5_builder, "test")
    stored = {(int(e["sequence"]), int(e["frame"])): bool(e["target_ok"]) for e in test}
    # test frames 0/3, 0/30, 3/12 and every frame within +-10 of them, as sources only
    expected = {(0, f) for f in range(0, 14)} | {(0, f) for f in range(20, 40)} | {(3, f) for f in range(2, 23)}
    assert set(stored) == expected and len(test) == 14 + 20 + 21
    assert {frame for frame, ok in stored.items() if ok} == {(0, 3), (0, 30), (3, 12)}


def test_hdf5_images_and_poses(hdf5_builder):
    for example in _examples(hdf5_builder, "train")[:20]:
        sequence, frame = int(example["sequence"]), int(example["frame"])
        assert example["key"].decode() == f"{sequence:02d}_{frame:06d}"
        assert example["image"].shape == (8, 8, 3)
        np.testing.assert_array_equal(example["image"][3, 5], dummy.frame_color(sequence, frame))
        assert example["pose"].shape == (6,) and example["pose"].dtype == np.float32
        np.testing.assert_allclose(example["pose"], dummy.trajectory_pose6(sequence, frame), rtol=1e-6, atol=1e-6)


def test_test_tuples_stay_within_10_frames_of_the_target(hdf5_builder):
    table = pipeline.table_from_tfds(hdf5_builder, "test")
    assert table.pose_encoder == "camera6"
    for k in (2, 4):
        tuples = tuples_lib.load_tuples(hdf5_builder.test_tuples_path(k))
        assert tuples.shape == (3, k + 1)  # one per test frame
        tuples_lib.check_tuples(tuples, table.groups, k)
        assert table.targets_ok[tuples[:, -1]].all()
        offsets = np.abs(table.order[tuples[:, :-1]] - table.order[tuples[:, -1:]])
        assert offsets.max() <= 10 and offsets.min() >= 1


def test_training_pipeline_sources_come_from_the_same_sequence_within_10_frames(hdf5_builder):
    table = pipeline.table_from_tfds(hdf5_builder, "train")
    dataset = pipeline.make_dataset(table, 3, batch_size=16, training=True, seed=5,
                                    max_offset=KittiOdometry.MAX_OFFSET)
    seen_offsets = []
    for batch in dataset.take(4):
        # decode (sequence, frame) from the flat colour of each image in [-1, 1]
        sources = np.rint((batch["source_images"].numpy()[:, :, 0, 0] + 1.0) * 127.5)
        targets = np.rint((batch["target_image"].numpy()[:, 0, 0] + 1.0) * 127.5)
        np.testing.assert_array_equal(sources[..., 1], np.broadcast_to(targets[:, None, 1], sources[..., 1].shape))
        offsets = np.abs(sources[..., 0] - targets[:, None, 0])
        assert offsets.max() <= 10 and offsets.min() >= 1
        seen_offsets.append(offsets)
        poses = batch["source_poses"].numpy()
        assert poses.shape == (16, 3, 8, 8, 6)
        # the pose map is the frame's 6-DOF vector broadcast over the image
        frame, sequence = int(targets[0, 0]), int(targets[0, 1]) // 60
        np.testing.assert_allclose(batch["target_pose"].numpy()[0, 4, 4], dummy.trajectory_pose6(sequence, frame), atol=1e-5)
    assert np.concatenate(seen_offsets).max() > 5  # the window is used, not just next frames


def test_odometry_layout_converts_matrices_to_the_same_6dof_encoding(odometry_builder):
    train, test = _examples(odometry_builder, "train"), _examples(odometry_builder, "test")
    assert len(train) == 14 and len(test) == 12  # sequences 0 / 3 by the config
    assert all(bool(example["target_ok"]) for example in train + test)
    for example in train + test:
        sequence, frame = int(example["sequence"]), int(example["frame"])
        assert example["image"].shape == (8, 8, 3)  # the 40x12 frames squashed to 8x8
        np.testing.assert_array_equal(example["image"][0, 0], dummy.frame_color(sequence, frame))
        np.testing.assert_allclose(example["pose"], dummy.trajectory_pose6(sequence, frame), atol=1e-5)


def test_odometry_layout_uses_id_files_when_present(tmp_path):
    def write(root):
        dummy.write_dummy_odometry(root, {0: 25})
        from tfrf.datasets import view_common

        view_common.write_id_file(f"{root}/id_train.txt", [f"00_{f:06d}" for f in range(25) if f != 12])
        view_common.write_id_file(f"{root}/id_test.txt", ["00_000012"])

    builder = _prepare(tmp_path, "odometry", write)
    assert builder.info.splits["train"].num_examples == 24
    assert builder.info.splits["test"].num_examples == 21  # frame 12 and its neighbours 2..22


def test_read_pose_file_errors_name_the_line(tmp_path):
    path = tmp_path / "00.txt"
    path.write_text("1 0 0 0 0 1 0 0 0 0 1 0\n1 0 0 0 0 1 0 0 0 0 1\n")
    with pytest.raises(ValueError, match=r"00\.txt, line 2: expected 12 numbers"):
        read_pose_file(str(path))
    path.write_text("1 0 0 5 0 1 0 6 0 0 1 7\n")
    np.testing.assert_array_equal(camera.matrix_to_pose6(read_pose_file(str(path))[0]), [5, 6, 7, 0, 0, 0])


def test_a_key_missing_from_the_hdf5_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"'07_000001'.*id_train\.txt.*data_kitti\.hdf5"):
        _prepare(tmp_path, "hdf5", lambda root: dummy.write_dummy_hdf5(
            root, {0: 12}, ["00_000005"], extra_train_keys=["07_000001"]))


def test_frames_and_poses_must_match(tmp_path):
    with pytest.raises(ValueError, match=r"holds 6 frames but .*00\.txt has 5 poses"):
        _prepare(tmp_path, "odometry", lambda root: dummy.write_dummy_odometry(root, {0: 6}, poses_per_sequence={0: 5}))
