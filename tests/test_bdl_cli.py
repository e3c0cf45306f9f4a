"""tfbdl bdl swag end to end at tiny scale: metrics of SGD, SWA and SWAG, resume, option errors."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _tfbdl(*args):
    return subprocess.run([sys.executable, "-m", "experiments.cli", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=600)


def test_swag_run_compares_three_predictives_and_resumes(shared_data_dir, tmp_path):
    args = ("bdl", "swag", "--scale", "tiny", "--epochs", "3", "--swa-start", "2", "--samples", "3",
            "--out", str(tmp_path), "--data-dir", str(shared_data_dir))
    first = _tfbdl(*args)
    assert first.returncode == 0, first.stderr
    (run_dir,) = (tmp_path / "bdl-swag").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["test"]) == {"sgd", "swa", "swag"} and metrics["snapshots"] == 2
    for row in metrics["test"].values():
        assert 0.5 < row["accuracy"] <= 1.0 and 0 < row["nll"] < 2.0  # LeNet5 learns digits in 3 epochs
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert len(rows) == 4 and "swag_snapshots" in rows[0]
    stamp = (run_dir / "summary.md").stat().st_mtime_ns
    again = _tfbdl(*args)
    assert again.returncode == 0 and (run_dir / "summary.md").stat().st_mtime_ns == stamp


def test_swag_option_errors_are_one_line(tmp_path):
    late = _tfbdl("bdl", "swag", "--epochs", "3", "--swa-start", "5", "--out", str(tmp_path))
    assert late.returncode == 1 and "--swa-start 5 is after the last epoch 3" in late.stderr
    assert "Traceback" not in late.stderr


def test_label_array_of_the_wrong_length_is_refused(shared_data_dir, tmp_path):
    from tfbdl.data.labels import save_labels

    path = tmp_path / "labels.npz"
    save_labels(path, np.zeros(10, np.int64), np.zeros(10, bool), {"fraction": 0.0})
    result = _tfbdl("bdl", "swag", "--scale", "tiny", "--label-arr", str(path), "--out", str(tmp_path / "o"),
                    "--data-dir", str(shared_data_dir))
    assert result.returncode == 1 and "--label-arr holds 10 labels" in result.stderr
    assert "Traceback" not in result.stderr


def test_multiswag_members_in_shards_then_merged(shared_data_dir, tmp_path):
    common = ("bdl", "multiswag", "--scale", "tiny", "--models", "2", "--out", str(tmp_path),
              "--data-dir", str(shared_data_dir))
    first = _tfbdl(*common, "--shard", "0/2")
    assert first.returncode == 0, first.stderr
    assert "1 member(s) still to train" in first.stdout
    second = _tfbdl(*common, "--shard", "1/2")
    assert second.returncode == 0, second.stderr
    (run_dir,) = (tmp_path / "bdl-multiswag").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for method in ("sgd", "swa", "swag"):
        rows = metrics["curves"][method]
        assert [r["models"] for r in rows] == [1, 2]
        assert all(0 < r["nll"] < 3 for r in rows)
    # Averaging two models' probabilities can only lower the NLL below their mean NLL (convexity).
    from tfbdl.metrics import nll

    with np.load(run_dir / "members" / "member-0" / "test_probs.npz") as a, \
            np.load(run_dir / "members" / "member-1" / "test_probs.npz") as b:
        labels = np.argmax(a["sgd"] + b["sgd"], axis=1)  # any labels satisfy the inequality
        assert nll((a["sgd"] + b["sgd"]) / 2, labels) <= (nll(a["sgd"], labels) + nll(b["sgd"], labels)) / 2 + 1e-12
    assert (run_dir / "multiswag_nll.png").is_file()


def test_make_cifar_c_writes_every_corruption_and_says_frost_needs_textures(shared_data_dir, tmp_path):
    result = _tfbdl("bdl", "make-cifar-c", "--scale", "tiny", "--n-images", "6", "--out", str(tmp_path),
                    "--data-dir", str(shared_data_dir))
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "bdl-cifar-c").iterdir()
    files = sorted(p.stem for p in (run_dir / "corrupted").glob("*.npz"))
    assert len(files) == 18 and "frost" not in files
    with np.load(run_dir / "corrupted" / "gaussian_noise.npz") as data:
        assert data["severity_5"].shape == (6, 28, 28, 1) and data["severity_5"].dtype == np.uint8
        assert data["labels"].shape == (6,)
    summary = (run_dir / "summary.md").read_text()
    assert "frost was skipped" in summary and "standing in for cifar10/test" in summary


def test_prior_correlations_show_more_correlation_within_classes(shared_data_dir, tmp_path):
    result = _tfbdl("bdl", "prior-correlations", "--scale", "tiny", "--draws", "60", "--out", str(tmp_path),
                    "--data-dir", str(shared_data_dir))
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "bdl-prior-correlations").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) == {"0.02", "0.1", "1.0"}
    for matrix in metrics.values():
        m = np.array(matrix)
        assert m.shape == (10, 10)
        np.testing.assert_allclose(m, m.T, atol=1e-12)
        assert np.all(m <= 1.0 + 1e-12)
    m = np.array(metrics["1.0"])
    assert np.mean(np.diag(m)) > np.mean(m[~np.eye(10, dtype=bool)])  # digits of a class look alike a priori
    assert (run_dir / "prior_correlations.png").is_file()


def test_make_cifar_c_refuses_more_images_than_the_test_set(shared_data_dir, tmp_path):
    result = _tfbdl("bdl", "make-cifar-c", "--scale", "tiny", "--n-images", "999999", "--out", str(tmp_path),
                    "--data-dir", str(shared_data_dir))
    assert result.returncode == 1 and "--n-images 999999 is more than the 10000 test images" in result.stderr
    assert "Traceback" not in result.stderr
