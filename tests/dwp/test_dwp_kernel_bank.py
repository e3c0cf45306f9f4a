"""Tests of tfbdl.dwp.kernel_bank: slice order, norm filtering, model kernels, HDF5 round trip."""

import numpy as np
import pytest

from tfbdl.dwp.kernel_bank import (
    collect_kernel_bank,
    kernel_from_slices,
    kernel_slices,
    kernels_from_model,
    load_kernel_bank,
    save_kernel_bank,
    slice_norms,
)
from tfbdl.errors import DataFormatError, InvalidOptionError, ShapeError


def _coded_kernel(k=3, cin=2, cout=3):
    """kernel[r, c, i, o] = 1000 r + 100 c + 10 i + o, so every entry names its position."""
    r, c, i, o = np.meshgrid(np.arange(k), np.arange(k), np.arange(cin), np.arange(cout), indexing="ij")
    return (1000 * r + 100 * c + 10 * i + o).astype(np.float32)


# --------------------------------------------------------------------------- slices


def test_slices_are_output_major_like_torch_reshape():
    kernel = _coded_kernel(3, 2, 3)
    slices = kernel_slices(kernel)
    assert slices.shape == (6, 3, 3)
    assert slices.dtype == np.float32
    # slice o * in + i is kernel[:, :, i, o]; spot-check explicit entries
    assert slices[0, 0, 0] == 0  # i=0, o=0
    assert slices[1, 0, 0] == 10  # i=1, o=0
    assert slices[2, 0, 0] == 1  # i=0, o=1
    assert slices[5, 2, 1] == 2000 + 100 + 10 + 2  # i=1, o=2, row 2, column 1
    for o in range(3):
        for i in range(2):
            expected = 1000 * np.arange(3)[:, None] + 100 * np.arange(3)[None, :] + 10 * i + o
            np.testing.assert_array_equal(slices[o * 2 + i], expected)


def test_slices_match_a_torch_weight_layout():
    """torch stores [out, in, k, k]; reshape(-1, k, k) of it is the documented order."""
    rng = np.random.default_rng(0)
    torch_weight = rng.normal(size=(4, 3, 5, 5))
    keras_kernel = np.transpose(torch_weight, (2, 3, 1, 0))  # [k, k, in, out]
    np.testing.assert_array_equal(kernel_slices(keras_kernel), torch_weight.reshape(-1, 5, 5))


def test_kernel_from_slices_inverts_kernel_slices():
    kernel = _coded_kernel(5, 3, 4)
    np.testing.assert_array_equal(kernel_from_slices(kernel_slices(kernel), 3, 4), kernel)
    with pytest.raises(ShapeError, match=r"\[16, k, k\]"):
        kernel_from_slices(kernel_slices(kernel), 4, 4)


@pytest.mark.parametrize("shape", [(3, 3, 2), (3, 5, 1, 1), (7,)])
def test_slices_reject_bad_kernels(shape):
    with pytest.raises(ShapeError, match="k, k, in, out"):
        kernel_slices(np.zeros(shape))


# --------------------------------------------------------------------------- filtering


