"""The misaligned chairs as run data: the ablation's option, data.json, and `tfrf evaluate`'s reading of it;
the variant of misaligned sources (jittered sources, targets at their nominal cameras)."""
import numpy as np
import pytest
import tensorflow as tf

from tfrf.benchmarks import ablation
from tfrf.config import ModelConfig
from tfrf.data import synthetic
from tfrf.evaluation import data as data_lib


def test_the_ablation_trains_and_scores_the_misaligned_variant_when_asked(tmp_path):
    cache = str(tmp_path / "cache")
    plain = ablation.settings_of(ablation.parse_arguments(["--quick", "--cache-dir", cache]))
    settings = ablation.settings_of(ablation.parse_arguments(["--quick", "--misaligned", "--cache-dir", cache]))
    assert not plain["misaligned"] and settings["misaligned"]
    assert ablation.ablation_config(settings, "full").model.name == "synthetic_misaligned"
    assert ablation.ablation_config(plain, "full").model.name != "synthetic_misaligned"
    assert ModelConfig.preset("synthetic_misaligned").replace(name="synthetic") == ModelConfig.preset("synthetic")
    data = ablation.training_tables(settings, verbose=0)
    assert data.dataset == "misaligned" and data.data_dir == "synthetic"
    expected = synthetic.load("train", cache_dir=cache, num_objects=2, image_size=32, misaligned=True)
    np.testing.assert_array_equal(data.train.images, expected["images"])
    np.testing.assert_array_equal(data.train.poses, expected["poses"])
    aligned = ablation.training_tables(plain, verbose=0)
    assert aligned.dataset is None and np.any(aligned.train.images != data.train.images)


def test_a_run_on_the_misaligned_variant_is_scored_on_it(tmp_path):
    cache = str(tmp_path / "cache")
    run = tmp_path / "run"
    run.mkdir()
    data_lib.write_run_data(str(run), "synthetic", "misaligned", seed=2, test_objects=1, image_size=32,
                            cache_dir=cache)
    data = data_lib.data_for_runs([str(run)], image_size=64, verbose=False)
    assert data.misaligned and data.description["variant"] == "misaligned" and data.has_ground_truth
    expected = synthetic.load("test", cache_dir=cache, seed=2, num_objects=1, image_size=32, misaligned=True)
    np.testing.assert_array_equal(data.table.images, expected["images"])
    tuples = np.array([[3, 4, 5]])
    truth = data.ground_truth(tuples, 32)
    direct = synthetic.ground_truth_levels("test", 0, [3, 4], 5, image_size=32, misaligned=True, seed=2)
    np.testing.assert_array_equal(truth["h4"]["flow"][0], direct["h4"]["flow"])
    aligned = data_lib.open_data("synthetic", seed=2, test_objects=1, image_size=32, cache_dir=cache, verbose=False)
    assert not aligned.misaligned and "variant" not in aligned.description
    assert np.any(aligned.ground_truth(tuples, 32)["h4"]["flow"] != truth["h4"]["flow"])
    with pytest.raises(ValueError, match="misaligned"):
        data_lib.open_data("synthetic", "jittered", verbose=False)


def test_tfrf_train_loads_the_misaligned_variant_with_dataset(tmp_path):
    from tfrf.training.config import TrainConfig
    from tfrf.training.run import load_data

    cache = str(tmp_path / "cache")
    config = TrainConfig.preset("synthetic", train_objects=1, test_objects=1,
                                model=ModelConfig.preset("synthetic", image_height=32, image_width=32))
    data = load_data("synthetic", config, "misaligned", cache, verbose=False)
    assert data.dataset == "misaligned"
    expected = synthetic.load("train", cache_dir=cache, num_objects=1, image_size=32, misaligned=True)
    np.testing.assert_array_equal(data.train.images, expected["images"])
    aligned = load_data("synthetic", config, None, cache, verbose=False)
    np.testing.assert_array_equal(aligned.train.poses, data.train.poses)  # labels stay nominal
    assert np.any(aligned.train.images != data.train.images)
    with pytest.raises(ValueError, match="--dataset market1501: the built-in chairs take --dataset aligned, "
                                         "misaligned or misaligned_sources"):
        load_data("synthetic", config, "market1501", cache, verbose=False)


