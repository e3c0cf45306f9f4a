"""The 1-D gap regression data: seeded draws, clusters with empty gaps, .npz round trip."""

import numpy as np
import pytest

from tfbdl.data.toy_regression import (GapDataConfig, features, load_gap_data, load_or_make_gap_data,
                                       make_gap_data, region_masks, save_gap_data)
from tfbdl.errors import DataFormatError, InvalidOptionError

ARRAYS = ("x", "y", "x_grid", "f_grid", "x_test", "y_test", "x_test_wide", "y_test_wide")


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = make_gap_data(3), make_gap_data(3), make_gap_data(4)
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.allclose(a.x, c.x) and not np.allclose(a.y, c.y)
    np.testing.assert_array_equal(a.x_grid, c.x_grid)  # the grid does not depend on the seed


def test_training_points_fill_the_clusters_and_leave_the_gaps_empty():
    config = GapDataConfig(points_per_cluster=25)
    data = make_gap_data(0, config)
    assert data.x.shape == data.y.shape == (75,) and np.all(np.diff(data.x) >= 0)
    for lo, hi in config.clusters:
        assert np.sum((data.x >= lo) & (data.x <= hi)) == 25
    for (_, left), (right, _) in zip(config.clusters[:-1], config.clusters[1:]):  # the gaps
        assert not np.any((data.x > left) & (data.x < right))
        assert not np.any((data.x_test > left) & (data.x_test < right))
        assert np.any((data.x_test_wide > left) & (data.x_test_wide < right))  # the wide test set probes them
    masks = region_masks(data.x, config.clusters)
    assert masks["cluster"].all() and not masks["gap"].any() and not masks["outside"].any()


def test_region_masks_partition_the_grid():
    clusters = ((-1.0, -0.6), (0.6, 1.0))
    masks = region_masks(np.array([-2.0, -0.8, 0.0, 0.6, 1.5]), clusters)
    assert masks["cluster"].tolist() == [False, True, False, True, False]
    assert masks["gap"].tolist() == [False, False, True, False, False]
    assert masks["outside"].tolist() == [True, False, False, False, True]
    grid = make_gap_data(0).x_grid
    total = sum(m.astype(int) for m in region_masks(grid, GapDataConfig().clusters).values())
    assert np.all(total == 1)


def test_targets_are_the_function_plus_noise_of_the_stated_scale():
    data = make_gap_data(1, GapDataConfig(points_per_cluster=2000, noise_std=0.2))
    residual = data.y - data.true_function(data.x)
    assert abs(residual.mean()) < 0.02 and abs(residual.std() - 0.2) < 0.01
    np.testing.assert_allclose(data.f_grid, data.true_function(data.x_grid))


def test_features_are_x_and_its_square():
    x = np.array([-2.0, 0.5, 3.0])
    np.testing.assert_allclose(features(x), [[-2.0, 4.0], [0.5, 0.25], [3.0, 9.0]])
    assert features(x).dtype == np.float32 and features(x, "identity").shape == (3, 1)
    with pytest.raises(InvalidOptionError):
        features(x, "cubic")


def test_save_load_round_trip_keeps_arrays_seed_and_settings(tmp_path):
    config = GapDataConfig(points_per_cluster=7, noise_std=0.05, function="cubic")
    data = make_gap_data(11, config)
    path = save_gap_data(data, tmp_path / "sub" / "gap.npz")
    back = load_gap_data(path)
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(back, name), getattr(data, name))
    assert back.seed == 11 and back.config == config
    assert not list(path.parent.glob(".*tmp*"))  # no temp file left behind


def test_load_or_make_reuses_the_file_and_refuses_another_seed(tmp_path):
    path = tmp_path / "gap.npz"
    first = load_or_make_gap_data(path, 5)
    stamp = path.stat().st_mtime_ns
    again = load_or_make_gap_data(path, 5)
    assert path.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(first.y, again.y)
    with pytest.raises(InvalidOptionError, match="seed 5"):
        load_or_make_gap_data(path, 6)


def test_a_file_that_is_not_gap_data_is_refused(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, x=np.zeros(3))
    with pytest.raises(DataFormatError, match="missing"):
        load_gap_data(path)
    path.write_bytes(b"not a zip file")
    with pytest.raises(DataFormatError):
        load_gap_data(path)


@pytest.mark.parametrize("kwargs", [
    {"clusters": ((0.0, 1.0), (0.5, 2.0))},      # overlapping: no gap
    {"clusters": ((1.0, 0.0),)},                  # empty interval
    {"grid_range": (-0.5, 2.0)},                  # grid does not cover the first cluster
    {"function": "nope"},
    {"noise_std": 0.0},
])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(InvalidOptionError):
        GapDataConfig(**kwargs)