def _kernel_from_slices(slices, cin):
    """A [k, k, in, out] kernel whose kernel_slices are ``slices`` (len divisible by cin)."""
    n, k, _ = slices.shape
    return np.transpose(slices.reshape(n // cin, cin, k, k), (2, 3, 1, 0))


def test_bank_drops_exactly_the_slices_strictly_below_the_threshold():
    t32 = np.float32(0.05)
    threshold = float(t32)
    below = np.nextafter(t32, np.float32(0))  # the largest float32 under the threshold
    above = np.nextafter(t32, np.float32(1))
    rng = np.random.default_rng(1)
    pattern = rng.normal(size=(7, 7))
    pattern /= np.linalg.norm(pattern)
    # one-entry slices have norm exactly |value|; the patterned ones are far from the threshold
    slices = np.zeros((8, 7, 7), np.float32)
    slices[0, 0, 0] = t32  # norm == threshold: kept (only strictly below is dropped)
    slices[1, 1, 2] = below  # dropped
    slices[2, 2, 4] = above  # kept
    # slices[3] stays zero: dropped
    slices[4] = (pattern * 0.5 * threshold).astype(np.float32)  # dropped
    slices[5] = (pattern * 3.0 * threshold).astype(np.float32)  # kept
    slices[6, 3, 3] = -t32  # norm == threshold: kept
    slices[7, 0, 6] = -below  # dropped
    kept_expected = [0, 2, 5, 6]
    kernel = _kernel_from_slices(slices, cin=2)
    np.testing.assert_array_equal(kernel_slices(kernel), slices)

    bank, counts = collect_kernel_bank({7: [kernel]}, threshold)
    assert counts == {7: {"total": 8, "kept": 4, "dropped": 4}}
    assert bank[7].dtype == np.float32 and bank[7].shape == (4, 7, 7)
    np.testing.assert_array_equal(bank[7], slices[kept_expected])
    assert np.all(slice_norms(bank[7]) >= threshold)
    dropped = np.setdiff1d(np.arange(8), kept_expected)
    assert np.all(slice_norms(slices[dropped]) < threshold)


def test_bank_concatenates_sizes_in_order_and_counts_add_up():
    rng = np.random.default_rng(2)
    k7 = [rng.normal(size=(7, 7, 1, 4)), rng.normal(size=(7, 7, 2, 3))]
    k5 = [rng.normal(size=(5, 5, 4, 6))]
    k7[1][:, :, 1, 2] *= 1e-4  # slice 2 * 2 + 1 = 5 of the second kernel: tiny
    k5[0][:, :, 0, :] = 0.0  # slices o * 4 + 0: zero
    bank, counts = collect_kernel_bank({7: k7, 5: k5}, threshold=1e-2)
    assert counts[7] == {"total": 10, "kept": 9, "dropped": 1}
    assert counts[5] == {"total": 24, "kept": 18, "dropped": 6}
    for c in counts.values():
        assert c["kept"] + c["dropped"] == c["total"]
    all7 = np.concatenate([kernel_slices(k) for k in k7])
    np.testing.assert_array_equal(bank[7], np.delete(all7, 4 + 5, axis=0).astype(np.float32))
    all5 = kernel_slices(k5[0])
    np.testing.assert_array_equal(bank[5], all5[np.arange(24) % 4 != 0].astype(np.float32))


def test_zero_threshold_keeps_everything_even_zeros():
    kernel = np.zeros((3, 3, 2, 2))
    bank, counts = collect_kernel_bank({3: [kernel]}, 0.0)
    assert counts[3] == {"total": 4, "kept": 4, "dropped": 0}
    assert bank[3].shape == (4, 3, 3)


def test_bank_rejects_bad_input():
    good = np.ones((3, 3, 1, 1))
    with pytest.raises(InvalidOptionError, match="threshold"):
        collect_kernel_bank({3: [good]}, -1.0)
    with pytest.raises(InvalidOptionError, match="threshold"):
        collect_kernel_bank({3: [good]}, float("nan"))
    with pytest.raises(ShapeError, match=r"\[5, 5, in, out\]"):
        collect_kernel_bank({5: [good]}, 0.1)
    with pytest.raises(InvalidOptionError, match="NaN"):
        collect_kernel_bank({3: [good * np.nan]}, 0.1)
    with pytest.raises(InvalidOptionError, match="list of kernels"):
        collect_kernel_bank({3: good}, 0.1)


# --------------------------------------------------------------------------- models


def test_kernels_from_fconv_are_conv1_and_conv2():
    from tfbdl.nn import fconv

    model = fconv(seed=3)
    found = kernels_from_model(model)
    assert sorted(found) == [5, 7]
    assert [k.shape for k in found[7]] == [(7, 7, 1, 32)]
    assert [k.shape for k in found[5]] == [(5, 5, 32, 64)]
    np.testing.assert_array_equal(found[7][0], model.get_layer("conv1").kernel.numpy())
    np.testing.assert_array_equal(found[5][0], model.get_layer("conv2").kernel.numpy())
    bank, counts = collect_kernel_bank(found, 0.0)
    assert counts == {7: {"total": 32, "kept": 32, "dropped": 0}, 5: {"total": 2048, "kept": 2048, "dropped": 0}}


def test_kernels_from_nested_model_skip_transposed_and_non_square():
    import keras

    inner = keras.Sequential([keras.Input((8, 8, 2)), keras.layers.Conv2D(3, 3, name="inner_conv")], name="inner")
    x = keras.Input((8, 8, 1))
    y = keras.layers.Conv2D(2, 1, name="c1x1")(x)
    y = inner(y)
    y = keras.layers.Conv2D(4, (1, 3), name="nonsquare")(y)
    y = keras.layers.Conv2DTranspose(2, 3, name="transposed")(y)
    model = keras.Model(x, y)
    found = kernels_from_model(model)
    assert sorted(found) == [1, 3]
    assert [k.shape for k in found[1]] == [(1, 1, 1, 2)]
    assert [k.shape for k in found[3]] == [(3, 3, 2, 3)]
    with pytest.raises(InvalidOptionError, match="keras.Model"):
        kernels_from_model(np.zeros(3))


# --------------------------------------------------------------------------- HDF5


def test_hdf5_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(4)
    bank, counts = collect_kernel_bank(
        {7: [rng.normal(size=(7, 7, 1, 8))], 5: [rng.normal(size=(5, 5, 8, 4))], 3: [np.zeros((3, 3, 1, 2))]},
        threshold=0.5)
    assert bank[3].shape == (0, 3, 3)
    meta = {"threshold": 0.5, "sources": ["fconv-seed0", "fconv-seed1"], "nested": {"a": 1, "b": None}}
    path = tmp_path / "bank.h5"
    save_kernel_bank(path, bank, counts, meta)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bank.h5"]  # no temp file left behind
    bank2, counts2, meta2 = load_kernel_bank(path)
    assert sorted(bank2) == sorted(bank)
    for k in bank:
        assert bank2[k].dtype == np.float32
        np.testing.assert_array_equal(bank2[k], bank[k])
    assert counts2 == counts
    assert meta2 == meta

    import h5py

    with h5py.File(path, "r") as f:
        assert sorted(f.keys()) == ["size_3", "size_5", "size_7"]


def test_load_rejects_other_files(tmp_path):
    from tfbdl.io import save_h5

    save_h5(tmp_path / "other.h5", {"size_7": np.zeros((1, 7, 7))}, {"format": "something else"})
    with pytest.raises(DataFormatError, match="not a kernel bank"):
        load_kernel_bank(tmp_path / "other.h5")
    with pytest.raises(InvalidOptionError, match="counts"):
        save_kernel_bank(tmp_path / "b.h5", {7: np.zeros((1, 7, 7))}, {5: {}}, {})
    with pytest.raises(ShapeError):
        save_kernel_bank(tmp_path / "b.h5", {7: np.zeros((1, 5, 5))}, {7: {"total": 1, "kept": 1, "dropped": 0}})
