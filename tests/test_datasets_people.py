"""DeepFashion In-shop and Market-1501 builders: counts, junk, identities, keypoints, tuples,
errors, and the input pipeline over the prepared data (raw layouts generated into tmp_path,
plus the shipped dummy data through TFDS's own builder test case)."""
import logging
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tfrf.data import pipeline
from tfrf.data import tuples as tuples_lib
from tfrf.datasets import people_common
from tfrf.datasets.deepfashion import DeepFashionInShop
from tfrf.datasets.market1501 import Market1501
from tfrf.pose import keypoints as kp

HERE = os.path.dirname(os.path.abspath(__file__))
DATASETS = os.path.join(os.path.dirname(HERE), "datasets")


def _fashion(identity, index, view="1front"):
    return f"fashionWOMENDressesid{identity:08d}{index:02d}_{view}.jpg"


def _tiny(name="tiny", **overrides):
    values = dict(height=32, width=32, fit_mode="pad", encoding_format="png", test_tuple_ks=(1, 2, 3, 5))
    values.update(overrides)
    return people_common.PeopleConfig(name=name, **values)


def _prepare(builder_cls, manual_dir, data_dir, config):
    builder = builder_cls(config=config, data_dir=str(data_dir))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    return builder


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    """DeepFashion raw layout: train ids 1-3, test ids 7 (6 images), 8 (3), 9 (1 image);
    one test image without hips, one without shoulders, one on disk but not annotated."""
    root = tmp_path_factory.mktemp("deepfashion")
    names = {
        "train": [_fashion(i, j) for i in (1, 2, 3) for j in (1, 2, 3)],
        "test": [_fashion(7, j) for j in range(1, 7)] + [_fashion(8, j, "2side") for j in (1, 2, 3)] + [_fashion(9, 1)],
    }
    hide = [(_fashion(7, 6), "hips"), (_fashion(8, 3, "2side"), "shoulders")]
    raw = people_common.write_dummy_data(DeepFashionInShop, str(root / "manual"), names, seed=3, hide=hide)
    stray = kp.draw_skeleton(kp.MISSING * np.ones((18, 2)), 256, 176)
    from PIL import Image
    Image.fromarray(stray).save(root / "manual" / "fashion" / "test" / _fashion(9, 2))  # not in the CSV
    return root, raw


@pytest.fixture(scope="module")
def prepared_fashion(fashion):
    root, raw = fashion
    return _prepare(DeepFashionInShop, root / "manual", root / "data", _tiny()), raw


def test_fashion_counts_identities_and_targets(prepared_fashion):
    builder, _ = prepared_fashion
    assert builder.info.splits["train"].num_examples == 9
    assert builder.info.splits["test"].num_examples == 10
    train = pipeline.read_split_columns(builder, "train", ["identity", "target_ok"], skip_decoding=["image"])
    test = pipeline.read_split_columns(builder, "test", ["identity", "target_ok", "name"], skip_decoding=["image"])
    assert sorted(set(train["identity"])) == [1, 2, 3]
    assert sorted(set(test["identity"])) == [7, 8, 9]
    not_targets = {name.decode() for name, ok in zip(test["name"], test["target_ok"]) if not ok}
    assert not_targets == {_fashion(7, 6), _fashion(8, 3, "2side")}
    assert all(train["target_ok"])


