"""Tests of tfbdl.data.transforms: scaling, channel statistics, GCN and pad-crop-flip."""

import numpy as np
import pytest

from tfbdl.data.transforms import (
    channel_stats,
    global_contrast_normalize,
    pad_crop_flip,
    standardize,
    to_float01,
)
from tfbdl.errors import InvalidOptionError, ShapeError


def _random_uint8(seed=0, shape=(5, 6, 7, 3)):
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


# --- to_float01 ----------------------------------------------------------------------------------

def test_to_float01_maps_uint8_endpoints():
    x = np.array([[[[0, 51, 255]]]], dtype=np.uint8)
    out = to_float01(x)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.array([[[[0.0, 0.2, 1.0]]]], dtype=np.float32))


def test_to_float01_passes_float01_through():
    x = np.array([0.0, 0.5, 1.0], dtype=np.float64)
    out = to_float01(x)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [0.0, 0.5, 1.0])


@pytest.mark.parametrize("bad", [
    np.array([0, 255], dtype=np.int32),
    np.array([True, False]),
    np.array([0.0, 1.5], dtype=np.float32),
    np.array([-0.1, 0.5], dtype=np.float32),
    np.array([np.nan], dtype=np.float32),
])
def test_to_float01_rejects_other_dtypes_and_ranges(bad):
    with pytest.raises(InvalidOptionError):
        to_float01(bad)


# --- channel_stats / standardize -----------------------------------------------------------------

def test_channel_stats_hand_made():
    # channel 0 holds 1, 2, 3, 4; channel 1 is constant 5.
    x = np.zeros((2, 1, 2, 2), dtype=np.float32)
    x[0, 0, :, 0] = [1, 2]
    x[1, 0, :, 0] = [3, 4]
    x[..., 1] = 5
    mean, std = channel_stats(x)
    assert mean.dtype == np.float64 and std.dtype == np.float64
    np.testing.assert_allclose(mean, [2.5, 5.0])
    np.testing.assert_allclose(std, [np.sqrt(1.25), 0.0])


def test_channel_stats_rejects_non_nhwc():
    with pytest.raises(ShapeError):
        channel_stats(np.zeros((4, 4, 3)))


def test_standardize_gives_zero_mean_unit_std_per_channel():
    x = to_float01(_random_uint8())
    mean, std = channel_stats(x)
    out = standardize(x, mean, std)
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0.0, atol=1e-6)
    np.testing.assert_allclose(out.std(axis=(0, 1, 2)), 1.0, atol=1e-6)


def test_standardize_hand_values():
    x = np.array([[[[0.0, 10.0]]], [[[2.0, 30.0]]]], dtype=np.float32)  # [2, 1, 1, 2]
    out = standardize(x, [1.0, 20.0], [1.0, 10.0])
    np.testing.assert_array_equal(out[:, 0, 0, :], [[-1.0, -1.0], [1.0, 1.0]])


def test_standardize_validates_mean_std():
    x = np.zeros((1, 2, 2, 3), dtype=np.float32)
    with pytest.raises(ShapeError):
        standardize(x, [0.0, 0.0], [1.0, 1.0])
    with pytest.raises(InvalidOptionError):
        standardize(x, [0.0] * 3, [1.0, 0.0, 1.0])


# --- global_contrast_normalize -------------------------------------------------------------------

def test_gcn_zero_mean_per_image():
    out = global_contrast_normalize(_random_uint8(1), scale=55.0)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.reshape(len(out), -1).mean(axis=1), 0.0, atol=1e-4)


@pytest.mark.parametrize("scale", [1.0, 55.0])
def test_gcn_without_bias_gives_mean_square_scale_squared(scale):
    out = global_contrast_normalize(_random_uint8(2), scale=scale, sqrt_bias=0.0)
    ms = np.mean(out.astype(np.float64).reshape(len(out), -1) ** 2, axis=1)
    np.testing.assert_allclose(ms, scale ** 2, rtol=1e-5)


