"""Tuple sampling: K+1 distinct images of one group, target eligibility, order windows, files."""
import numpy as np
import pytest

from tfrf.data import tuples as tuples_lib


def _groups():
    # group 0: 6 images, group 1: 4 images, group 2: 2 images, group 3: 1 image (interleaved).
    return np.array([0, 1, 0, 2, 0, 1, 0, 3, 1, 0, 2, 1, 0], dtype=np.int64)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_tuples_are_distinct_images_of_one_group(k):
    groups = _groups()
    tuples = tuples_lib.draw_tuples(groups, k, np.random.default_rng(0))
    assert tuples.dtype == np.int64 and tuples.shape[1] == k + 1
    for row in tuples:
        assert len(set(row.tolist())) == k + 1
        assert len(set(groups[row].tolist())) == 1
    sizes = np.bincount(groups)
    expected_targets = [i for i, g in enumerate(groups) if sizes[g] >= k + 1]
    np.testing.assert_array_equal(tuples[:, k], expected_targets)  # one per eligible target
    tuples_lib.check_tuples(tuples, groups, k)


def test_k5_uses_only_the_big_group_and_small_groups_are_skipped():
    groups = _groups()
    tuples = tuples_lib.draw_tuples(groups, 5, 0)
    assert set(groups[tuples.ravel()].tolist()) == {0}
    assert len(tuples) == 6
    assert tuples_lib.draw_tuples(groups, 6, 0).shape == (0, 7)


def test_targets_ok_restricts_targets_but_not_sources():
    groups = np.zeros(5, dtype=np.int64)
    targets_ok = np.array([True, False, False, False, False])
    tuples = tuples_lib.draw_tuples(groups, 4, 0, targets_ok=targets_ok)
    assert tuples.shape == (1, 5) and tuples[0, 4] == 0
    assert sorted(tuples[0, :4].tolist()) == [1, 2, 3, 4]


def test_order_window_limits_source_offsets():
    groups = np.repeat([0, 1], 30)
    order = np.tile(np.arange(30), 2)
    tuples = tuples_lib.draw_tuples(groups, 2, 3, order=order, max_offset=2)
    assert len(tuples) == 60  # every frame has >= 2 neighbours within 2 frames
    offsets = np.abs(order[tuples[:, :2]] - order[tuples[:, 2:]])
    assert offsets.max() <= 2 and offsets.min() >= 1
    assert (groups[tuples] == groups[tuples[:, :1]]).all()
    # With max_offset 1 the frames 0 and 29 have one neighbour only: not targets for K=2.
    tuples = tuples_lib.draw_tuples(groups, 2, 3, order=order, max_offset=1)
    assert len(tuples) == 56 and not set(order[tuples[:, 2]]) & {0, 29}


def test_draws_are_reproducible_by_seed_and_differ_between_seeds():
    groups = np.repeat(np.arange(20), 8)
    first = tuples_lib.draw_tuples(groups, 3, np.random.default_rng(7))
    again = tuples_lib.draw_tuples(groups, 3, np.random.default_rng(7))
    other = tuples_lib.draw_tuples(groups, 3, np.random.default_rng(8))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_num_tuples_overrides_one_per_target():
    groups = np.repeat(np.arange(3), 4)
    tuples = tuples_lib.draw_tuples(groups, 2, 0, num_tuples=50)
    assert tuples.shape == (50, 3)
    tuples_lib.check_tuples(tuples, groups, 2)


def test_fixed_test_tuples_are_deterministic_and_capped():
    groups = np.repeat(np.arange(50), 6)
    first = tuples_lib.fixed_test_tuples(groups, 2, seed=0, max_tuples=100)
    again = tuples_lib.fixed_test_tuples(groups, 2, seed=0, max_tuples=100)
    np.testing.assert_array_equal(first, again)
    assert first.shape == (100, 3)
    assert np.all(np.diff(first[:, 2]) > 0)  # distinct targets, increasing
    full = tuples_lib.fixed_test_tuples(groups, 2, seed=0)
    assert full.shape == (300, 3)
    assert not np.array_equal(tuples_lib.fixed_test_tuples(groups, 2, seed=1, max_tuples=100), first)


@pytest.mark.parametrize("suffix", [".npy", ".json"])
def test_save_and_load_round_trip(tmp_path, suffix):
    tuples = tuples_lib.draw_tuples(np.repeat(np.arange(4), 5), 3, 0)
    path = tmp_path / "sub" / f"tuples_k3{suffix}"
    tuples_lib.save_tuples(str(path), tuples)
    loaded = tuples_lib.load_tuples(str(path))
    assert loaded.dtype == np.int64
    np.testing.assert_array_equal(loaded, tuples)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind


def test_bad_arguments_raise_clear_errors():
    groups = _groups()
    with pytest.raises(ValueError, match="k"):
        tuples_lib.draw_tuples(groups, 0, 0)
    with pytest.raises(ValueError, match="targets_ok"):
        tuples_lib.draw_tuples(groups, 1, 0, targets_ok=np.ones(3, bool))
    with pytest.raises(ValueError, match="max_offset"):
        tuples_lib.draw_tuples(groups, 1, 0, order=np.arange(len(groups)))
    with pytest.raises(ValueError, match="mixes groups"):
        tuples_lib.check_tuples([[0, 1]], groups)
    with pytest.raises(ValueError, match="repeats"):
        tuples_lib.check_tuples([[0, 0]], groups)
    with pytest.raises(ValueError, match=r"\.npy or \.json"):
        tuples_lib.save_tuples("tuples.txt", [[0, 2]])
