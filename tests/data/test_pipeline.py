"""Tests of tfbdl.data.pipeline.make_dataset (tf.data) and its helpers."""

import subprocess
import sys

import numpy as np
import pytest

from tfbdl.data.pipeline import dataset_size_batches, make_dataset
from tfbdl.errors import InvalidOptionError, ShapeError

N, H, W, C = 10, 4, 5, 3


def _data():
    # Image i is filled with i * 20 (uint8), so its id is readable from any pixel; labels = ids.
    x = (np.arange(N, dtype=np.uint8)[:, None, None, None] * 20) * np.ones((N, H, W, C), np.uint8)
    y = np.arange(N, dtype=np.int64)
    return x, y


def _epoch(ds):
    """List of (images, labels) numpy batches of one pass over ``ds``."""
    return [(xb.numpy(), yb.numpy()) for xb, yb in ds]


def _order(ds):
    return np.concatenate([yb for _, yb in _epoch(ds)])


def test_import_does_not_load_tensorflow():
    code = "import sys, tfbdl.data.pipeline; assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_dataset_size_batches():
    assert dataset_size_batches(10, 4, drop_remainder=False) == 3
    assert dataset_size_batches(10, 4, drop_remainder=True) == 2
    assert dataset_size_batches(8, 4, drop_remainder=False) == 2


def test_batches_shapes_dtypes_and_scaled_values():
    x, y = _data()
    batches = _epoch(make_dataset(x, y, 4))
    assert [b[0].shape for b in batches] == [(4, H, W, C), (4, H, W, C), (2, H, W, C)]
    assert all(b[0].dtype == np.float32 and b[1].dtype == np.int64 for b in batches)
    images = np.concatenate([b[0] for b in batches])
    # No shuffle: the examples come in order.
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)
    np.testing.assert_allclose(images[:, 0, 0, 0], np.arange(N) * 20 / 255.0, rtol=1e-6)
    assert images.max() <= 1.0
    dropped = _epoch(make_dataset(x, y, 4, drop_remainder=True))
    assert [b[0].shape[0] for b in dropped] == [4, 4]


def test_float_input_and_standardize():
    x, y = _data()
    xf = x.astype(np.float32) / 255.0
    mean, std = np.array([0.1, 0.2, 0.3]), np.array([0.5, 1.0, 2.0])
    images = np.concatenate([b[0] for b in _epoch(make_dataset(xf, y, 3, standardize=(mean, std)))])
    np.testing.assert_allclose(images, (xf - mean) / std, rtol=1e-5, atol=1e-6)


def test_same_seed_same_order_different_seed_different_order_reshuffled():
    x, y = _data()
    a = make_dataset(x, y, 3, shuffle=True, seed=1)
    b = make_dataset(x, y, 3, shuffle=True, seed=1)
    c = make_dataset(x, y, 3, shuffle=True, seed=2)
    a1, a2 = _order(a), _order(a)
    b1, b2 = _order(b), _order(b)
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)
    assert not np.array_equal(a1, _order(c))
    assert not np.array_equal(a1, a2)  # a new order every epoch
    for order in (a1, a2):  # every example exactly once per epoch
        np.testing.assert_array_equal(np.sort(order), y)
    # Images stay paired with their labels after shuffling.
    for xb, yb in _epoch(a):
        np.testing.assert_allclose(xb[:, 0, 0, 0], yb * 20 / 255.0, rtol=1e-6)


def test_repeat_gives_reshuffled_epochs_back_to_back():
    x, y = _data()
    ds = make_dataset(x, y, 5, shuffle=True, seed=3, repeat=True)
    order = np.concatenate([yb.numpy() for _, yb in ds.take(4)])  # two epochs of 2 batches
    np.testing.assert_array_equal(np.sort(order[:N]), y)
    np.testing.assert_array_equal(np.sort(order[N:]), y)
    assert not np.array_equal(order[:N], order[N:])


def test_augment_keeps_shape_and_is_a_padded_crop_or_flip():
    rng = np.random.default_rng(0)
    x = rng.integers(1, 256, size=(16, H, W, C), dtype=np.uint8)  # no zeros inside the images
    y = np.arange(16)
    ds = make_dataset(x, y, 8, seed=4, augment=True, pad=1)
    batches = _epoch(ds)
    assert [b[0].shape for b in batches] == [(8, H, W, C)] * 2
    out = np.concatenate([b[0] for b in batches])
    padded = np.pad(x.astype(np.float32) / 255.0, ((0, 0), (1, 1), (1, 1), (0, 0)))
    moved = 0
    for i in range(16):
        windows = [padded[i, dy:dy + H, dx:dx + W] for dy in range(3) for dx in range(3)]
        windows += [w[:, ::-1] for w in windows]
        matches = [np.allclose(out[i], w) for w in windows]
        assert any(matches)
        moved += not matches[4]  # index 4 = centre window without flip, i.e. unchanged
    assert moved > 0
    # Same seed, same augmentation; next epoch, new augmentation.
    same_seed = make_dataset(x, y, 8, seed=4, augment=True, pad=1)
    again = np.concatenate([b[0] for b in _epoch(same_seed)])
    np.testing.assert_array_equal(out, again)
    second_epoch = np.concatenate([b[0] for b in _epoch(ds)])
    assert not np.array_equal(out, second_epoch)


def test_augment_pad0_only_flips():
    x, _ = _data()
    x = x + np.arange(W, dtype=np.uint8)[None, None, :, None]  # columns differ
    y = np.arange(N)
    out = np.concatenate([b[0] for b in _epoch(make_dataset(x, y, N, seed=0, augment=True, pad=0))])
    xf = x.astype(np.float32) / 255.0
    same = np.all(np.isclose(out, xf), axis=(1, 2, 3))
    mirrored = np.all(np.isclose(out, xf[:, :, ::-1]), axis=(1, 2, 3))
    assert np.all(same | mirrored)


def test_make_dataset_validates():
    x, y = _data()
    with pytest.raises(InvalidOptionError, match="seed"):
        make_dataset(x, y, 4, shuffle=True)
    with pytest.raises(InvalidOptionError, match="seed"):
        make_dataset(x, y, 4, augment=True)
    with pytest.raises(ShapeError):
        make_dataset(x[0], y, 4)
    with pytest.raises(ShapeError):
        make_dataset(x, y[:5], 4)
    with pytest.raises(InvalidOptionError):
        make_dataset(x.astype(np.int32), y, 4)
    with pytest.raises(InvalidOptionError):
        make_dataset(x.astype(np.float32), y, 4)  # floats must be in [0, 1]
    with pytest.raises(InvalidOptionError):
        make_dataset(x, y, 0)
    with pytest.raises(ShapeError):
        make_dataset(x, y, 4, standardize=([0.0], [1.0]))
