"""The tf.data pipeline: example dict shapes and values, seeded epochs, fixed test tuples,
in-memory and random-access tables, resizing, and loading a prepared TFDS split."""
import numpy as np
import pytest
import tensorflow as tf

from tfrf.data import pipeline
from tfrf.data import tuples as tuples_lib

HEIGHT, WIDTH = 8, 12


def _view_table(num_groups=4, per_group=5, loader=False):
    """Image i is filled with the value i (so tuples can be read back from pixels)."""
    count = num_groups * per_group
    images = np.broadcast_to(np.arange(count, dtype=np.uint8)[:, None, None, None], (count, HEIGHT, WIDTH, 3)).copy()
    poses = np.stack([np.arange(count) % 18, np.arange(count) % 3], axis=1).astype(np.int64)
    groups = np.repeat(np.arange(num_groups), per_group)
    return pipeline.ViewTable(
        images=(lambda i: images[i]) if loader else images,
        poses=poses,
        groups=groups,
        pose_encoder="view21",
    )


def _indices_of(batch):
    """Image indices of a batch's [B, K+1] tuples, read back from the constant pixels."""
    pixels = np.concatenate([batch["source_images"][:, :, 0, 0, 0], batch["target_image"][:, None, 0, 0, 0]], axis=1)
    return np.rint((pixels + 1.0) * 127.5).astype(np.int64)


@pytest.mark.parametrize("loader", [False, True])
def test_eval_dataset_yields_fixed_tuples_with_encoded_poses(loader):
    table = _view_table(loader=loader)
    dataset = pipeline.make_dataset(table, 2, batch_size=4, training=False, seed=3)
    batches = list(dataset.as_numpy_iterator())
    first = batches[0]
    assert first["source_images"].shape == (4, 2, HEIGHT, WIDTH, 3)
    assert first["source_poses"].shape == (4, 2, HEIGHT, WIDTH, 21)
    assert first["target_pose"].shape == (4, HEIGHT, WIDTH, 21)
    assert first["target_image"].shape == (4, HEIGHT, WIDTH, 3)
    assert all(value.dtype == np.float32 for value in first.values())
    read_back = np.concatenate([_indices_of(batch) for batch in batches])
    np.testing.assert_array_equal(read_back, tuples_lib.fixed_test_tuples(table.groups, 2, 3))
    # Pose maps: the view encoder's one-hots of each image's (azimuth, elevation).
    target = read_back[0, 2]
    expected = np.zeros(21, np.float32)
    expected[table.poses[target, 0]] = 1.0
    expected[18 + table.poses[target, 1]] = 1.0
    np.testing.assert_array_equal(first["target_pose"][0, 3, 5], expected)
    assert first["source_images"].min() >= -1.0 and first["source_images"].max() <= 1.0


def test_given_tuples_are_used_and_bad_ones_rejected():
    table = _view_table()
    tuples = np.array([[1, 2, 0], [7, 5, 6], [19, 15, 16]])
    batches = list(pipeline.make_dataset(table, 2, batch_size=2, training=False, tuples=tuples))
    assert [len(batch["target_image"]) for batch in batches] == [2, 1]
    np.testing.assert_array_equal(np.concatenate([_indices_of(b) for b in batches]), tuples)
    with pytest.raises(ValueError, match="mixes groups"):
        pipeline.make_dataset(table, 2, batch_size=2, training=False, tuples=[[1, 2, 5]])


def test_training_draws_fresh_tuples_each_epoch_reproducibly():
    table = _view_table()
    per_epoch = len(table)  # one tuple per target

    def first_epochs(seed):
        dataset = pipeline.make_dataset(table, 3, batch_size=per_epoch, training=True, seed=seed)
        return [_indices_of(batch) for batch in dataset.take(3).as_numpy_iterator()]

    epochs = first_epochs(seed=5)
    for tuples in epochs:
        tuples_lib.check_tuples(tuples, table.groups, 3)
        assert sorted(tuples[:, 3].tolist()) == list(range(per_epoch))  # every target once
    assert not np.array_equal(epochs[0], epochs[1])  # fresh draws each epoch
    assert not np.array_equal(np.sort(epochs[0][:, 3]), epochs[0][:, 3])  # shuffled
    for mine, again in zip(epochs, first_epochs(seed=5)):
        np.testing.assert_array_equal(mine, again)
    # Epoch e is drawn with seed + e: seed 6 starts where seed 5's second epoch was.
    np.testing.assert_array_equal(first_epochs(seed=6)[0], epochs[1])


def test_image_size_resizes_images_and_poses():
    table = _view_table()
    dataset = pipeline.make_dataset(table, 1, batch_size=2, training=False, image_size=(16, 24))
    batch = next(dataset.as_numpy_iterator())
    assert batch["source_images"].shape == (2, 1, 16, 24, 3)
    assert batch["target_pose"].shape == (2, 16, 24, 21)
    np.testing.assert_allclose(batch["target_pose"].sum(-1), 2.0, atol=1e-5)