def test_gcn_hand_values_with_bias():
    # One image with pixels 0 and 4: centred -2, 2; mean square 4; norm sqrt(10 + 4) / 2.
    x = np.array([[[[0.0], [4.0]]]])
    out = global_contrast_normalize(x, scale=2.0, sqrt_bias=10.0)
    expected = np.array([-2.0, 2.0]) / (np.sqrt(14.0) / 2.0)
    np.testing.assert_allclose(out.reshape(-1), expected, rtol=1e-6)


def test_gcn_constant_image_is_zero_and_options_checked():
    out = global_contrast_normalize(np.full((1, 2, 2, 1), 7, dtype=np.uint8), sqrt_bias=0.0)
    np.testing.assert_array_equal(out, 0.0)
    with pytest.raises(InvalidOptionError):
        global_contrast_normalize(np.zeros((1, 2, 2, 1)), scale=0.0)
    with pytest.raises(InvalidOptionError):
        global_contrast_normalize(np.zeros((1, 2, 2, 1)), sqrt_bias=-1.0)


# --- pad_crop_flip -------------------------------------------------------------------------------

def test_pad_crop_flip_identity_without_pad_and_flip():
    x = _random_uint8(3)
    out = pad_crop_flip(x, np.random.default_rng(0), pad=0, flip=False)
    assert out.dtype == x.dtype
    np.testing.assert_array_equal(out, x)


def test_pad_crop_flip_flip_only_mirrors_rows():
    x = _random_uint8(4, shape=(64, 3, 5, 2))
    out = pad_crop_flip(x, np.random.default_rng(1), pad=0, flip=True)
    # Each row keeps its multiset of pixel values ...
    np.testing.assert_array_equal(np.sort(out, axis=2), np.sort(x, axis=2))
    # ... because each image is either unchanged or mirrored left-right, both occurring.
    same = np.all(out == x, axis=(1, 2, 3))
    mirrored = np.all(out == x[:, :, ::-1], axis=(1, 2, 3))
    assert np.all(same | mirrored)
    assert same.any() and mirrored.any()


def test_pad_crop_flip_crops_a_window_of_the_padded_image():
    x = (np.arange(2 * 3 * 3).reshape(2, 3, 3, 1) + 1).astype(np.float32)  # no zeros inside
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = pad_crop_flip(x, np.random.default_rng(5), pad=1, flip=True)
    for i in range(len(x)):
        windows = [padded[i, dy:dy + 3, dx:dx + 3] for dy in range(3) for dx in range(3)]
        windows += [w[:, ::-1] for w in windows]
        assert any(np.array_equal(out[i], w) for w in windows)


def test_pad_crop_flip_same_seed_same_output():
    x = _random_uint8(6, shape=(8, 6, 6, 3))
    a = pad_crop_flip(x, np.random.default_rng(7))
    b = pad_crop_flip(x, np.random.default_rng(7))
    c = pad_crop_flip(x, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_pad_crop_flip_validates():
    x = np.zeros((1, 4, 4, 1), dtype=np.uint8)
    with pytest.raises(InvalidOptionError):
        pad_crop_flip(x, 0)
    with pytest.raises(InvalidOptionError):
        pad_crop_flip(x, np.random.default_rng(0), pad=-1)
    with pytest.raises(ShapeError):
        pad_crop_flip(x[0], np.random.default_rng(0))


def test_pad_to_side_centres_smaller_images_and_leaves_larger_ones():
    from tfbdl.data.transforms import pad_to_side

    images = np.ones((2, 28, 27, 1), np.uint8)
    padded = pad_to_side(images, 32)
    assert padded.shape == (2, 32, 32, 1) and padded.dtype == np.uint8
    assert padded.sum() == images.sum() and padded[:, 2:30, 2:29].min() == 1  # 2 above, 2 left (+3 right)
    assert pad_to_side(images, 20) is not None and pad_to_side(images, 20).shape == images.shape
