"""Kernel shards computed by two processes at the same time, into one run folder, merge to exactly
the matrix one process computes (``tfbdl convnet-gp save-kernels --shard i/n`` then
``merge-kernels``), as on a cluster with one shard per machine and a shared output folder."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

pytestmark = [pytest.mark.slow, pytest.mark.needs_data]

REPO = Path(__file__).resolve().parents[2]
SMALL = ["--n-train", "16", "--n-test", "8", "--block", "8", "--scale", "tiny"]  # 8 tasks, 4 per shard
MATRICES = ("Kxx", "Kxt", "Kx_diag", "Kt_diag")


def _env() -> dict:
    """One CPU thread per process, the same in every run, so that blocks are computed alike."""
    return dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2", OMP_NUM_THREADS="1",
                TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1",
                PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))


def _save_kernels(out: Path, data_dir: Path, log: Path, *shard: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "tfbdl.cli", "convnet-gp", "save-kernels", *SMALL, *shard, "--out", str(out),
            "--data-dir", str(data_dir)]
    with open(log, "w") as handle:
        return subprocess.Popen(args, env=_env(), cwd=REPO, stdout=handle, stderr=subprocess.STDOUT)


def _run_dir(out: Path) -> Path:
    (run_dir,) = [p for p in (out / "convnet-gp").iterdir() if p.is_dir()]
    return run_dir


def _datasets(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {name: f[name][()] for name in MATRICES}


def test_concurrent_shards_merge_to_the_one_process_matrix(shared_data_dir, tmp_path):
    sharded, single = tmp_path / "sharded", tmp_path / "single"
    logs = [tmp_path / name for name in ("shard0.log", "shard1.log", "single.log")]
    procs = [_save_kernels(sharded, shared_data_dir, logs[0], "--shard", "0/2"),
             _save_kernels(sharded, shared_data_dir, logs[1], "--shard", "1/2"),
             _save_kernels(single, shared_data_dir, logs[2])]
    try:
        assert procs[0].poll() is None and procs[1].poll() is None  # both shards run at once
        for proc, log in zip(procs, logs):
            assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()

    run_dir = _run_dir(sharded)
    assert run_dir.name == _run_dir(single).name  # the shard is not part of the run's config
    assert sorted(p.name for p in run_dir.glob("kernels.shard-*.h5")) == ["kernels.shard-0-of-2.h5",
                                                                           "kernels.shard-1-of-2.h5"]
    assert not (run_dir / "kernels.h5").exists()
    # The two writers of config.json and data.npz left whole files, the same as the one process's.
    assert json.loads((run_dir / "config.json").read_text())["config"] == \
        json.loads((_run_dir(single) / "config.json").read_text())["config"]
    with np.load(run_dir / "data.npz") as a, np.load(_run_dir(single) / "data.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name])
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".")]  # no temp file left behind

    merged = subprocess.run([sys.executable, "-m", "tfbdl.cli", "convnet-gp", "merge-kernels", str(run_dir)],
                            env=_env(), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert merged.returncode == 0, merged.stderr
    assert "merged 2 shard(s)" in merged.stdout

    got, want = _datasets(run_dir / "kernels.h5"), _datasets(_run_dir(single) / "kernels.h5")
    assert got["Kxx"].shape == (16, 16) and got["Kxt"].shape == (16, 8)
    for name in MATRICES:
        assert got[name].dtype == want[name].dtype == np.float64
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)  # bitwise: same blocks, same code

    from tfbdl.kernels.blocks import read_kernels

    kernels = read_kernels(run_dir / "kernels.h5")
    assert np.all(np.isfinite(kernels["Kxx"])) and np.all(kernels["Kx_diag"] > 0)
    np.testing.assert_allclose(kernels["Kx_diag"], np.diag(kernels["Kxx"]), rtol=1e-12)