def test_misaligned_sources_train_on_jittered_sources_and_nominal_targets(tmp_path):
    from tfrf.data.pipeline import make_dataset

    cache = str(tmp_path / "cache")
    settings = ablation.settings_of(ablation.parse_arguments(["--quick", "--misaligned-sources", "--cache-dir", cache]))
    assert settings["misaligned"] and settings["nominal_targets"]
    assert ablation.dataset_of(settings) == "misaligned_sources"
    assert ablation.ablation_config(settings, "full").model.name == "synthetic_misaligned"
    data = ablation.training_tables(settings, verbose=0)
    assert data.dataset == "misaligned_sources"
    jittered = synthetic.load("train", cache_dir=cache, num_objects=2, image_size=32, misaligned=True)
    nominal = synthetic.load("train", cache_dir=cache, num_objects=2, image_size=32)
    np.testing.assert_array_equal(data.train.images, jittered["images"])
    np.testing.assert_array_equal(data.train.target_images, nominal["images"])
    np.testing.assert_array_equal(data.train.poses, nominal["poses"])
    # A tuple's sources come from the jittered renders, its target from the nominal one.
    tuples = np.array([[3, 4, 5], [60, 61, 70]])
    batch = next(iter(make_dataset(data.train, 2, batch_size=2, training=False, tuples=tuples)))
    as_float = lambda images: images.astype(np.float32) / 127.5 - 1.0  # noqa: E731
    np.testing.assert_allclose(batch["source_images"].numpy(), as_float(jittered["images"][tuples[:, :2]]), atol=1e-6)
    np.testing.assert_allclose(batch["target_image"].numpy(), as_float(nominal["images"][tuples[:, 2]]), atol=1e-6)
    with pytest.raises(ValueError, match="not both"):
        ablation.settings_of(ablation.parse_arguments(["--misaligned", "--misaligned-sources"]))
    with pytest.raises(ValueError, match="nominal_targets needs misaligned=True"):
        synthetic.load_table("train", cache_dir=cache, num_objects=2, image_size=32, nominal_targets=True)


def test_misaligned_sources_are_scored_against_the_nominal_targets_ground_truth(tmp_path):
    from tfrf.ops.warp import warp

    cache = str(tmp_path / "cache")
    run = tmp_path / "run"
    run.mkdir()
    data_lib.write_run_data(str(run), "synthetic", "misaligned_sources", seed=2, test_objects=1, image_size=64,
                            cache_dir=cache)
    data = data_lib.data_for_runs([str(run)], image_size=64, verbose=False)
    assert data.misaligned and data.nominal_targets and data.description["variant"] == "misaligned_sources"
    np.testing.assert_array_equal(data.table.target_images, synthetic.load(
        "test", cache_dir=cache, seed=2, num_objects=1, image_size=64)["images"])
    tuples = np.array([[3, 4, 5]])
    truth = data.ground_truth(tuples, 64)
    direct = synthetic.ground_truth_levels("test", 0, [3, 4], 5, image_size=64, misaligned=True, seed=2,
                                           nominal_target=True)
    np.testing.assert_array_equal(truth["h4"]["flow"][0], direct["h4"]["flow"])
    jittered = synthetic.ground_truth_levels("test", 0, [3, 4], 5, image_size=64, misaligned=True, seed=2)
    assert np.any(jittered["h4"]["flow"] != direct["h4"]["flow"])
    # The nominal-target truth warps jittered sources onto the nominal targets (as well as the
    # jittered truth does onto jittered targets: test_synthetic_truth), far better than the truth
    # to the jittered target does.
    errors = {"nominal": [], "jittered": []}
    for source_view, target_view in ((0, 1), (3, 4), (20, 21), (30, 31)):
        source = data.table.image(source_view).astype(np.float32)[None] / 255.0
        target = data.table.target_image(target_view).astype(np.float32) / 255.0
        to_nominal, to_jittered = (synthetic.ground_truth_levels("test", 0, [source_view], target_view, 64, True, 2,
                                                                 ("h",), nominal_target=nominal)["h"]
                                   for nominal in (True, False))
        for name, flow in (("nominal", to_nominal["flow"]), ("jittered", to_jittered["flow"])):
            warped = warp(tf.constant(source), tf.constant(flow), backend="gather").numpy()[0]
            errors[name].append(np.abs(warped - target).mean(-1)[to_nominal["visible"][0]])
    errors = {name: float(np.concatenate(values).mean()) for name, values in errors.items()}
    assert errors["nominal"] < 0.07 and errors["nominal"] < 0.6 * errors["jittered"], errors


def test_a_view_tables_target_images_must_match_its_images():
    from tfrf.data.pipeline import ViewTable

    images = np.zeros((3, 8, 8, 3), np.uint8)
    poses = np.zeros((3, 2), np.int32)
    table = ViewTable(images, poses, [0, 0, 0], pose_encoder="view21", target_images=images + 1)
    assert table.target_image(1)[0, 0, 0] == 1 and table.image(1)[0, 0, 0] == 0
    assert ViewTable(images, poses, [0, 0, 0], pose_encoder="view21").target_image(2) is not None
    with pytest.raises(ValueError, match=r"target_images must have N = 3 rows"):
        ViewTable(images, poses, [0, 0, 0], pose_encoder="view21", target_images=images[:2])
    with pytest.raises(ValueError, match=r"target_images must be uint8 \[N, 8, 8, 3\] like images"):
        ViewTable(images, poses, [0, 0, 0], pose_encoder="view21", target_images=np.zeros((3, 4, 4, 3), np.uint8))
