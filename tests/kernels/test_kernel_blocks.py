"""Tests of tfbdl.kernels.blocks: task plans, shards, resumable block-wise kernel files."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

from tfbdl.errors import DataFormatError, InvalidOptionError, RunDirectoryError, ShapeError
from tfbdl.kernels import blocks
from tfbdl.kernels.blocks import (
    IncompleteKernelsError,
    Task,
    callables_from_gpflow,
    compute_kernel_file,
    kernel_file_status,
    merge_kernel_files,
    parse_shard,
    plan_tasks,
    read_kernels,
    shard_path,
    shard_tasks,
)

N, NT, D, BLOCK = 37, 11, 5, 8  # ragged blocks: 37 = 4*8 + 5, 11 = 8 + 3
CONFIG = {"kernel": "rbf", "lengthscale": 1.5}
ALL = ("Kxx", "Kxt", "Kx_diag", "Kt_diag", "task_done")

# A cheap deterministic kernel without BLAS (elementwise ops and a reduction over the last axis),
# so each entry is bitwise the same whatever block it is computed in, in any process.
KERNEL_SOURCE = """
import numpy as np

def rbf_pair(X1, X2=None):
    X2 = X1 if X2 is None else X2
    sq = ((X1[:, None, :] - X2[None, :, :]) ** 2).sum(-1)
    return np.exp(-0.5 * sq / 1.5**2)

def rbf_diag(X):
    return np.ones(len(X), dtype=X.dtype)
