"""``tfbdl convnet-gp learning-curve``: nested training sets from the reference's split, one kernel
file for all sizes, both classification rules checked against a direct solve, resume."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfbdl.cli.convnet_gp import parse_sizes, projection, training_pool
from tfbdl.errors import InvalidOptionError

REPO = Path(__file__).resolve().parents[2]


def test_training_pool_is_the_references_when_the_official_images_are_there():
    pool, text = training_pool(60000)
    np.testing.assert_array_equal(pool, np.arange(5000, 55000))  # cnn-gp's train_range
    assert "5,000-54,999" in text
    pool, text = training_pool(1000)
    np.testing.assert_array_equal(pool, np.arange(1000))
    assert "not the official" in text


def test_parse_sizes():
    assert parse_sizes("1000, 200,1000") == (200, 1000)
    assert parse_sizes(None) is None
    for bad in ("a,b", "1", ","):
        with pytest.raises(InvalidOptionError, match="--sizes"):
            parse_sizes(bad)


def test_projection_scales_the_measured_rate():
    proj = projection({"entries": 1_000_000, "seconds": 100.0}, n_test=10000)
    assert proj["entries_per_second"] == 10000
    assert proj["paper_entries"] == 50000 * 50001 // 2 + 50000 * 20000
    assert proj["paper_hours"] == pytest.approx(proj["paper_entries"] / 10000 / 3600)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "tfbdl.cli", "convnet-gp", "learning-curve", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=600)


def test_learning_curve_end_to_end_and_resume(shared_data_dir, tmp_path):
    out = tmp_path / "runs"
    args = ["--sizes", "20,40", "--n-test", "30", "--block", "20", "--dtype", "float64", "--scale", "tiny",
            "--out", str(out), "--data-dir", str(shared_data_dir)]
    result = _cli(*args)
    assert result.returncode == 0, result.stderr
    (run_dir,) = [p for p in (out / "convnet-gp-curve").iterdir() if p.is_dir()]
    rows = json.loads((run_dir / "metrics.json").read_text())["rows"]
    assert [r["n_train"] for r in rows] == [20, 40]
    assert all(r["n_test"] == 30 for r in rows)
    assert (run_dir / "learning_curve.png").stat().st_size > 0
    timing = json.loads((run_dir / "metrics.json").read_text())["kernel"]
    assert timing["entries"] == 40 * 41 // 2 + 40 * 30 and timing["seconds"] > 0  # Kxx upper triangle + Kxt
    assert "Paper (Table 1): 1.03%" in (run_dir / "summary.md").read_text()

    # training images are the first n of one draw from the reference's pool (official 5,000-54,999)
    with np.load(run_dir / "data.npz") as data:
        train_idx, y_train, y_test = data["train_indices"], data["y_train"], data["y_test"]
    assert train_idx.size == 40 and np.all((train_idx >= 5000) & (train_idx < 55000))

    # the reference rule (jitter 0) equals a direct solve with the leading blocks of the kernel file
    from tfbdl.kernels.blocks import read_kernels

    kernels = read_kernels(run_dir / "kernels.h5", names=("Kxx", "Kxt"))
    for row in rows:
        n = row["n_train"]
        targets = -np.ones((n, 10))
        targets[np.arange(n), y_train[:n]] = 1.0
        mean = kernels["Kxt"][:n].T @ np.linalg.solve(kernels["Kxx"][:n, :n], targets)
        assert row["test_error_reference_rule"] == pytest.approx(np.mean(mean.argmax(1) != y_test))
        assert row["jitter_reference_rule"] == 0.0
        assert 0.0 <= row["test_error_chosen_noise"] <= 1.0

    # rerunning the same command finds the run complete and changes nothing
    before = (run_dir / "learning_curve.csv").read_text()
    again = _cli(*args)
    assert again.returncode == 0, again.stderr
    assert (run_dir / "learning_curve.csv").read_text() == before


def test_a_typed_size_beyond_the_pool_is_a_one_line_error(tmp_path, isolated_data):
    from click.testing import CliRunner

    from tfbdl.cli.main import cli

    result = CliRunner().invoke(cli, ["convnet-gp", "learning-curve", "--sizes", "5000", "--scale", "tiny",
                                      "--out", str(tmp_path / "runs")])
    assert result.exit_code != 0
    assert "--sizes 5,000 asks for more images than the 1,000" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