def test_targets_ok_and_empty_draws():
    table = _view_table(num_groups=2, per_group=3)
    table.targets_ok = np.array([True, False, False, False, False, True])
    batch = next(pipeline.make_dataset(table, 2, batch_size=8, training=False).as_numpy_iterator())
    assert sorted(_indices_of(batch)[:, 2].tolist()) == [0, 5]
    with pytest.raises(ValueError, match="fewer than 4"):
        pipeline.make_dataset(table, 3, batch_size=1, training=True)


def test_view_table_validates_shapes():
    with pytest.raises(ValueError, match="N = 3"):
        pipeline.ViewTable(images=np.zeros((2, 4, 4, 3), np.uint8), poses=np.zeros((3, 2)), groups=[0, 0, 1])
    with pytest.raises(ValueError, match="uint8"):
        pipeline.ViewTable(images=np.zeros((3, 4, 4, 3), np.float32), poses=np.zeros((3, 2)), groups=[0, 0, 1])
    with pytest.raises(ValueError, match="unknown pose encoder"):
        pipeline.ViewTable(images=np.zeros((3, 4, 4, 3), np.uint8), poses=np.zeros((3, 2)), groups=[0, 0, 1],
                           pose_encoder="nope")


def test_max_offset_keeps_sources_near_the_target_frame():
    table = _view_table(num_groups=2, per_group=10)
    table.order = np.tile(np.arange(10), 2) * 3  # frame numbers 0, 3, ..., 27
    batch = next(pipeline.make_dataset(table, 2, batch_size=64, training=False, max_offset=3).as_numpy_iterator())
    tuples = _indices_of(batch)
    assert len(tuples) == 16  # the first and last frame of each sequence have one neighbour only
    assert (np.abs(table.order[tuples[:, :2]] - table.order[tuples[:, 2:]]) <= 3).all()
    with pytest.raises(ValueError, match="needs ViewTable.order"):
        pipeline.make_dataset(_view_table(), 1, batch_size=1, training=False, max_offset=2)


def _keypoint_table(count=6, size=32):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (count, size, size, 3)).astype(np.uint8)
    keypoints = rng.uniform(8, size - 8, (count, 18, 2)).astype(np.float32)
    return pipeline.ViewTable(images=images, poses=keypoints, groups=np.repeat([0, 1], count // 2),
                              pose_encoder="keypoints18")


def test_augmentation_moves_heatmaps_with_the_image_and_resumes_alike():
    from tfrf.data.augment import AugmentConfig

    table = _keypoint_table()
    plain = pipeline.make_dataset(table, 1, batch_size=2, training=True, seed=5)
    identity = pipeline.make_dataset(table, 1, batch_size=2, training=True, seed=5, augment=AugmentConfig.identity())
    for a, b in zip(plain.take(2).as_numpy_iterator(), identity.take(2).as_numpy_iterator()):
        for key in a:
            np.testing.assert_allclose(a[key], b[key], atol=1e-5)
    strong = AugmentConfig(rotation_degrees=0.0, shift_pixels=6.0, scale_range=(1.0, 1.0), target_shift_factor=1.0)
    augmented = list(pipeline.make_dataset(table, 1, batch_size=2, training=True, seed=5, augment=strong)
                     .take(3).as_numpy_iterator())
    # Tuple p of the stream is augmented with the seed (5, p), before its heatmaps are drawn.
    from tfrf.data.augment import augment_example
    from tfrf.pose import keypoints as kp

    rows = list(pipeline._tuple_indices(table, 1, training=True, seed=5, tuples=None, max_offset=None,
                                        start_epoch=0).take(6).as_numpy_iterator())
    for position, row in enumerate(rows):
        images, keypoints = augment_example(table.images[row].astype(np.float32) / 127.5 - 1.0, table.poses[row],
                                            tf.constant([5, position], tf.int64), strong)
        batch, index = augmented[position // 2], position % 2
        np.testing.assert_allclose(batch["target_image"][index], images[1], atol=1e-6)
        np.testing.assert_allclose(batch["target_pose"][index], kp.keypoints_to_heatmaps(keypoints[1], 32, 32),
                                   atol=1e-5)
        assert np.abs(batch["target_image"][index] - table.images[row[1]] / 127.5 + 1.0).max() > 0.1  # it moved
    # Resuming at step 2 (skip = 4 tuples) augments exactly as the uninterrupted stream did.
    resumed = list(pipeline.make_dataset(table, 1, batch_size=2, training=True, seed=5, augment=strong, skip=4)
                   .take(1).as_numpy_iterator())
    for key in resumed[0]:
        np.testing.assert_array_equal(resumed[0][key], augmented[2][key])
    with pytest.raises(ValueError, match="augment transforms keypoints"):
        pipeline.make_dataset(_view_table(), 1, batch_size=2, training=True, augment=strong)