"""
_ns: dict = {}
exec(KERNEL_SOURCE, _ns)
rbf_pair, rbf_diag = _ns["rbf_pair"], _ns["rbf_diag"]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((N, D)), rng.standard_normal((NT, D))


def _compute(path, X, Xt, **kw):
    kw.setdefault("block", BLOCK)
    kw.setdefault("config", CONFIG)
    kw.setdefault("progress", False)
    return compute_kernel_file(path, kw.pop("pair_fn", rbf_pair), kw.pop("diag_fn", rbf_diag), X, Xt, **kw)


def _raw(path):
    with h5py.File(path, "r") as f:
        return {name: f[name][()] for name in ALL}


def _assert_bitwise(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert np.array_equal(a[name], b[name]), name


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """An uninterrupted, unsharded run: its path and raw datasets."""
    path = _compute(tmp_path_factory.mktemp("ref") / "k.h5", *data)
    return path, _raw(path)


# --------------------------------------------------------------------------- plans and shards


@pytest.mark.parametrize("n, nt, block", [(37, 11, 8), (8, 8, 8), (5, 3, 16), (37, 0, 8), (1, 1, 1)])
def test_plan_covers_each_entry_exactly_once(n, nt, block):
    tasks = plan_tasks(n, nt, block)
    assert tasks == plan_tasks(n, nt, block)  # deterministic
    count = {"Kxx": np.zeros((n, n), int), "Kxt": np.zeros((n, nt), int),
             "Kx_diag": np.zeros(n, int), "Kt_diag": np.zeros(nt, int)}
    for t in tasks:
        assert isinstance(t, Task) and all(s > 0 for s in t.shape)
        if t.matrix == "Kxx":
            assert t.rows[0] <= t.cols[0]
        count[t.matrix][t.selection] += 1
    # every entry on and above the diagonal once; below it, only the rest of the diagonal blocks
    idx = np.arange(n) // block
    expected = np.triu(np.ones((n, n), bool)) | (idx[:, None] == idx[None, :])
    assert np.array_equal(count["Kxx"], expected.astype(int))
    for name in ("Kxt", "Kx_diag", "Kt_diag"):
        assert (count[name] == 1).all(), name


@pytest.mark.parametrize("count", [1, 2, 3, 7, 40])
def test_sharded_plans_are_disjoint_and_cover_the_plan(count):
    tasks = plan_tasks(N, NT, BLOCK)
    shares = [shard_tasks(tasks, i, count) for i in range(count)]
    assert sorted(map(str, sum(shares, []))) == sorted(map(str, tasks))
    assert sum(len(s) for s in shares) == len(tasks)
    assert shares == [shard_tasks(tasks, i, count) for i in range(count)]


@pytest.mark.parametrize("text, expected", [("0/1", (0, 1)), ("3/4", (3, 4)), (" 1 / 2 ", (1, 2))])
def test_parse_shard(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text, says", [("3/2", "0..1"), ("2/2", "0..1"), ("0/0", "at least 1"),
                                        ("a/b", "I/N"), ("1", "I/N"), ("-1/2", "I/N"), ("", "I/N"),
                                        ("1/2/3", "I/N")])
def test_parse_shard_errors(text, says):
    with pytest.raises(InvalidOptionError, match=r"numbered from 0|at least 1") as e:
        parse_shard(text)
    assert says in str(e.value)


def test_shard_tasks_rejects_bad_index():
    with pytest.raises(InvalidOptionError, match=r"0\.\.2"):
        shard_tasks(plan_tasks(4, 4, 2), 3, 3)


def test_shard_path_naming(tmp_path):
    assert shard_path(tmp_path / "k.h5", 0, 1) == tmp_path / "k.h5"
    assert shard_path(tmp_path / "k.h5", 1, 4) == tmp_path / "k.shard-1-of-4.h5"
    assert shard_path(tmp_path / "kernels", 0, 2) == tmp_path / "kernels.shard-0-of-2.h5"


# --------------------------------------------------------------------------- values


def test_blockwise_equals_one_shot(data, reference):
    X, Xt = data
    path, raw = reference
    K = read_kernels(path)
    assert K["config"] == CONFIG
    assert np.array_equal(K["Kxx"], rbf_pair(X, None))
    assert np.array_equal(K["Kxx"], K["Kxx"].T)
    assert np.array_equal(K["Kxt"], rbf_pair(X, Xt))
    assert np.array_equal(K["Kx_diag"], np.diag(K["Kxx"]))
    assert np.array_equal(K["Kt_diag"], np.ones(NT))
    assert K["Kxx"].dtype == np.float64
    assert raw["task_done"].all()
    assert not np.tril(raw["Kxx"], -BLOCK).any()  # the lower triangle is never computed
    status = kernel_file_status(path)
    assert status["complete"] and status["done"] == status["total"] == len(plan_tasks(N, NT, BLOCK))
    assert status["by_matrix"]["Kxx"] == (15, 15)


def test_file_layout_is_format_version_1(reference):
    """The layout kernel files have always had, so files written before stay readable."""
    path, _ = reference
    with h5py.File(path, "r") as f:
        assert list(f) == sorted(ALL)
        assert sorted(f.attrs) == sorted(["format", "format_version", "n_train", "n_test", "block", "store_dtype",
                                          "config", "inputs_sha256", "shard_index", "shard_count", "n_tasks"])
        assert f.attrs["format"] == "tfbdl-kernel-blocks" and f.attrs["format_version"] == 1
        assert f.attrs["n_tasks"] == len(plan_tasks(N, NT, BLOCK)) and f.attrs["config"] == '{"kernel":"rbf","lengthscale":1.5}'
        assert f["Kxx"].chunks == (BLOCK, BLOCK) and f["Kxt"].chunks == (BLOCK, BLOCK) and f["Kx_diag"].chunks == (BLOCK,)
        assert f["task_done"].dtype == np.uint8 and f["task_done"].shape == (len(plan_tasks(N, NT, BLOCK)),)
        for name in ALL:
            assert f[name].id.get_create_plist().get_alloc_time() == h5py.h5d.ALLOC_TIME_EARLY, name


def test_gpflow_kernel_through_callables(tmp_path, data):
    import gpflow

    X, Xt = data
    k = gpflow.kernels.SquaredExponential(variance=2.0, lengthscales=1.3)
    pair_fn, diag_fn = callables_from_gpflow(k)
    path = _compute(tmp_path / "se.h5", X, Xt, pair_fn=pair_fn, diag_fn=diag_fn, config={"kernel": "se"})
    K = read_kernels(path)
    np.testing.assert_allclose(K["Kxx"], k.K(X).numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(K["Kxt"], k.K(X, Xt).numpy(), rtol=1e-12, atol=1e-14)
    assert np.array_equal(K["Kxx"], K["Kxx"].T)
    np.testing.assert_allclose(K["Kx_diag"], np.diag(K["Kxx"]), rtol=1e-12)
    np.testing.assert_allclose(K["Kt_diag"], 2.0)


def test_float32_inputs_and_store_dtype(tmp_path, data):
    X, Xt = (a.astype(np.float32) for a in data)
    path = _compute(tmp_path / "k32.h5", X, Xt, store_dtype="float32")
    K = read_kernels(path, names=["Kxx", "Kx_diag"])
    assert set(K) == {"Kxx", "Kx_diag", "config"}
    assert K["Kxx"].dtype == np.float32
    assert np.array_equal(K["Kxx"], rbf_pair(X, None).astype(np.float32))


def test_no_test_points(tmp_path, data):
    X, _ = data
    path = _compute(tmp_path / "train_only.h5", X, np.zeros((0, D)))
    K = read_kernels(path)
    assert K["Kxt"].shape == (N, 0) and K["Kt_diag"].shape == (0,)
    assert np.array_equal(K["Kxx"], rbf_pair(X, None))


def test_devices_spread_work_over_threads(tmp_path, data, reference):
    path = _compute(tmp_path / "dev.h5", *data, devices=["/CPU:0", "/CPU:0"])
    _assert_bitwise(_raw(path), reference[1])


def test_progress_bar_on_stderr(tmp_path, data, capsys):
    _compute(tmp_path / "p.h5", *data, progress=True)
    assert "kernel blocks" in capsys.readouterr().err


def test_wrong_block_shape_is_refused_and_not_marked(tmp_path, data):
    path = tmp_path / "bad.h5"
    with pytest.raises(ShapeError, match=r"pair_fn returned shape \(8, 7\)"):
        _compute(path, *data, pair_fn=lambda a, b=None: np.zeros((len(a), 7)))
    assert kernel_file_status(path)["done"] == 0


# --------------------------------------------------------------------------- resuming


def test_resume_after_exception_is_bitwise_identical(tmp_path, data, reference):
    calls = {"n": 0}

    def flaky(X1, X2=None):
        calls["n"] += 1
        if calls["n"] > 6:
            raise RuntimeError("interrupted")
        return rbf_pair(X1, X2)

    path = tmp_path / "k.h5"
    with pytest.raises(RuntimeError, match="interrupted"):
        _compute(path, *data, pair_fn=flaky)
    status = kernel_file_status(path)
    assert status["done"] == 6 and not status["complete"]
    with pytest.raises(IncompleteKernelsError, match=r"missing.*rerun the same command"):
        read_kernels(path)
    counted = []
    _compute(path, *data, pair_fn=lambda a, b=None: counted.append(1) or rbf_pair(a, b))
    assert len(counted) == 15 + 10 - 6  # only the blocks not done before
    _assert_bitwise(_raw(path), reference[1])


CHILD = """
import importlib.util, sys, time
import numpy as np
spec = importlib.util.spec_from_file_location("kernel_blocks_child", {module!r})
blocks = importlib.util.module_from_spec(spec)  # not via tfbdl.kernels, whose __init__ loads TF
sys.modules[spec.name] = blocks
spec.loader.exec_module(blocks)
{kernel}
def slow_pair(X1, X2=None):
    time.sleep(0.2)
    return rbf_pair(X1, X2)
