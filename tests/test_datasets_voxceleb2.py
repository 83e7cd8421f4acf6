"""Voxceleb2 builder over tiny generated mp4 clips with precomputed landmarks: counts, shapes,
crops and drawings, a corrupt mp4 and faceless frames skipped and counted, tuples by video."""
import logging
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

pytest.importorskip("imageio_ffmpeg")

from tfrf.data import pipeline  # noqa: E402
from tfrf.data import tuples as tuples_lib  # noqa: E402
from tfrf.datasets.voxceleb2 import Voxceleb2, VoxCelebConfig, sample_frame_indices  # noqa: E402
from tfrf.datasets.voxceleb2 import dummy_data_generation as dummy  # noqa: E402
from tfrf.pose import face  # noqa: E402

DEV, TEST = os.path.join("dev", "mp4"), os.path.join("test", "mp4")
SIZE = 32


def _write_raw(root):
    dummy.write_clip(root, DEV, "id00001", "vidAAAAAAA", "00001", 10, no_face_frames=[3], seed=1)
    dummy.write_clip(root, DEV, "id00001", "vidAAAAAAA", "00002", 6, seed=2)
    dummy.write_clip(root, DEV, "id00002", "vidBBBBBBB", "00001", 10, seed=3)
    dummy.write_corrupt_clip(root, DEV, "id00002", "vidBBBBBBB", "00002")
    dummy.write_clip(root, TEST, "id00003", "vidCCCCCCC", "00001", 10, seed=4)


def _config(**kwargs):
    return VoxCelebConfig(name="test", image_size=SIZE, test_tuple_ks=(1, 2), landmark_source="precomputed", **kwargs)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("voxceleb2")
    _write_raw(str(tmp / "raw"))
    builder = Voxceleb2(config=_config(), data_dir=str(tmp / "data"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(tmp / "raw")))
    return builder, str(tmp / "raw")


def _examples(builder, split):
    source = builder.as_data_source(split=split)
    return [source[i] for i in range(len(source))]


def test_eight_evenly_spaced_frames_per_clip():
    np.testing.assert_array_equal(sample_frame_indices(10, 8), [0, 1, 3, 4, 5, 6, 8, 9])
    np.testing.assert_array_equal(sample_frame_indices(6, 8), np.arange(6))
    assert sample_frame_indices(250, 8).tolist() == [0, 36, 71, 107, 142, 178, 213, 249]


def test_counts_with_a_corrupt_clip_and_a_faceless_frame_skipped(prepared):
    builder, _ = prepared
    # clip 1: 8 sampled frames less frame 3 (no face); clip 2: all 6 frames; id00002: 8; corrupt: 0
    assert builder.info.splits["train"].num_examples == 7 + 6 + 8
    assert builder.info.splits["test"].num_examples == 8
    assert builder.prepare_report() == {
        "train": {"unreadable videos": 1, "frames without a face": 1},
        "test": {},
    }
    frames = sorted((e["clip"].decode(), e["identity"].decode(), int(e["frame"])) for e in _examples(builder, "train"))
    assert [f for c, i, f in frames if (c, i) == ("00001", "id00001")] == [0, 1, 4, 5, 6, 8, 9]


