"""Tests of tfbdl.io: atomic writes, JSON values, run directories, progress marks and HDF5 helpers
(the block store has its own tests in test_block_store.py)."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

import tfbdl.io as tio
from tfbdl.errors import InvalidOptionError, RunDirectoryError, ShapeError, TfbdlError
from tfbdl.io import (
    RunDir,
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    config_hash,
    default_run_id,
    git_commit,
    load_h5,
    package_versions,
    save_h5,
    to_jsonable,
)
from tfbdl.io import provenance

CONFIG = {"dataset": "mnist", "seed": 0, "scale": "tiny", "sizes": [10, 20]}


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- atomic writes


def test_atomic_writes_leave_only_the_target(tmp_path):
    atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01")
    atomic_write_text(tmp_path / "b.txt", "héllo")
    atomic_write_json(
        tmp_path / "c.json", {"b": np.float32(0.5), "a": np.arange(3), "n": np.int64(7), "t": (1, 2)}
    )
    assert _names(tmp_path) == ["a.bin", "b.txt", "c.json"]
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "héllo"
    text = (tmp_path / "c.json").read_text()
    assert json.loads(text) == {"a": [0, 1, 2], "b": 0.5, "n": 7, "t": [1, 2]}
    assert text.index('"a"') < text.index('"b"')  # sorted keys
    assert '\n  "a": [' in text  # indent=2


def test_atomic_write_replaces_existing_file(tmp_path):
    atomic_write_text(tmp_path / "x.txt", "old")
    atomic_write_text(tmp_path / "x.txt", "new")
    assert (tmp_path / "x.txt").read_text() == "new"
    assert _names(tmp_path) == ["x.txt"]


def test_atomic_path_success_and_same_suffix(tmp_path):
    target = tmp_path / "arrays.npz"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".npz" and tmp != target
        np.savez(tmp, x=np.arange(4))
        assert not target.exists()
    assert _names(tmp_path) == ["arrays.npz"]
    np.testing.assert_array_equal(np.load(target)["x"], [0, 1, 2, 3])


def test_package_exports_every_public_name_of_its_modules():
    from tfbdl.io import atomic, blocks, hdf5, jsonio, rundir

    exported = set()
    for module in (atomic, blocks, hdf5, jsonio, provenance, rundir):
        for name in module.__all__:
            assert getattr(tio, name) is getattr(module, name), name
        exported |= set(module.__all__)
    assert set(tio.__all__) == exported


def test_to_jsonable_makes_plain_json_values():
    value = {np.int64(3): (np.float32(0.5), np.arange(2)), "p": pathlib.PurePosixPath("a/b"), 1: [np.bool_(True)]}
    plain = to_jsonable(value)
    assert plain == {"3": [0.5, [0, 1]], "p": "a/b", "1": [True]}
    assert type(plain["3"][0]) is float and type(plain["3"][1][0]) is int and type(plain["1"][0]) is bool
    assert json.loads(json.dumps(plain)) == plain


def test_atomic_write_json_refuses_non_json_values(tmp_path):
    with pytest.raises(InvalidOptionError, match="cannot store this value as JSON"):
        atomic_write_json(tmp_path / "x.json", {"f": object()})
    assert _names(tmp_path) == []


def test_atomic_path_failure_keeps_old_file(tmp_path):
    target = tmp_path / "data.txt"
    target.write_text("old content")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            tmp.write_text("half of the new")
            raise RuntimeError("boom")
    assert target.read_text() == "old content"
    assert _names(tmp_path) == ["data.txt"]


# --------------------------------------------------------------------------- provenance


def test_config_hash_stable_and_order_independent():
    a = {"lr": 0.1, "epochs": 3, "model": {"width": 8, "depth": 2}}
    b = {"model": {"depth": 2, "width": 8}, "epochs": 3, "lr": 0.1}
    h = config_hash(a)
    assert len(h) == 8 and int(h, 16) >= 0
    assert h == config_hash(b) == config_hash(json.loads(json.dumps(a)))
    assert config_hash({**a, "lr": 0.2}) != h
    # Pinned value: sha256 of '{"a":1}' starts with 015abd7f.
    assert config_hash({"a": 1}) == "015abd7f"
    assert config_hash({"a": np.int64(1)}) == "015abd7f"  # numpy scalars hash like Python ones
    assert default_run_id(a, "tiny") == f"tiny-{h}"
    with pytest.raises(InvalidOptionError):
        default_run_id(a, "../tiny")


def test_package_versions_reads_metadata_without_importing_tensorflow():
    code = (
        "import sys, tfbdl.io as t; v = t.package_versions(); "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'; "
        "import json; print(json.dumps(v))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    v = json.loads(res.stdout)
    expected = {
        "python", "tfbdl", "tensorflow", "keras", "tensorflow-probability", "gpflow",
        "numpy", "scipy", "h5py", "click", "matplotlib",
    }
    assert set(v) == expected
    assert v["numpy"] == np.__version__
    assert v["python"] == "%d.%d.%d" % sys.version_info[:3]


def test_package_versions_none_when_missing(monkeypatch):
    monkeypatch.setattr(provenance, "VERSIONED_PACKAGES", ("tfbdl", "surely-not-an-installed-package-xyz"))
    v = package_versions()
    assert v["surely-not-an-installed-package-xyz"] is None


def test_git_commit_outside_a_repo_is_none(tmp_path):
    assert git_commit(tmp_path) is None
    assert git_commit(tmp_path / "missing" / "deeper") is None


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_git_commit_in_a_fresh_repo(tmp_path):
    def git(*args):
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=tmp_path, capture_output=True, text=True, check=True,
        ).stdout.strip()

    git("init", "-q")
    assert git_commit(tmp_path) is None  # no commit yet
    (tmp_path / "f.txt").write_text("1")
    git("add", "f.txt")
    git("commit", "-q", "-m", "one")
    sha = git("rev-parse", "HEAD")
    assert git_commit(tmp_path) == {"commit": sha, "dirty": False}
    (tmp_path / "untracked.txt").write_text("x")
    assert git_commit(tmp_path)["dirty"] is False  # untracked files do not count
    (tmp_path / "f.txt").write_text("2")
    assert git_commit(tmp_path / "f.txt") == {"commit": sha, "dirty": True}


# --------------------------------------------------------------------------- run directories


def test_rundir_creates_config_json(tmp_path):
    run = RunDir.open(tmp_path, "convnet_gp", "tiny-abc", {**CONFIG, "lr": np.float64(0.5)})
    assert run.path == tmp_path / "convnet_gp" / "tiny-abc"
    assert (run.experiment, run.run_id) == ("convnet_gp", "tiny-abc")
    assert run.config == {**CONFIG, "lr": 0.5}
    stored = json.loads((run.path / "config.json").read_text())
    assert set(stored) == {"config", "versions", "git", "created"}
    assert stored["config"] == {**CONFIG, "lr": 0.5}
    assert stored["versions"]["numpy"] == np.__version__
    assert stored["created"].startswith("20") and "T" in stored["created"]
    assert run.file("figures/a.png") == run.path / "figures" / "a.png"
    assert (run.path / "figures").is_dir()
    with pytest.raises(InvalidOptionError):
        run.file("../escape.txt")


def test_rundir_resume_same_config_keeps_rows(tmp_path):
    run = RunDir.open(tmp_path, "bdl", "r1", CONFIG)
    run.append_metrics_row({"epoch": 1, "loss": 0.5})
    created = json.loads(run.file("config.json").read_text())["created"]
    # Same config in another key order and with a tuple instead of a list: same run.
    again = RunDir.open(tmp_path, "bdl", "r1", dict(reversed(list({**CONFIG, "sizes": (10, 20)}.items()))))
    assert again.path == run.path
    assert json.loads(again.file("config.json").read_text())["created"] == created
    again.append_metrics_row({"loss": 0.25, "epoch": 2})
    assert again.read_metrics_rows() == [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.25}]


def test_rundir_differing_config_raises(tmp_path):
    RunDir.open(tmp_path, "bdl", "r1", CONFIG)
    changed = {**CONFIG, "seed": 1, "extra": True}
    del changed["scale"]
    with pytest.raises(RunDirectoryError, match=r"extra, scale, seed.*--no-resume"):
        RunDir.open(tmp_path, "bdl", "r1", changed)


def test_rundir_nested_config_difference_named(tmp_path):
    RunDir.open(tmp_path, "bdl", "r1", {"model": {"width": 8, "depth": 2}})
    with pytest.raises(RunDirectoryError, match=r"model\.width"):
        RunDir.open(tmp_path, "bdl", "r1", {"model": {"width": 16, "depth": 2}})


def test_rundir_no_resume_moves_old_dir_aside(tmp_path):
    run = RunDir.open(tmp_path, "bdl", "r1", CONFIG)
    run.append_metrics_row({"epoch": 1, "loss": 0.5})
    run.mark_done("epoch-1")
    fresh = RunDir.open(tmp_path, "bdl", "r1", {**CONFIG, "seed": 5}, resume=False)
    assert fresh.read_metrics_rows() == [] and fresh.done_keys() == []
    assert fresh.config["seed"] == 5
    names = _names(tmp_path / "bdl")
    assert len(names) == 2 and names[0] == "r1" and names[1].startswith("r1.old-")
    old = tmp_path / "bdl" / names[1]
    assert (old / "metrics.csv").read_text() == "epoch,loss\n1,0.5\n"
    assert json.loads((old / "config.json").read_text())["config"]["seed"] == 0


def test_rundir_existing_folder_without_config(tmp_path):
    (tmp_path / "bdl" / "r1").mkdir(parents=True)
    RunDir.open(tmp_path, "bdl", "r1", CONFIG)  # empty folder (crash before config.json): used
    (tmp_path / "bdl" / "r2").mkdir(parents=True)
    (tmp_path / "bdl" / "r2" / "stray.txt").write_text("?")
    with pytest.raises(RunDirectoryError, match="no config.json"):
        RunDir.open(tmp_path, "bdl", "r2", CONFIG)


@pytest.mark.parametrize("bad", ["", "..", ".", "a/b", "a b", "x;rm", "é"])
def test_rundir_bad_names_rejected(tmp_path, bad):
    with pytest.raises(InvalidOptionError, match="safe folder name"):
        RunDir.open(tmp_path, bad, "r1", CONFIG)
    with pytest.raises(InvalidOptionError, match="safe folder name"):
        RunDir.open(tmp_path, "exp", bad, CONFIG)
    assert list(tmp_path.iterdir()) == []


def test_metrics_rows_round_trip(tmp_path):
    run = RunDir.open(tmp_path, "e", "r", CONFIG)
    run.append_metrics_row({"epoch": 1, "acc": np.float32(0.75), "note": "warm, up", "lr": None})
    run.append_metrics_row({"epoch": 2, "acc": 0.8125, "note": "x", "lr": 1e-3})
    assert run.read_metrics_rows() == [
        {"epoch": 1, "acc": 0.75, "note": "warm, up", "lr": None},
        {"epoch": 2, "acc": 0.8125, "note": "x", "lr": 0.001},
    ]
    with pytest.raises(ShapeError, match="columns"):
        run.append_metrics_row({"epoch": 3, "acc": 0.9})
    assert len(run.read_metrics_rows()) == 2
    assert _names(run.path) == ["config.json", "metrics.csv"]
    assert run.read_metrics_rows("other.csv") == []


def test_metrics_append_is_atomic_when_killed(tmp_path, monkeypatch):
    run = RunDir.open(tmp_path, "e", "r", CONFIG)
    run.append_metrics_row({"epoch": 1})
    before = run.file("metrics.csv").read_bytes()

    def crash(*args):
        raise OSError("killed")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="killed"):
        run.append_metrics_row({"epoch": 2})
    monkeypatch.undo()
    assert run.file("metrics.csv").read_bytes() == before == b"epoch\n1\n"
    assert _names(run.path) == ["config.json", "metrics.csv"]


def test_json_metrics_and_summary(tmp_path):
    run = RunDir.open(tmp_path, "e", "r", CONFIG)
    run.write_metrics({"acc": np.float64(0.5)})
    run.write_json("extra/info.json", {"k": [1, 2]})
    run.finish("# Result\nacc 0.5")
    assert json.loads(run.file("metrics.json").read_text()) == {"acc": 0.5}
    assert json.loads(run.file("extra/info.json").read_text()) == {"k": [1, 2]}
    assert run.file("summary.md").read_text() == "# Result\nacc 0.5\n"
    assert run.is_complete


def test_progress_survives_reopen(tmp_path):
    run = RunDir.open(tmp_path, "e", "r", CONFIG)
    assert not run.is_done("block-0") and not run.is_complete
    run.mark_done("block-0", {"seconds": np.float64(1.5)})
    run.mark_done("block-1")
    again = RunDir.open(tmp_path, "e", "r", CONFIG)
    assert again.is_done("block-0") and again.is_done("block-1") and not again.is_done("block-2")
    assert again.done_keys() == ["block-0", "block-1"]
    assert json.loads(again.file("progress.json").read_text()) == {
        "block-0": {"seconds": 1.5},
        "block-1": None,
    }
    again.finish()
    assert RunDir.open(tmp_path, "e", "r", CONFIG).is_complete
    assert not (again.path / "summary.md").exists()


# --------------------------------------------------------------------------- HDF5


def test_save_load_h5_round_trip(tmp_path):
    arrays = {
        "K": np.arange(6, dtype=np.float64).reshape(2, 3),
        "labels": np.array([3, 1], dtype=np.int32),
        "group/x": np.array([0.5], dtype=np.float32),
    }
    attrs = {"name": "conv", "depth": 3, "var": 1.25, "sizes": [2, 3], "cfg": {"a": [1, "b"]}, "none": None}
    path = tmp_path / "k.h5"
    save_h5(path, arrays, attrs)
    assert _names(tmp_path) == ["k.h5"]
    got, got_attrs = load_h5(path)
    assert set(got) == set(arrays)
    for key, value in arrays.items():
        np.testing.assert_array_equal(got[key], value)
        assert got[key].dtype == value.dtype
    sizes = got_attrs.pop("sizes")
    np.testing.assert_array_equal(sizes, [2, 3])
    assert got_attrs == {"name": "conv", "depth": 3, "var": 1.25, "cfg": {"a": [1, "b"]}, "none": None}


def test_load_h5_bad_file(tmp_path):
    (tmp_path / "bad.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(TfbdlError, match="not a readable HDF5"):
        load_h5(tmp_path / "bad.h5")
    with pytest.raises(FileNotFoundError):
        load_h5(tmp_path / "missing.h5")


def test_record_data_adds_provenance_without_touching_the_resumable_config(tmp_path):
    run = RunDir.open(tmp_path, "exp", "r1", {"a": 1})
    used = [{"requested": "cifar10", "dataset": "fashion_mnist", "source": "embedded subset"}]
    run.record_data(used)
    stored = json.loads((run.path / "config.json").read_text())
    assert stored["data"] == used and stored["config"] == {"a": 1}
    assert RunDir.open(tmp_path, "exp", "r1", {"a": 1}).path == run.path  # still resumable
