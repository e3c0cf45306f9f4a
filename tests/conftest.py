"""Shared fixtures: the real dataset folder, and an isolated data environment for format tests."""

import dataclasses
import hashlib
import os
from pathlib import Path

import pytest

from tfbdl.data import datasets, files


@pytest.fixture
def shared_data_dir() -> Path:
    """The folder named by TFBDL_DATA_DIR (the project's dataset folder in CI).

    Skips when it is absent, unless TFBDL_REQUIRE_DATA=1, where that is a failure.
    """
    value = os.environ.get("TFBDL_DATA_DIR")
    path = Path(value) if value else None
    if path is None or not (path / "fashion_mnist").is_dir() or not (path / "mnist_10k.npz").is_file():
        message = f"dataset folder TFBDL_DATA_DIR={value!r} is missing fashion_mnist/ or mnist_10k.npz"
        if os.environ.get("TFBDL_REQUIRE_DATA") == "1":
            pytest.fail(message + " (TFBDL_REQUIRE_DATA=1)")
        pytest.skip(message)
    return path


@pytest.fixture
def isolated_data(monkeypatch, tmp_path) -> Path:
    """No dataset file is findable except under the returned folder; downloads are refused
    unless a test replaces ``files.open_url``."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.delenv(files.DATA_DIR_ENV, raising=False)
    monkeypatch.delenv(files.OFFLINE_ENV, raising=False)
    monkeypatch.setattr(files, "CACHE_DIR", tmp_path / "cache")
    for name, spec in list(datasets.DATASETS.items()):
        monkeypatch.setitem(datasets.DATASETS, name, dataclasses.replace(spec, system_dirs=()))

    def no_network(url, timeout=60.0, headers=None):
        raise OSError(f"network is off in tests ({url})")

    monkeypatch.setattr(files, "open_url", no_network)
    monkeypatch.setattr(files, "_unreachable", {})
    return root


def pin_checksum(monkeypatch, dataset: str, role: str, content: bytes) -> None:
    """Make the registry expect ``content`` (decompressed) for one file, as if it were official."""
    spec = datasets.DATASETS[dataset]
    remote = dataclasses.replace(spec.files[role], content_sha256=hashlib.sha256(content).hexdigest(),
                                 archive_md5=None)
    monkeypatch.setitem(datasets.DATASETS, dataset,
                        dataclasses.replace(spec, files={**spec.files, role: remote}))


def release_dir() -> Path:
    """The deep weight prior release's files: ``$TFBDL_REFERENCE_DIR/deep_weight_prior``, else
    ``../shared/reference/deep_weight_prior`` beside the repository (never inside it)."""
    root = os.environ.get("TFBDL_REFERENCE_DIR") or Path(__file__).resolve().parents[2] / "shared" / "reference"
    return Path(root) / "deep_weight_prior"
