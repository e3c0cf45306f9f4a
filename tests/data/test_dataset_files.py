"""Verification of decompressed content, missing files, and the tiny/smoke fallbacks (downloads
themselves are tested against a real local server in test_download_server.py)."""

import gzip
import hashlib

import numpy as np
import pytest

from tfbdl.data import files, load_dataset, load_for_run
from tfbdl.data.formats import idx
from tfbdl.errors import ChecksumError, DatasetNotFound, InvalidOptionError

LABELS = np.array([3, 1, 4, 1, 5, 9, 2, 6], np.uint8)


def _labels_content(labels=LABELS) -> bytes:
    return idx.encode_idx(labels)


def test_verification_accepts_a_recompressed_archive_of_the_same_content(tmp_path):
    content = _labels_content()
    official = gzip.compress(content, compresslevel=9, mtime=0)
    recompressed = gzip.compress(content, compresslevel=1, mtime=12345)  # as a distribution might
    assert official != recompressed
    remote = files.RemoteFile("labels.gz", None, content_sha256=hashlib.sha256(content).hexdigest(),
                              archive_md5=hashlib.md5(official).hexdigest())
    for payload in (official, recompressed):
        path = tmp_path / "labels.gz"
        path.write_bytes(payload)
        assert files.verify_content(path, remote) == content


def test_verification_accepts_the_official_archive_md5(tmp_path):
    payload = gzip.compress(_labels_content(), mtime=0)
    remote = files.RemoteFile("labels.gz", None, content_sha256="0" * 64, archive_md5=hashlib.md5(payload).hexdigest())
    path = tmp_path / "labels.gz"
    path.write_bytes(payload)
    assert files.verify_content(path, remote) == _labels_content()


def test_a_modified_real_file_raises_checksum_error_before_parsing(isolated_data):
    """A fashion_mnist test-labels file with one label changed fails the official checksum."""
    folder = isolated_data / "fashion_mnist"
    folder.mkdir()
    labels = np.zeros(10000, np.uint8)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx.encode_idx(labels)))
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx.encode_idx(np.zeros((10000, 28, 28), np.uint8))))
    with pytest.raises(ChecksumError, match="does not match the official t10k-"):
        load_dataset("fashion_mnist", "test", data_dir=isolated_data, download=False)


def test_a_broken_gzip_stream_is_a_checksum_error(tmp_path):
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(_labels_content())[:-6])
    with pytest.raises(ChecksumError, match="broken gzip"):
        files.verify_content(path, files.RemoteFile("labels.gz", None, content_sha256="0" * 64))


def test_mnist_sample_has_no_address_and_says_where_to_put_it(isolated_data):
    with pytest.raises(DatasetNotFound, match=r"mnist_10k\.npz.*no public download address"):
        load_dataset("mnist_sample", "all", data_dir=isolated_data)


def test_unknown_names_and_splits_are_option_errors():
    with pytest.raises(InvalidOptionError, match="unknown dataset 'cifar11'; choose one of: mnist"):
        load_dataset("cifar11")
    with pytest.raises(InvalidOptionError, match="no split 'valid'"):
        load_dataset("fashion_mnist", "valid")
    with pytest.raises(InvalidOptionError, match="unknown scale"):
        load_for_run("fashion_mnist", "train", "huge")


def test_tiny_scale_falls_back_to_embedded_subsets_and_stand_ins(isolated_data):
    fashion = load_for_run("fashion_mnist", "train", "tiny", data_dir=isolated_data)
    assert fashion.provenance["source"] == "embedded subset" and fashion.labels.size == 1000
    mnist = load_for_run("mnist", "test", "smoke", data_dir=isolated_data)
    assert mnist.provenance["requested"] == "mnist" and mnist.provenance["dataset"] == "mnist_sample"
    assert mnist.labels.size == 500 and "MNIST digits of the MNIST sample stand in" in mnist.describe()
    cifar = load_for_run("cifar10", "train", "tiny", data_dir=isolated_data)
    assert cifar.provenance["dataset"] == "fashion_mnist" and "CIFAR-10 is absent" in cifar.describe()
    # A split the stand-in lacks ('all') falls back to its training split, and says so.
    letters = load_for_run("notmnist", "all", "tiny", data_dir=isolated_data)
    assert (letters.provenance["dataset"], letters.provenance["split"]) == ("fashion_mnist", "train")
    assert letters.provenance["requested_split"] == "all" and "notmnist/all" in letters.describe()


def test_paper_scale_never_falls_back(isolated_data):
    with pytest.raises(DatasetNotFound):
        load_for_run("fashion_mnist", "train", "paper", data_dir=isolated_data)
