"""The misaligned chairs as run data: the ablation's option, data.json, and `tfrf evaluate`'s reading of it."""
import numpy as np
import pytest

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
    with pytest.raises(ValueError, match="--dataset market1501: the built-in chairs take --dataset misaligned"):
        load_data("synthetic", config, "market1501", cache, verbose=False)