def test_fashion_images_and_rescaled_keypoints(prepared_fashion):
    builder, raw = prepared_fashion
    table = pipeline.table_from_tfds(builder, "test")
    assert callable(table.images)  # array_record: random access, not all in memory
    names = pipeline.read_split_columns(builder, "test", ["name"], skip_decoding=["image"])["name"]
    for index, name in enumerate(names):
        expected = kp.rescale_keypoints(raw["test"][name.decode()], (256, 176), (32, 32), "pad")
        np.testing.assert_allclose(table.poses[index], expected, atol=1e-4)
    image = table.image(0)
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    assert (image[:, :4] == 255).all() and (image[:, -4:] == 255).all()  # white padding (40/256 of width)
    in_memory = pipeline.table_from_tfds(builder, "test", in_memory=True)
    for index in range(len(table)):
        np.testing.assert_array_equal(in_memory.image(index), table.image(index))


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_fashion_test_tuples_are_written_and_valid(prepared_fashion, k):
    builder, _ = prepared_fashion
    path = os.path.join(builder.data_dir, f"test_tuples_k{k}.npy")
    assert os.path.exists(path)
    tuples = tuples_lib.load_tuples(path)
    columns = pipeline.read_split_columns(builder, "test", ["identity", "target_ok"], skip_decoding=["image"])
    identities, targets_ok = np.asarray(columns["identity"]), np.asarray(columns["target_ok"])
    tuples_lib.check_tuples(tuples, identities, k)  # K+1 distinct images of one identity
    assert targets_ok[tuples[:, k]].all()
    # One tuple per usable target: identity 7 has 5 targets (6 images), identity 8 has 2 (3 images).
    expected = {1: 7, 2: 7, 3: 5, 5: 5}[k]
    assert len(tuples) == expected
    np.testing.assert_array_equal(builder.test_tuples(k), tuples)
    np.testing.assert_array_equal(
        tuples, tuples_lib.fixed_test_tuples(identities, k, 0, targets_ok=targets_ok)
    )


def test_fashion_pipeline_heatmap_peaks_at_stored_keypoints(prepared_fashion):
    builder, _ = prepared_fashion
    table = pipeline.table_from_tfds(builder, "test")
    tuples = builder.test_tuples(2)
    batch = next(pipeline.make_dataset(table, 2, batch_size=3, training=False, tuples=tuples).as_numpy_iterator())
    assert batch["source_poses"].shape == (3, 2, 32, 32, 18)
    target_keypoints = table.poses[tuples[0, 2]]
    for channel in np.flatnonzero(kp.present(target_keypoints)):
        peak = np.unravel_index(batch["target_pose"][0, ..., channel].argmax(), (32, 32))
        np.testing.assert_allclose(peak, np.clip(np.rint(target_keypoints[channel]), 0, 31), atol=1)
    expected_target = table.image(tuples[0, 2]).astype(np.float32) / 127.5 - 1.0
    np.testing.assert_allclose(batch["target_image"][0], expected_target, atol=1e-6)


def test_skips_are_counted_in_the_log(fashion, tmp_path, caplog):
    root, _ = fashion
    with caplog.at_level(logging.INFO, logger="tfrf.datasets"):
        _prepare(DeepFashionInShop, root / "manual", tmp_path, _tiny("log", test_tuple_ks=()))
    messages = "\n".join(record.getMessage() for record in caplog.records)
    assert "deep_fashion_in_shop/test: skipped 1 images without annotation" in messages
    assert "deep_fashion_in_shop/test: kept as sources only: 1 not a target: no hip, 1 not a target: no shoulder" \
        in messages


def test_corrupt_images_are_skipped_and_reported(fashion, tmp_path):
    import shutil

    root, _ = fashion
    manual = tmp_path / "manual"
    shutil.copytree(root / "manual", manual)
    train_dir = manual / DeepFashionInShop.RAW_SPLITS["train"].image_dir
    names = sorted(os.listdir(train_dir))
    (train_dir / names[0]).write_bytes((train_dir / names[0]).read_bytes()[:200])  # truncated JPEG
    (train_dir / names[1]).write_bytes(b"this is not an image")
    builder = _prepare(DeepFashionInShop, manual, tmp_path / "data", _tiny("corrupt", test_tuple_ks=()))
    report = builder.prepare_report()
    assert report["train"] == {"unreadable images": 2}
    assert "unreadable images" not in report["test"]
    stored = pipeline.read_split_columns(builder, "train", ["name"], skip_decoding=["image"])["name"]
    assert {name.decode() for name in stored}.isdisjoint({names[0], names[1]})
    assert builder.info.splits["train"].num_examples == len(names) - 2


