"""The convnet-gp commands end to end on a few MNIST-sample images: sharded kernels, merge,
classify, resume, and one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SMALL = ["--n-train", "60", "--n-test", "40", "--block", "20", "--scale", "tiny"]


def _tfbdl(*args, data_dir):
    return subprocess.run([sys.executable, "-m", "tfbdl.cli", *args, *(("--data-dir", str(data_dir)) if data_dir else ())],
                          capture_output=True, text=True, cwd=REPO, timeout=600)


def _run_dir(out: Path) -> Path:
    (run_dir,) = [p for p in (out / "convnet-gp").iterdir() if p.is_dir()]
    return run_dir


def test_sharded_kernels_merge_classify_and_equal_the_direct_kernel(shared_data_dir, tmp_path):
    out = tmp_path / "runs"
    for shard in ("0/2", "1/2"):
        result = _tfbdl("convnet-gp", "save-kernels", *SMALL, "--shard", shard, "--out", str(out), data_dir=shared_data_dir)
        assert result.returncode == 0, result.stderr
    run_dir = _run_dir(out)
    assert sorted(p.name for p in run_dir.glob("kernels.shard-*.h5")) == ["kernels.shard-0-of-2.h5", "kernels.shard-1-of-2.h5"]
    merged = subprocess.run([sys.executable, "-m", "tfbdl.cli", "convnet-gp", "merge-kernels", str(run_dir)],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert merged.returncode == 0, merged.stderr

    # The merged matrix equals the kernel computed directly on the same images.
    from tfbdl.data import load_dataset
    from tfbdl.kernels import paper_kernel
    from tfbdl.kernels.blocks import read_kernels

    with np.load(run_dir / "data.npz") as data:
        train_idx, y_train = data["train_indices"], data["y_train"]
    images, labels = load_dataset("mnist", "train", data_dir=shared_data_dir)
    np.testing.assert_array_equal(labels[train_idx], y_train)
    x = images[train_idx].reshape(len(train_idx), -1) / 255.0
    kernels = read_kernels(run_dir / "kernels.h5")
    np.testing.assert_allclose(kernels["Kxx"], paper_kernel("convnet_gp", normalise=False).K(x).numpy(), rtol=1e-10)
    np.testing.assert_allclose(kernels["Kx_diag"], np.diag(kernels["Kxx"]), rtol=1e-12)

    result = subprocess.run([sys.executable, "-m", "tfbdl.cli", "convnet-gp", "classify", "--kernels",
                             str(run_dir / "kernels.h5")], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    saved = json.loads((run_dir / "classification.json").read_text())
    assert saved["n_train"] == 60 and saved["n_test"] == 40
    assert f"test accuracy {saved['test_accuracy']:.4f}" in result.stdout
    assert saved["test_accuracy"] >= 0.5  # 60 digits already classify most test digits (chance: 0.1)


def test_save_kernels_resumes_and_reports_progress(shared_data_dir, tmp_path):
    out = tmp_path / "runs"
    first = _tfbdl("convnet-gp", "save-kernels", *SMALL, "--out", str(out), data_dir=shared_data_dir)
    assert first.returncode == 0, first.stderr
    path = _run_dir(out) / "kernels.h5"
    with h5py.File(path, "r") as f:
        before = {name: f[name][()] for name in ("Kxx", "Kxt")}
    again = _tfbdl("convnet-gp", "save-kernels", *SMALL, "--out", str(out), data_dir=shared_data_dir)
    assert again.returncode == 0 and "tasks done" in again.stdout
    with h5py.File(path, "r") as f:
        for name, values in before.items():
            np.testing.assert_array_equal(f[name][()], values)
    changed = _tfbdl("convnet-gp", "save-kernels", *SMALL[:-2], "--scale", "tiny", "--seed", "0", "--kernel",
                     "residual_cnn_gp", "--out", str(out), data_dir=shared_data_dir)
    assert changed.returncode == 0  # another kernel is another run directory, not a clash
    assert len([p for p in (out / "convnet-gp").iterdir() if p.is_dir()]) == 2


@pytest.mark.parametrize("args, needle", [
    (["convnet-gp", "save-kernels", "--shard", "3/2"], "shard"),
    (["convnet-gp", "save-kernels", "--n-train", "0"], "--n-train must be >= 1"),
    (["convnet-gp", "save-kernels", "--kernel", "alexnet"], "Invalid value for '--kernel'"),
])
def test_convnet_gp_user_errors_are_one_line(args, needle, tmp_path):
    result = _tfbdl(*args, "--out", str(tmp_path), data_dir=None)
    assert result.returncode != 0
    assert needle in result.stderr and "Traceback" not in result.stderr


def test_classify_refuses_an_incomplete_file(shared_data_dir, tmp_path):
    out = tmp_path / "runs"
    assert _tfbdl("convnet-gp", "save-kernels", *SMALL, "--shard", "0/2", "--out", str(out),
                  data_dir=shared_data_dir).returncode == 0
    shard_file = next(_run_dir(out).glob("kernels.shard-0-of-2.h5"))
    result = subprocess.run([sys.executable, "-m", "tfbdl.cli", "convnet-gp", "classify", "--kernels",
                             str(shard_file)], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "merge" in result.stderr


def test_search_writes_a_resumable_csv_and_improves_the_marginal_likelihood(shared_data_dir, tmp_path):
    out = tmp_path / "runs"
    args = ("convnet-gp", "search", "--scale", "tiny", "--trials", "2", "--n-train", "20", "--n-val", "20",
            "--ml-steps", "3", "--out", str(out))
    result = _tfbdl(*args, data_dir=shared_data_dir)
    assert result.returncode == 0, result.stderr
    (run_dir,) = (out / "convnet-gp-search").iterdir()
    rows = (run_dir / "search.csv").read_text().splitlines()
    assert rows[0].split(",")[:1] == ["trial"] and len(rows) == 3
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["best"]["score"] <= 1.0
    ml = metrics["marginal_likelihood"]
    assert ml["lml_after"] > ml["lml_before"]
    assert (run_dir / "search.png").is_file() and "| rank | depth |" in (run_dir / "summary.md").read_text()
