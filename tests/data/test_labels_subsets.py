"""Tests of tfbdl.data.labels (label noise, label files) and tfbdl.data.subsets."""

import os

import numpy as np
import pytest

from tfbdl.data.labels import corrupt_labels, load_labels, save_labels
from tfbdl.data.subsets import (
    binary_pair,
    one_hot,
    one_vs_all,
    select_classes,
    stratified_indices,
)
from tfbdl.errors import DataFormatError, DatasetNotFound, InvalidOptionError, ShapeError

# --- corrupt_labels ------------------------------------------------------------------------------


def _labels(n=1000, num_classes=10):
    return np.arange(n, dtype=np.int64) % num_classes


def test_corrupt_labels_exact_fraction_and_all_marked():
    y = _labels()
    new, corrupted = corrupt_labels(y, 0.2, 10, seed=0)
    assert new.dtype == np.int64 and corrupted.dtype == np.bool_
    assert corrupted.sum() == 200
    wrong = new != y
    assert wrong.sum() == 200
    np.testing.assert_array_equal(wrong, corrupted)  # every changed label is marked, and only those
    assert new.min() >= 0 and new.max() <= 9
    np.testing.assert_array_equal(y, _labels())  # input untouched


def test_corrupt_labels_uses_all_other_classes():
    y = np.zeros(3000, dtype=np.int64)
    new, corrupted = corrupt_labels(y, 1.0, 4, seed=1)
    assert corrupted.all()
    counts = np.bincount(new, minlength=4)
    assert counts[0] == 0
    assert all(900 < c < 1100 for c in counts[1:])  # ~1000 each, uniform over 1, 2, 3


@pytest.mark.parametrize("fraction, n, expected", [(0.0, 10, 0), (1.0, 10, 10), (0.25, 10, 3),
                                                   (0.3, 10, 3), (0.5, 7, 4)])
def test_corrupt_labels_rounds_count(fraction, n, expected):
    _, corrupted = corrupt_labels(_labels(n, 3), fraction, 3, seed=2)
    assert corrupted.sum() == expected


def test_corrupt_labels_same_seed_same_result():
    y = _labels()
    a = corrupt_labels(y, 0.3, 10, seed=5)
    b = corrupt_labels(y, 0.3, 10, seed=5)
    c = corrupt_labels(y, 0.3, 10, seed=6)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


@pytest.mark.parametrize("kwargs, exc", [
    (dict(fraction=-0.1), InvalidOptionError),
    (dict(fraction=1.01), InvalidOptionError),
    (dict(num_classes=1), InvalidOptionError),
    (dict(num_classes=5), InvalidOptionError),  # labels go up to 9
    (dict(seed=None), InvalidOptionError),
])
def test_corrupt_labels_validates(kwargs, exc):
    args = dict(labels=_labels(20), fraction=0.5, num_classes=10, seed=0)
    args.update(kwargs)
    with pytest.raises(exc):
        corrupt_labels(**args)
    with pytest.raises(ShapeError):
        corrupt_labels(np.zeros((2, 2), dtype=np.int64), 0.5, 10, seed=0)


# --- save_labels / load_labels -------------------------------------------------------------------

def test_save_load_round_trip(tmp_path):
    y = _labels(50)
    new, corrupted = corrupt_labels(y, 0.2, 10, seed=3)
    meta = {"fraction": 0.2, "seed": 3, "dataset": "cifar10"}
    path = tmp_path / "labels.npz"
    save_labels(path, new, corrupted, meta)
    assert sorted(os.listdir(tmp_path)) == ["labels.npz"]  # no temp file left behind
    lab, cor, m = load_labels(path)
    np.testing.assert_array_equal(lab, new)
    np.testing.assert_array_equal(cor, corrupted)
    assert lab.dtype == np.int64 and cor.dtype == np.bool_
    assert m == meta
    # Overwriting replaces the file atomically with the new content.
    save_labels(path, y, np.zeros(50, dtype=bool), {"fraction": 0.0})
    lab2, cor2, m2 = load_labels(path)
    np.testing.assert_array_equal(lab2, y)
    assert not cor2.any() and m2 == {"fraction": 0.0}


def test_save_labels_validates(tmp_path):
    y = _labels(5)
    with pytest.raises(ShapeError):
        save_labels(tmp_path / "a.npz", y, np.zeros(4, dtype=bool), {})
    with pytest.raises(InvalidOptionError):
        save_labels(tmp_path / "a.npz", y, np.zeros(5, dtype=bool), {"x": object()})
    assert os.listdir(tmp_path) == []