X, Xt = np.load({x!r}), np.load({xt!r})
blocks.compute_kernel_file({path!r}, slow_pair, rbf_diag, X, Xt, block={block}, config={config!r},
                           progress=False)
"""


def test_resume_after_sigkill_is_bitwise_identical(tmp_path, data, reference):
    X, Xt = data
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "xt.npy", Xt)
    path = tmp_path / "k.h5"
    script = CHILD.format(module=blocks.__file__, kernel=textwrap.dedent(KERNEL_SOURCE), x=str(tmp_path / "x.npy"),
                          xt=str(tmp_path / "xt.npy"), path=str(path), block=BLOCK, config=CONFIG)
    child = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while kernel_file_status(path)["done"] < 1:
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "the child wrote no block in 30 s"
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    status = kernel_file_status(path)
    assert 1 <= status["done"] < status["total"]
    _compute(path, X, Xt)
    _assert_bitwise(_raw(path), reference[1])


@pytest.mark.parametrize("change, says", [
    ("data", "input data"), ("config", "kernel config"), ("block", "block size"), ("dtype", "store_dtype"),
])
def test_resume_with_other_inputs_is_refused(tmp_path, data, change, says):
    X, Xt = data
    path = tmp_path / "k.h5"
    with pytest.raises(RuntimeError):
        _compute(path, X, Xt, pair_fn=lambda a, b=None: (_ for _ in ()).throw(RuntimeError("stop")))
    kw = {}
    if change == "data":
        X = X.copy()
        X[3, 2] += 1e-9
    elif change == "config":
        kw["config"] = {**CONFIG, "lengthscale": 2.0}
    elif change == "block":
        kw["block"] = 16
    else:
        kw["store_dtype"] = "float32"
    with pytest.raises(RunDirectoryError, match=rf"different {says}.*another path or delete the file"):
        _compute(path, X, Xt, **kw)


def test_not_a_kernel_file_is_refused(tmp_path, data):
    path = tmp_path / "k.h5"
    path.write_bytes(b"not hdf5")
    with pytest.raises(DataFormatError, match="delete it"):
        _compute(path, *data)
    with h5py.File(path, "w") as f:
        f["x"] = 1
    with pytest.raises(DataFormatError, match="not a tfbdl kernel file"):
        _compute(path, *data)


# --------------------------------------------------------------------------- shards and merging


def test_two_shards_merged_equal_the_unsharded_run(tmp_path, data, reference):
    base = tmp_path / "k.h5"
    paths = [_compute(base, *data, shard=(0, 2)), _compute(base, *data, shard="1/2")]
    assert paths == [tmp_path / "k.shard-0-of-2.h5", tmp_path / "k.shard-1-of-2.h5"]
    for i, p in enumerate(paths):
        status = kernel_file_status(p)
        assert status["complete"] and status["shard"] == (i, 2) and status["total"] == 16
        with pytest.raises(IncompleteKernelsError, match=f"shard {i} of 2.*merge"):
            read_kernels(p)
    out = merge_kernel_files(paths, tmp_path / "merged.h5")
    _assert_bitwise(_raw(out), reference[1])
    assert sorted(q.name for q in tmp_path.iterdir()) == ["k.shard-0-of-2.h5", "k.shard-1-of-2.h5", "merged.h5"]


def test_merge_with_a_missing_shard_names_the_missing_tasks(tmp_path, data):
    base = tmp_path / "k.h5"
    first = _compute(base, *data, shard=(0, 3))
    with pytest.raises(IncompleteKernelsError) as e:
        merge_kernel_files([first], tmp_path / "merged.h5")
    message = str(e.value)
    assert "21 of 32 tasks" in message and "Kxx[0:8, 8:16]" in message and "shard(s) 1/3, 2/3" in message
    assert not (tmp_path / "merged.h5").exists()


def test_merge_refuses_shards_of_different_runs(tmp_path, data):
    X, Xt = data
    a = _compute(tmp_path / "a.h5", X, Xt, shard=(0, 2))
    b = _compute(tmp_path / "b.h5", X, Xt, shard=(1, 2), config={"kernel": "other"})
    with pytest.raises(RunDirectoryError, match="kernel config"):
        merge_kernel_files([a, b], tmp_path / "merged.h5")


def test_missing_file(tmp_path):
    assert kernel_file_status(tmp_path / "none.h5") == {
        "path": str(tmp_path / "none.h5"), "exists": False, "done": 0, "total": None, "complete": False}
    with pytest.raises(RunDirectoryError, match="does not exist"):
        read_kernels(tmp_path / "none.h5")
