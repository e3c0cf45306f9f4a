"""The official-format parsers, on files these tests write in the exact official formats."""

import gzip
import io
import pickle
import struct
import tarfile

import numpy as np
import pytest

from tests.conftest import pin_checksum
from tfbdl.data import load_dataset
from tfbdl.data.formats import idx
from tfbdl.data.formats.notmnist import parse_notmnist_archive
from tfbdl.errors import DataFormatError, UnsafePickleError


# ---------------------------------------------------------------- IDX (MNIST family)
def test_idx_round_trip_and_header():
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    data = idx.encode_idx(array)
    assert data[:4] == b"\x00\x00\x08\x03"  # uint8, three dimensions
    assert int.from_bytes(data[:4], "big") == idx.IMAGES_MAGIC
    assert data[4:16] == (2).to_bytes(4, "big") + (3).to_bytes(4, "big") + (4).to_bytes(4, "big")
    np.testing.assert_array_equal(idx.parse_idx(data, expected_magic=idx.IMAGES_MAGIC), array)
    floats = np.linspace(-1, 1, 5).astype(np.float32)
    np.testing.assert_array_equal(idx.parse_idx(idx.encode_idx(floats)), floats)


def test_idx_rejects_wrong_magic_and_truncation():
    data = idx.encode_idx(np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(DataFormatError, match="magic number 2051, expected 2049"):
        idx.parse_idx(data, expected_magic=idx.LABELS_MAGIC)
    with pytest.raises(DataFormatError, match="truncated"):
        idx.parse_idx(data[:-1])
    with pytest.raises(DataFormatError, match="not an IDX file"):
        idx.parse_idx(b"PK\x03\x04" + data[4:])


def _write_mnist(root, monkeypatch, dataset="mnist", n_train=12, n_test=5, compress=True):
    rng = np.random.default_rng(1)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        arrays[f"{split}_images"] = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 10).astype(np.uint8)
    folder = root / dataset
    folder.mkdir()
    from tfbdl.data.datasets import DATASETS

    for role, array in arrays.items():
        content = idx.encode_idx(array)
        name = DATASETS[dataset].files[role].filename
        if compress:
            (folder / name).write_bytes(gzip.compress(content))
        else:
            (folder / name[:-3]).write_bytes(content)
        pin_checksum(monkeypatch, dataset, role, content)
    return arrays


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_loads_from_official_idx_files(isolated_data, monkeypatch, compress):
    arrays = _write_mnist(isolated_data, monkeypatch, compress=compress)
    images, labels = load_dataset("mnist", "train", data_dir=isolated_data)
    assert images.shape == (12, 28, 28, 1) and images.dtype == np.uint8 and labels.dtype == np.int64
    np.testing.assert_array_equal(images[..., 0], arrays["train_images"])
    np.testing.assert_array_equal(labels, arrays["train_labels"])
    test_images, _ = load_dataset("mnist", "test", data_dir=isolated_data)
    assert test_images.shape == (5, 28, 28, 1)


def test_data_dir_env_variable_is_searched(isolated_data, monkeypatch):
    _write_mnist(isolated_data, monkeypatch)
    monkeypatch.setenv("TFBDL_DATA_DIR", str(isolated_data))
    images, _ = load_dataset("mnist", "test")
    assert images.shape[0] == 5