@pytest.fixture(scope="module")
def prepared_market(tmp_path_factory):
    root = tmp_path_factory.mktemp("market")
    names = {
        "train": ["0002_c1s1_000451_03.jpg", "0002_c2s1_000301_01.jpg", "0005_c1s1_001351_00.jpg",
                  "0005_c3s1_001401_00.jpg", "0005_c5s1_001426_00.jpg"],
        "test": ["0001_c1s1_001051_00.jpg", "0001_c2s1_000301_00.jpg", "0001_c3s1_000551_00.jpg",
                 "0003_c1s6_015971_00.jpg", "0003_c4s6_015641_00.jpg", "-1_c1s1_000401_00.jpg",
                 "-1_c3s1_000401_00.jpg", "0000_c1s1_000151_01.jpg"],
    }
    raw = people_common.write_dummy_data(Market1501, str(root / "manual"), names, seed=4)
    config = _tiny(height=64, width=32, fit_mode="stretch")
    return _prepare(Market1501, root / "manual", root / "data", config), raw


def test_market_excludes_junk_and_distractors(prepared_market):
    builder, raw = prepared_market
    assert builder.info.splits["train"].num_examples == 5
    assert builder.info.splits["test"].num_examples == 5  # 3 junk/distractor images dropped
    test = pipeline.read_split_columns(builder, "test", ["identity", "name", "keypoints"], skip_decoding=["image"])
    assert sorted(set(test["identity"])) == [1, 3]
    assert not any(name.decode().startswith(("-1", "0000")) for name in test["name"])
    train = pipeline.read_split_columns(builder, "train", ["identity"], skip_decoding=["image"])
    assert not set(train["identity"]) & set(test["identity"])
    name, keypoints = test["name"][0].decode(), test["keypoints"][0]
    np.testing.assert_allclose(keypoints, kp.rescale_keypoints(raw["test"][name], (128, 64), (64, 32)), atol=1e-4)
    np.testing.assert_array_equal(builder.test_tuples(5), np.zeros((0, 6), np.int64))  # no identity has 6 images
    assert len(builder.test_tuples(2)) == 3


def test_market_identity_parsing():
    assert Market1501.identity_of("0002_c1s1_000451_03.jpg") == 2
    assert Market1501.identity_of("-1_c1s1_000401_00.jpg") is None
    assert Market1501.identity_of("0000_c1s1_000151_01.jpg") is None
    assert DeepFashionInShop.identity_of("fashionWOMENDressesid0000002601_1front.jpg") == 26
    with pytest.raises(ValueError, match="no identity"):
        DeepFashionInShop.identity_of("fashionWOMENDresses_1front.jpg")


def _market_manual(tmp_path, train, test=None):
    """A Market-1501 raw layout of these image names (no test split when `test` is None) in
    tmp_path/manual; returns that folder."""
    names = {"train": train} if test is None else {"train": train, "test": test}
    people_common.write_dummy_data(Market1501, str(tmp_path / "manual"), names)
    return tmp_path / "manual"


def _expect_market_refused(tmp_path, error, match, manual=None):
    """Preparing Market-1501 (64x32, no test tuples) from `manual` (default tmp_path/manual) raises
    `error` with a message matching `match`."""
    with pytest.raises(error, match=match):
        _prepare(Market1501, manual or tmp_path / "manual", tmp_path / "data",
                 _tiny(height=64, width=32, test_tuple_ks=()))


def test_empty_or_missing_manual_dir_shows_the_instructions(tmp_path):
    (tmp_path / "empty").mkdir()
    for manual in (tmp_path / "empty", tmp_path / "absent"):
        _expect_market_refused(tmp_path, AssertionError, "bounding_box_train", manual)


def test_missing_split_folder_is_named(tmp_path):
    _market_manual(tmp_path, ["0002_c1s1_000451_03.jpg"])
    _expect_market_refused(tmp_path, FileNotFoundError, r"bounding_box_test is missing")


