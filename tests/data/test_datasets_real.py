"""Known facts of the datasets on this machine, read through the public loaders."""

import numpy as np
import pytest

from tfbdl.data import load_dataset, load_embedded, load_for_run
from tfbdl.data.datasets import seeded_split

MNIST_SAMPLE_COUNTS = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]


def test_fashion_mnist_train_facts(shared_data_dir):
    images, labels = load_dataset("fashion_mnist", "train", data_dir=shared_data_dir)
    assert images.shape == (60000, 28, 28, 1) and images.dtype == np.uint8
    assert labels.shape == (60000,) and labels.dtype == np.int64
    assert np.bincount(labels).tolist() == [6000] * 10
    # The first training items of the official release: ankle boot, T-shirt, T-shirt, dress, ...
    assert labels[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    # The widely quoted Fashion-MNIST training-set pixel mean (of values scaled to [0, 1]).
    assert images.mean() / 255.0 == pytest.approx(0.2860, abs=5e-5)


def test_fashion_mnist_test_facts(shared_data_dir):
    images, labels = load_dataset("fashion_mnist", "test", data_dir=shared_data_dir)
    assert images.shape == (10000, 28, 28, 1)
    assert np.bincount(labels).tolist() == [1000] * 10
    assert labels[:5].tolist() == [9, 2, 1, 1, 6]


MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_mnist_official_split_facts(shared_data_dir):
    images, labels = load_dataset("mnist", "train", data_dir=shared_data_dir)
    assert images.shape == (60000, 28, 28, 1) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == MNIST_TRAIN_COUNTS
    assert labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # the famous first digits
    # The widely quoted MNIST training-set pixel mean and standard deviation (0.1307, 0.3081).
    assert images.mean() / 255.0 == pytest.approx(0.1307, abs=5e-5)
    assert (images / 255.0).std() == pytest.approx(0.3081, abs=5e-5)
    test_images, test_labels = load_dataset("mnist", "test", data_dir=shared_data_dir)
    assert test_images.shape == (10000, 28, 28, 1)
    assert np.bincount(test_labels).tolist() == MNIST_TEST_COUNTS
    assert test_labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_mnist_runs_read_the_full_files_when_present(shared_data_dir):
    loaded = load_for_run("mnist", "train", "smoke", data_dir=shared_data_dir)
    assert loaded.provenance["dataset"] == "mnist" and loaded.provenance["source"] == "full"
    assert loaded.labels.size == 60000


def test_mnist_sample_facts_and_seeded_split(shared_data_dir):
    images, labels = load_dataset("mnist_sample", "all", data_dir=shared_data_dir)
    assert images.shape == (10000, 28, 28, 1) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == MNIST_SAMPLE_COUNTS
    train_idx, test_idx = seeded_split(labels, "train"), seeded_split(labels, "test")
    assert np.intersect1d(train_idx, test_idx).size == 0
    assert train_idx.size + test_idx.size == 10000
    # Stratified: every class keeps round(20%) of its examples for test.
    assert np.bincount(labels[test_idx]).tolist() == [round(0.2 * c) for c in MNIST_SAMPLE_COUNTS]
    train_images, train_labels = load_dataset("mnist_sample", "train", data_dir=shared_data_dir)
    np.testing.assert_array_equal(train_images, images[train_idx])
    np.testing.assert_array_equal(train_labels, labels[train_idx])


def test_run_data_uses_full_files_when_present(shared_data_dir):
    loaded = load_for_run("fashion_mnist", "test", "tiny", data_dir=shared_data_dir)
    assert loaded.provenance["source"] == "full" and loaded.labels.size == 10000


def test_embedded_subsets_are_reproducible_from_the_full_data(shared_data_dir, monkeypatch):
    """The packaged subsets equal what scripts/build_embedded_subsets.py builds from the data."""
    import importlib.util
    from pathlib import Path

    monkeypatch.setenv("TFBDL_DATA_DIR", str(shared_data_dir))
    script = Path(__file__).resolve().parents[2] / "scripts" / "build_embedded_subsets.py"
    spec = importlib.util.spec_from_file_location("build_embedded_subsets", script)
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    for name in ("fashion_mnist", "mnist_sample"):
        rebuilt = builder.build(name)
        for split in ("train", "test"):
            images, labels = load_embedded(name, split)
            np.testing.assert_array_equal(images, rebuilt[f"{split}_images"])
            np.testing.assert_array_equal(labels, rebuilt[f"{split}_labels"])


@pytest.mark.parametrize("name", ["fashion_mnist", "mnist_sample"])
def test_embedded_subsets_are_stratified(name):
    for split, per_class in (("train", 100), ("test", 50)):
        images, labels = load_embedded(name, split)
        assert images.shape == (10 * per_class, 28, 28, 1) and images.dtype == np.uint8
        assert np.bincount(labels).tolist() == [per_class] * 10