# ---------------------------------------------------------------- CIFAR python batches
class _Python2Pickler(pickle._Pickler):
    """Writes byte strings the way Python 2 wrote its ``str`` (BINSTRING opcodes), as in the
    official CIFAR batches; Python 3's protocol 2 would call ``_codecs.encode`` instead."""

    def save_bytes(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch = pickle._Pickler.dispatch.copy()
    dispatch[bytes] = save_bytes


def _python2_pickle(obj) -> bytes:
    buffer = io.BytesIO()
    _Python2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def _batch_pickle(data: np.ndarray, labels: list[int], label_key: bytes = b"labels") -> bytes:
    # The official batches are protocol-2 Python 2 pickles of dicts with byte-string keys.
    batch = {b"batch_label": b"testing batch", label_key: labels, b"data": data,
             b"filenames": [b"x.png"] * len(labels)}
    return _python2_pickle(batch)


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def _cifar_image_rows(n: int, offset: int) -> np.ndarray:
    """Rows of 3072 bytes: red plane = image index, green = 100 + pixel row, blue = 200."""
    rows = np.zeros((n, 3, 32, 32), np.uint8)
    rows[:, 0] = (offset + np.arange(n))[:, None, None]
    rows[:, 1] = 100 + np.arange(32)[None, :, None]
    rows[:, 2] = 200
    return rows.reshape(n, 3072)


def _write_archive(root, monkeypatch, dataset, members):
    from tfbdl.data.datasets import DATASETS

    archive = _tar_gz(members)
    folder = root / dataset
    folder.mkdir()
    (folder / DATASETS[dataset].files["archive"].filename).write_bytes(archive)
    pin_checksum(monkeypatch, dataset, "archive", gzip.decompress(archive))


def test_cifar10_batches_parse_in_order_with_channels_last(isolated_data, monkeypatch):
    members = {f"cifar-10-batches-py/data_batch_{i}": _batch_pickle(_cifar_image_rows(3, 3 * (i - 1)),
                                                                     [i - 1, i, i + 1]) for i in range(1, 6)}
    members["cifar-10-batches-py/test_batch"] = _batch_pickle(_cifar_image_rows(4, 50), [9, 8, 7, 6])
    members["cifar-10-batches-py/batches.meta"] = _python2_pickle({b"label_names": [b"airplane"]})
    _write_archive(isolated_data, monkeypatch, "cifar10", members)
    images, labels = load_dataset("cifar10", "train", data_dir=isolated_data)
    assert images.shape == (15, 32, 32, 3) and images.dtype == np.uint8
    assert labels.tolist() == [0, 1, 2, 1, 2, 3, 2, 3, 4, 3, 4, 5, 4, 5, 6]
    assert images[:, 0, 0, 0].tolist() == list(range(15))  # red plane, batches concatenated in order
    assert images[7, 5, 9].tolist() == [7, 105, 200]  # pixel (row 5, col 9): R, G, B
    test_images, test_labels = load_dataset("cifar10", "test", data_dir=isolated_data)
    assert test_images.shape == (4, 32, 32, 3) and test_labels.tolist() == [9, 8, 7, 6]


def test_cifar100_reads_fine_labels(isolated_data, monkeypatch):
    fine = {"train": [5, 99, 0], "test": [42, 7]}
    members = {f"cifar-100-python/{split}": _batch_pickle(_cifar_image_rows(len(labels), 0), labels, b"fine_labels")
               for split, labels in fine.items()}
    _write_archive(isolated_data, monkeypatch, "cifar100", members)
    _, labels = load_dataset("cifar100", "train", data_dir=isolated_data)
    assert labels.tolist() == [5, 99, 0]
    _, labels = load_dataset("cifar100", "test", data_dir=isolated_data)
    assert labels.tolist() == [42, 7]


class _CreatesFileWhenUnpickled:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_crafted_cifar_pickle_is_refused_and_runs_nothing(isolated_data, monkeypatch, tmp_path):
    evidence = tmp_path / "pwned.txt"
    crafted = _python2_pickle({b"data": _CreatesFileWhenUnpickled(evidence), b"labels": [0]})
    # A normal pickle.loads of these bytes would create the file: make sure the payload is real.
    probe = tmp_path / "probe.txt"
    pickle.loads(_python2_pickle(_CreatesFileWhenUnpickled(probe)), encoding="bytes").close()
    assert probe.exists()

    members = {f"cifar-10-batches-py/data_batch_{i}": crafted for i in range(1, 6)}
    _write_archive(isolated_data, monkeypatch, "cifar10", members)
    with pytest.raises(UnsafePickleError, match=r"refused to load .*open"):
        load_dataset("cifar10", "train", data_dir=isolated_data)
    assert not evidence.exists()


# ---------------------------------------------------------------- notMNIST
def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _notmnist_members(per_letter=5):
    members = {}
    for label, letter in enumerate("ABCDEFGHIJ"):
        for k in range(per_letter):
            pixels = np.full((28, 28), 10 * label + k, np.uint8)
            members[f"notMNIST_small/{letter}/{letter}{k:03d}.png"] = _png(pixels)
    members["notMNIST_small/A/empty.png"] = b""  # the official archives hold two empty files
    return members


def test_notmnist_archive_parses_and_skips_unreadable_files():
    archive = gzip.decompress(_tar_gz(_notmnist_members()))
    images, labels, skipped = parse_notmnist_archive(archive)
    assert images.shape == (50, 28, 28, 1) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [5] * 10
    assert skipped == ["notMNIST_small/A/empty.png"]
    assert images[labels == 3][:, 0, 0, 0].tolist() == [30, 31, 32, 33, 34]


def test_notmnist_splits(isolated_data, monkeypatch):
    _write_archive(isolated_data, monkeypatch, "notmnist", _notmnist_members(per_letter=10))
    all_images, all_labels = load_dataset("notmnist", "all", data_dir=isolated_data)
    train_images, train_labels = load_dataset("notmnist", "train", data_dir=isolated_data)
    test_images, test_labels = load_dataset("notmnist", "test", data_dir=isolated_data)
    assert all_labels.size == 100
    assert np.bincount(test_labels).tolist() == [2] * 10 and np.bincount(train_labels).tolist() == [8] * 10
    # Together the two splits are exactly the whole set (pixel values identify images here).
    joined = np.sort(np.concatenate([train_images[:, 0, 0, 0], test_images[:, 0, 0, 0]]))
    np.testing.assert_array_equal(joined, np.sort(all_images[:, 0, 0, 0]))