def test_image_listed_but_missing_is_named(tmp_path):
    manual = _market_manual(tmp_path, ["0002_c1s1_000451_03.jpg", "0002_c2s1_000301_01.jpg"],
                            ["0001_c1s1_001051_00.jpg"])
    os.remove(manual / "bounding_box_train" / "0002_c2s1_000301_01.jpg")
    _expect_market_refused(tmp_path, FileNotFoundError,
                           r"0002_c2s1_000301_01\.jpg.*market-annotation-train\.csv is missing")


def test_malformed_annotation_row_is_named(tmp_path):
    manual = _market_manual(tmp_path, ["0002_c1s1_000451_03.jpg"], ["0001_c1s1_001051_00.jpg"])
    with open(manual / "market-annotation-test.csv", "a") as stream:
        stream.write("0001_c2s1_000301_00.jpg: [1, 2, 3]: [4]\n")
    _expect_market_refused(tmp_path, ValueError, r"market-annotation-test\.csv:3: keypoints_y must be a list of 18")


def test_shared_identities_across_splits_are_refused(tmp_path):
    _market_manual(tmp_path, ["0002_c1s1_000451_03.jpg"], ["0002_c2s1_000301_01.jpg"])
    _expect_market_refused(tmp_path, ValueError, r"share identities \[2\]")


def test_wrong_raw_image_size_is_named(tmp_path):
    manual = _market_manual(tmp_path, ["0002_c1s1_000451_03.jpg"], ["0001_c1s1_001051_00.jpg"])
    from PIL import Image
    Image.new("RGB", (30, 20)).save(manual / "bounding_box_test" / "0001_c1s1_001051_00.jpg")
    _expect_market_refused(tmp_path, ValueError, r"0001_c1s1_001051_00\.jpg is 30x20 \(w x h\)")


@pytest.mark.parametrize("builder_cls, config, counts", [
    (DeepFashionInShop, None, {"train": 5, "test": 5}),
    (DeepFashionInShop, "256x176", {"train": 5, "test": 5}),
    (Market1501, None, {"train": 5, "test": 5}),
])
def test_shipped_dummy_data_builds_with_the_real_configs(tmp_path, builder_cls, config, counts):
    """The dummy data shipped in each dataset folder, at the registered sizes.

    (TFDS's `DatasetBuilderTestCase` needs `dill`, which is not a dependency of tfrf.)
    """
    folder = {DeepFashionInShop: "deepfashion", Market1501: "market1501"}[builder_cls]
    builder = builder_cls(config=config, data_dir=str(tmp_path))
    manual_dir = os.path.join(DATASETS, folder, "dummy_data")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    assert {split: info.num_examples for split, info in builder.info.splits.items()} == counts
    config = builder.builder_config
    table = pipeline.table_from_tfds(builder, "train")
    assert table.image_shape == (config.height, config.width, 3)
    assert table.targets_ok is not None and table.pose_encoder == "keypoints18"
    for k in config.test_tuple_ks:
        tuples_lib.check_tuples(builder.test_tuples(k), pipeline.table_from_tfds(builder, "test").groups, k)


def test_tfrecord_preparation_loads_in_memory(tmp_path):
    manual = tmp_path / "manual"
    people_common.write_dummy_data(
        Market1501, str(manual), {"train": ["0002_c1s1_000451_03.jpg", "0002_c2s1_000301_01.jpg"],
                                  "test": ["0001_c1s1_001051_00.jpg", "0001_c2s1_000301_00.jpg"]})
    config = _tiny(height=64, width=32, fit_mode="stretch", test_tuple_ks=(1,))
    builder = Market1501(config=config, data_dir=str(tmp_path / "data"), file_format="tfrecord")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    table = pipeline.table_from_tfds(builder, "test")
    assert isinstance(table.images, np.ndarray) and table.images.shape == (2, 64, 32, 3)
    np.testing.assert_array_equal(table.groups, [1, 1])
    assert len(builder.test_tuples(1)) == 2
    with pytest.raises(ValueError, match="needs array_record"):
        pipeline.table_from_tfds(builder, "test", in_memory=False)
