"""tfbdl linearized end to end at tiny scale: the NTK eigendecomposition, eigenfunction and NAD tasks,
the pretrained comparison, CIFAR2, figures, resuming, a reused NTK run, and one-line option errors."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]

FIGURES = ("ntk_spectrum.png", "eigenfunction_accuracy.png", "ntk_alignment.png", "nads.png", "nad_spectrum.png",
           "nad_accuracy.png", "pretrained_ntk_comparison.png", "cifar2_curves.png")
STAGES = ("compute-ntk", "train-ntk", "compute-nads", "train-nads", "pretrained-ntk-comparison", "train-cifar2")


def _tfbdl(*args):
    return subprocess.run([sys.executable, "-m", "tfbdl.cli", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=900)


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def _mtimes(folder: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def _check_eigen(run_dir: Path):
    """Orthonormal eigenvectors, descending non-negative eigenvalues that rebuild the stored Gram matrix."""
    from tfbdl.ntk.eigen import load_eigen
    from tfbdl.ntk.store import read_ntk_file

    eig = load_eigen(run_dir / "compute-ntk" / "eigen.h5")
    values, vectors = eig.eigenvalues, eig.eigenvectors
    assert vectors.shape == (128, 128) and eig.inputs.shape == (128, 32, 32, 1)  # 96 + 32 padded images
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(128), atol=1e-8)
    assert np.all(np.diff(values) <= 0) and values[0] > 0 and values[-1] > -1e-6 * values[0]
    gram, _ = read_ntk_file(run_dir / "compute-ntk" / "ntk.h5")
    np.testing.assert_allclose((vectors * values) @ vectors.T, gram, atol=1e-6 * values[0])
    assert eig.attrs["n_train"] == 96 and len(eig.weights) == 10  # 5 layers, kernel and bias each
    return eig


def _check_eigen_tasks(run_dir: Path, eig) -> None:
    tasks = _read(run_dir / "train-ntk" / "metrics.json")["tasks"]
    assert [t["label_idx"] for t in tasks] == [1, 10]
    for row in tasks:
        k = row["label_idx"]
        task = _read(run_dir / "train-ntk" / "tasks" / f"k-{k:05d}" / "metrics.json")
        with np.load(run_dir / "train-ntk" / "tasks" / f"k-{k:05d}" / "labels.npz") as labels:
            y = np.concatenate([labels["train"], labels["test"]])
        np.testing.assert_array_equal(y, (eig.eigenvectors[:, k] > 0).astype(np.int64))  # sign(phi_k)
        assert row["eigenvalue"] == pytest.approx(eig.eigenvalues[k])
        # The linearization at its expansion point is the network itself.
        assert task["init"]["max_abs_logit_difference"] < 1e-6
        assert task["init"]["linear_test_accuracy"] == task["init"]["nonlinear_test_accuracy"]
        for name in ("linear", "nonlinear"):
            curve = task[name]["test_curve"]
            assert len(curve) == 3 and all(0.0 <= a <= 1.0 for a in curve)
            assert curve[-1] == row[f"{name}_test_accuracy"] and task[name]["distance_to_init"] > 0
        assert -1.0 <= row["alignment_init"] <= 1.0 and -1.0 <= row["alignment_final"] <= 1.0
        # With every image in the alignment, v_k' Θ_0 v_k is λ_k: the energies of the final NTK are stored.
        assert len(task["alignment"]["energy_final"]) == 128


def _check_nads(run_dir: Path) -> None:
    from tfbdl.ntk.eigen import load_eigen

    nads = load_eigen(run_dir / "compute-nads" / "nads.h5")
    assert nads.eigenvectors.shape == (256, 256) and list(nads.attrs["input_shape"]) == [16, 16, 1]
    np.testing.assert_allclose(nads.eigenvectors.T @ nads.eigenvectors, np.eye(256), atol=1e-8)
    assert np.all(np.diff(nads.eigenvalues) <= 0) and nads.eigenvalues[0] > 0
    rows = _read(run_dir / "train-nads" / "metrics.json")["tasks"]
    assert [r["nad_idx"] for r in rows] == [0, 100]
    for r in rows:
        assert 0.0 <= r["linear_test_accuracy"] <= 1.0 and 0.0 <= r["nonlinear_test_accuracy"] <= 1.0
        assert r["init_max_abs_logit_difference"] < 1e-6


def _check_pretrained_and_cifar2(run_dir: Path, eig) -> None:
    pre = _read(run_dir / "pretrained-ntk-comparison" / "metrics.json")
    assert set(pre["curves"]) == {"linearized at initialisation", "linearized after pre-training on the task",
                                  "linearized after pre-training on the classes", "non-linear network"}
    test_labels = (eig.eigenvectors[96:, pre["label_idx"]] > 0).astype(np.int64)
    for name, curve in pre["curves"].items():
        assert len(curve) == 3 and all(0.0 <= a <= 1.0 for a in curve)
        if name.startswith("linearized"):  # without offset they output 0 at first: every image is class 0
            assert curve[0] == pytest.approx(np.mean(test_labels == 0))
    cifar2 = _read(run_dir / "train-cifar2" / "metrics.json")
    assert cifar2["n_train"] == 128 and cifar2["n_test"] == 64 and 0.4 <= cifar2["positive_fraction"] <= 0.6
    for name in ("linear", "nonlinear"):
        assert 0.0 <= cifar2[name]["test_accuracy"] <= 1.0 and 0.0 <= cifar2[name]["train_accuracy"] <= 1.0
    assert cifar2["init"]["max_abs_logit_difference"] < 1e-6


def test_tiny_run_end_to_end_then_resumes_without_recomputing(shared_data_dir, tmp_path):
    args = ("linearized", "run", "--scale", "tiny", "--out", str(tmp_path), "--data-dir", str(shared_data_dir))
    first = _tfbdl(*args)
    assert first.returncode == 0, first.stderr
    (run_dir,) = (tmp_path / "linearized").iterdir()
    eig = _check_eigen(run_dir)
    _check_eigen_tasks(run_dir, eig)
    _check_nads(run_dir)
    _check_pretrained_and_cifar2(run_dir, eig)
    for figure in FIGURES:
        assert (run_dir / figure).stat().st_size > 5000
    summary = (run_dir / "summary.md").read_text()
    for needle in ("Eigenfunction tasks", "| k | λ_k", "NAD tasks", "Pretrained NTK comparison", "CIFAR2",
                   "cifar10/train → fashion_mnist/train"):
        assert needle in summary
    assert set(_read(run_dir / "metrics.json")) == set(STAGES)

    # A finished run is not touched again.
    stamps = _mtimes(run_dir)
    again = _tfbdl(*args)
    assert again.returncode == 0 and _mtimes(run_dir) == stamps

    # Parts that are finished are skipped: only the top summary is written again.
    (run_dir / "progress.json").unlink()
    (run_dir / "summary.md").unlink()
    parts = {p: t for p, t in stamps.items() if p.parent != run_dir}
    resumed = _tfbdl(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert "== " not in resumed.stderr and "epoch" not in resumed.stderr
    assert {p: t for p, t in _mtimes(run_dir).items() if p in parts} == parts
    assert (run_dir / "summary.md").read_text() == summary

    # train-ntk on the NTK of that run: another index, the same eigenvectors.
    reuse = _tfbdl("linearized", "train-ntk", "--scale", "tiny", "--ntk-run", str(run_dir), "--label-idx", "3",
                   "--out", str(tmp_path / "reuse"))
    assert reuse.returncode == 0, reuse.stderr
    (reuse_dir,) = (tmp_path / "reuse" / "linearized-train-ntk").iterdir()
    assert not (reuse_dir / "compute-ntk").exists()
    with np.load(reuse_dir / "tasks" / "k-00003" / "labels.npz") as labels:
        y = np.concatenate([labels["train"], labels["test"]])
    np.testing.assert_array_equal(y, (eig.eigenvectors[:, 3] > 0).astype(np.int64))
    assert "| 3 |" in (reuse_dir / "summary.md").read_text()

    out_of_range = _tfbdl("linearized", "train-ntk", "--scale", "tiny", "--ntk-run", str(run_dir), "--label-idx",
                          "128", "--out", str(tmp_path / "bad"))
    assert out_of_range.returncode == 1
    assert "--label-idx 128 is out of range: there are 128 eigenvectors" in out_of_range.stderr


@pytest.mark.parametrize("args, needle", [
    (["compute-ntk", "--widths", "6,16"], "--widths: lenet needs 4 widths"),
    (["compute-ntk", "--widths", "6,x,1,1"], "must be positive integers separated by commas"),
    (["compute-ntk", "--model", "resnet18", "--activation", "gelu"], "resnet18 has ReLU activations only"),
    (["compute-ntk", "--scale", "tiny", "--num-eigvecs", "500"], "--num-eigvecs 500 must be between 1 and the 128"),
    (["run", "--scale", "tiny", "--label-idx", "500"], "--label-idx 500 is out of range: there are 128 eigenvectors"),
    (["run", "--scale", "tiny", "--nad-idx", "256"], "--nad-idx 256 is out of range: there are 256 NADs"),
    (["compute-nads", "--side", "8"], "--side 8 is too small"),
    (["train-cifar2", "--pair", "3", "3"], "--pair needs two different classes"),
    (["train-ntk", "--ntk-run", "."], "is not a finished `tfbdl linearized compute-ntk` run"),
])
def test_option_errors_are_one_line(args, needle, tmp_path):
    result = _tfbdl("linearized", *args, "--out", str(tmp_path / "out"))
    assert result.returncode == 1, result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len([line for line in result.stderr.splitlines() if line.startswith("Error:")]) == 1
    assert not (tmp_path / "out").exists()  # refused before any run directory is made


def test_registered_for_run_all():
    from tfbdl.cli.registry import by_name

    (experiment,) = by_name(["linearized"])
    assert experiment.command == ("linearized", "run")


def test_inputs_are_scaled_padded_and_standardised_like_the_reference():
    from tfbdl.cli.linearized.data import halves, standardize_like_train, to_inputs

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(6, 28, 28, 1), dtype=np.uint8)
    x = to_inputs(images, "cifar10")  # a 28x28 stand-in padded to CIFAR-10's 32x32
    assert x.shape == (6, 32, 32, 1) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, 2:30, 2:30], images.astype(np.float32) / 255.0)
    assert not x[:, :2].any() and not x[:, 30:].any() and not x[:, :, :2].any() and not x[:, :, 30:].any()
    assert to_inputs(images, "mnist").shape == (6, 28, 28, 1)
    # The reference's normalize_data: the training images' per-channel mean and std, in float64.
    train, test = x[:4], x[4:]
    mean = train.mean(axis=(0, 1, 2), keepdims=True, dtype=np.float64)
    std = train.std(axis=(0, 1, 2), keepdims=True, dtype=np.float64)
    got_train, got_test = standardize_like_train(train, test)
    np.testing.assert_array_equal(got_train, ((train - mean) / std).astype(np.float32))
    np.testing.assert_array_equal(got_test, ((test - mean) / std).astype(np.float32))
    assert abs(float(got_train.mean())) < 1e-6 and float(got_train.std()) == pytest.approx(1.0, rel=1e-5)
    # A constant channel is divided by 1: it becomes 0, the other channel is standardised as usual.
    two = np.stack([np.full((3, 4, 4), 0.5, np.float32), rng.random((3, 4, 4)).astype(np.float32)], axis=-1)
    (got,) = standardize_like_train(two)
    np.testing.assert_array_equal(got[..., 0], 0.0)
    assert float(got[..., 1].std()) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_array_equal(halves(np.arange(10)), [1, 1, 1, 1, 1, 0, 0, 0, 0, 0])