def test_load_labels_errors(tmp_path):
    with pytest.raises(DatasetNotFound):
        load_labels(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(DataFormatError):
        load_labels(bad)
    other = tmp_path / "other.npz"
    np.savez(other, something=np.arange(3))
    with pytest.raises(DataFormatError):
        load_labels(other)


# --- stratified_indices --------------------------------------------------------------------------

def test_stratified_indices_counts_sorted_and_deterministic():
    y = np.array([0] * 10 + [1] * 5 + [2] * 7)
    idx = stratified_indices(y, 3, seed=0)
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(idx, np.sort(idx))
    assert len(np.unique(idx)) == 9
    np.testing.assert_array_equal(np.bincount(y[idx]), [3, 3, 3])
    np.testing.assert_array_equal(idx, stratified_indices(y, 3, seed=0))


def test_stratified_indices_exclusion():
    y = np.array([0] * 10 + [1] * 5)
    first = stratified_indices(y, 2, seed=1)
    second = stratified_indices(y, 3, seed=1, exclude=first)
    assert np.intersect1d(first, second).size == 0
    np.testing.assert_array_equal(np.bincount(y[second]), [3, 3])
    # Class 1 has exactly 5 - 2 = 3 left; asking for 4 must fail.
    with pytest.raises(InvalidOptionError, match="class 1"):
        stratified_indices(y, 4, seed=1, exclude=first)
    # Excluding all but 2 of class 1 leaves exactly those two.
    idx = stratified_indices(y, 2, seed=2, exclude=[10, 11, 12])
    np.testing.assert_array_equal(idx[y[idx] == 1], [13, 14])


def test_stratified_indices_validates():
    y = np.array([0, 0, 1, 1])
    with pytest.raises(InvalidOptionError):
        stratified_indices(y, 0, seed=0)
    with pytest.raises(InvalidOptionError):
        stratified_indices(y, 1, seed=0, exclude=[7])


# --- select_classes / binary_pair / one_vs_all / one_hot -----------------------------------------

def test_select_classes_relabels_in_given_order():
    y = np.array([0, 3, 5, 3, 1, 5, 0])
    x = np.arange(7)[:, None, None, None] * np.ones((7, 2, 2, 1))
    xs, ys = select_classes(x, y, [5, 0, 3])
    np.testing.assert_array_equal(ys, [1, 2, 0, 2, 0, 1])
    assert ys.dtype == np.int64
    np.testing.assert_array_equal(xs[:, 0, 0, 0], [0, 1, 2, 3, 5, 6])


def test_binary_pair_labels_zero_one():
    y = np.array([2, 7, 7, 4, 2])
    x = np.arange(5)
    xs, ys = binary_pair(x, y, pair=(7, 2))
    np.testing.assert_array_equal(xs, [0, 1, 2, 4])
    np.testing.assert_array_equal(ys, [1, 0, 0, 1])


def test_select_classes_validates():
    y = np.array([0, 1, 2])
    x = np.zeros((3, 1))
    with pytest.raises(ShapeError):
        select_classes(x[:2], y, [0, 1])
    with pytest.raises(InvalidOptionError):
        select_classes(x, y, [0, 0])
    with pytest.raises(InvalidOptionError):
        select_classes(x, y, [0, 9])
    with pytest.raises(InvalidOptionError):
        binary_pair(x, y, pair=(0, 1, 2))


def test_one_vs_all_values():
    y = np.array([0, 2, 1, 2])
    np.testing.assert_array_equal(one_vs_all(y, 2), [0, 1, 0, 1])
    np.testing.assert_array_equal(one_vs_all(y, 2, negative_value=-1), [-1, 1, -1, 1])
    assert one_vs_all(y, 0).dtype == np.int64
    with pytest.raises(InvalidOptionError):
        one_vs_all(y, 2, negative_value=5)


def test_one_hot_values():
    out = one_hot(np.array([2, 0, 1]), 3)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [[0, 0, 1], [1, 0, 0], [0, 1, 0]])
    assert one_hot(np.array([1]), 2, dtype=np.float32).dtype == np.float32
    with pytest.raises(InvalidOptionError):
        one_hot(np.array([3]), 3)