def test_crops_drawings_and_landmarks(prepared):
    builder, raw = prepared
    for example in _examples(builder, "train"):
        assert example["image"].shape == (SIZE, SIZE, 3) and example["pose"].shape == (SIZE, SIZE, 3)
        assert example["landmarks"].shape == (68, 2)
        identity, video, clip = (example[k].decode() for k in ("identity", "video", "clip"))
        raw_landmarks = np.load(os.path.join(raw, DEV, identity, video, clip + ".npy"))[int(example["frame"])]
        _, expected = face.crop_face(np.zeros((64, 64, 3), np.uint8), raw_landmarks, SIZE, margin=0.25)
        np.testing.assert_allclose(example["landmarks"], expected, atol=1e-5)
        # the pose is exactly the drawing of the crop's landmarks (PNG is lossless)
        np.testing.assert_array_equal(example["pose"], face.draw_landmarks(expected, SIZE, SIZE))
        # the face box fills the middle of the crop, the background shows at the border
        image = example["image"].astype(int)
        low, high = np.floor(expected.min(0)).astype(int), np.ceil(expected.max(0)).astype(int)
        inside = image[low[1] + 2:high[1] - 1, low[0] + 2:high[0] - 1].reshape(-1, 3)
        is_skin = np.abs(inside - dummy.SKIN).max(-1) < 40
        assert is_skin.mean() > 0.5
        assert np.abs(image[1, SIZE // 2] - dummy.BACKGROUND).max() < 30


def test_groups_are_videos_and_test_tuples_feed_the_pipeline(prepared):
    builder, _ = prepared
    train = _examples(builder, "train")
    groups = {(e["identity"].decode(), e["video"].decode()): int(e["group"]) for e in train}
    assert groups == {("id00001", "vidAAAAAAA"): 0, ("id00002", "vidBBBBBBB"): 1}
    table = pipeline.table_from_tfds(builder, "train")
    assert table.pose_encoder == "landmarks68"
    # Landmark drawings are images: read on demand like the frames, never stacked in RAM.
    assert callable(table.images) and callable(table.poses)
    in_memory = pipeline.table_from_tfds(builder, "train", in_memory=True)
    np.testing.assert_array_equal(table.pose(3), in_memory.poses[3])
    tuples = builder.test_tuples(2, split="train")
    tuples_lib.check_tuples(tuples, table.groups, 2)
    assert len(tuples) == 21
    test_tuples = tuples_lib.load_tuples(builder.test_tuples_path(2))
    assert test_tuples.shape == (8, 3)
    batch = next(iter(pipeline.make_dataset(pipeline.table_from_tfds(builder, "test"), 2, batch_size=4,
                                            training=False, tuples=test_tuples)))
    assert batch["source_images"].shape == (4, 2, SIZE, SIZE, 3)
    poses = batch["target_pose"].numpy()
    assert poses.shape == (4, SIZE, SIZE, 3) and poses.min() >= 0.0 and poses.max() == 1.0


def test_a_landmark_file_that_does_not_match_its_clip_skips_the_clip(tmp_path, caplog):
    raw = str(tmp_path / "raw")
    dummy.write_clip(raw, DEV, "id00001", "vidA", "00001", 4, seed=1)
    dummy.write_clip(raw, DEV, "id00001", "vidA", "00002", 4, seed=2)
    np.save(os.path.join(raw, DEV, "id00001", "vidA", "00002.npy"), np.zeros((3, 68, 2)))
    dummy.write_clip(raw, TEST, "id00009", "vidC", "00001", 4, seed=3, landmarks=False)
    dummy.write_clip(raw, TEST, "id00009", "vidC", "00002", 4, seed=4)
    builder = Voxceleb2(config=_config(frames_per_video=2), data_dir=str(tmp_path / "data"))
    with caplog.at_level(logging.INFO, logger="tfrf.datasets"):
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=raw))
    assert builder.info.splits["train"].num_examples == 2
    assert builder.info.splits["test"].num_examples == 2
    assert builder.prepare_report() == {"train": {"landmark files not matching their video": 1},
                                        "test": {"videos without a landmark file": 1}}
    assert "00002.npy has shape (3, 68, 2), expected [4, 68, 2]" in caplog.text
    assert "voxceleb2/train: skipped 1 landmark files not matching their video" in caplog.text


def test_shared_identities_between_dev_and_test_are_an_error(tmp_path):
    raw = str(tmp_path / "raw")
    dummy.write_clip(raw, DEV, "id00001", "vidA", "00001", 3)
    dummy.write_clip(raw, TEST, "id00001", "vidB", "00001", 3)
    builder = Voxceleb2(config=_config(), data_dir=str(tmp_path / "data"))
    with pytest.raises(ValueError, match="share identities.*'id00001'"):
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=raw))


def test_a_split_without_any_usable_frame_is_a_clear_error(tmp_path):
    raw = str(tmp_path / "raw")
    dummy.write_clip(raw, DEV, "id00001", "vidA", "00001", 3)
    dummy.write_corrupt_clip(raw, TEST, "id00002", "vidB", "00001")
    builder = Voxceleb2(config=_config(), data_dir=str(tmp_path / "data"))
    with pytest.raises(Exception, match=r"voxceleb2/test: no usable frame in 1 clips.*1 unreadable videos"):
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=raw))


def test_clips_without_landmark_files_go_through_mediapipe_in_auto_mode(tmp_path):
    pytest.importorskip("mediapipe")
    raw = str(tmp_path / "raw")
    dummy.write_clip(raw, DEV, "id00001", "vidA", "00001", 4, seed=1)
    dummy.write_clip(raw, DEV, "id00001", "vidA", "00002", 4, seed=2, landmarks=False)  # a cartoon: no face found
    dummy.write_clip(raw, TEST, "id00002", "vidB", "00001", 4, seed=3)
    config = VoxCelebConfig(name="auto", image_size=SIZE, test_tuple_ks=(1,), landmark_source="auto")
    builder = Voxceleb2(config=config, data_dir=str(tmp_path / "data"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=raw))
    assert builder.info.splits["train"].num_examples == 4
    assert builder.prepare_report()["train"] == {"frames without a face": 4}
