"""tfbdl bdl prior-variance: one SWAG run per prior variance (no weight decay), finite metrics
per value and method, a figure and a measured summary; shards merge, a rerun resumes, bad options
are one line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest

from tfbdl.cli.bdl.prior_presets import PRIOR_VARIANCE_PRESETS
from tfbdl.cli.bdl.prior_variance import parse_prior_vars, value_name
from tfbdl.cli.bdl.prior_variance_report import near_best

REPO = Path(__file__).resolve().parents[2]


def _tfbdl(*args, env=None):
    return subprocess.run([sys.executable, "-m", "tfbdl.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=600, env=env)


def test_presets_train_without_weight_decay_under_each_prior():
    for model, scales in PRIOR_VARIANCE_PRESETS.items():
        for scale, preset in scales.items():
            assert preset.member.weight_decay == 0.0 and preset.member.prior_var is None and preset.member.n_val == 0
            assert preset.member.swa_start < preset.member.epochs and len(preset.prior_vars) >= 3
            assert list(preset.prior_vars) == sorted(preset.prior_vars)
    paper = PRIOR_VARIANCE_PRESETS["lenet5"]["paper"]
    assert 0.1 in paper.prior_vars and paper.member.epochs == 50  # the reference's LeNet5 command
    assert PRIOR_VARIANCE_PRESETS["preresnet20"]["paper"].member.swa_start == 161


def test_value_parsing_and_near_best():
    assert parse_prior_vars(None, None, "10,0.1,1e-2,0.1") == (0.01, 0.1, 10.0)
    for bad in ("0,1", "-1", "nan", "inf,1", "a", ""):
        with pytest.raises(click.BadParameter, match="positive prior variances"):
            parse_prior_vars(None, None, bad)
    assert value_name(0.001) == "var-0.001" and value_name(10.0) == "var-10"
    assert near_best([1.0, 1.05, 1.2, 2.0]) == [0, 1]


def test_tiny_sweep_in_two_shards_merges_and_resumes(shared_data_dir, tmp_path):
    common = ("bdl", "prior-variance", "--scale", "tiny", "--out", str(tmp_path), "--data-dir", str(shared_data_dir))
    shard = _tfbdl(*common, "--shard", "1/2")
    assert shard.returncode == 0, shard.stderr
    assert "2 prior variance(s) still to train" in shard.stdout and "prior variance 0.1 (2/3)" in shard.stderr
    (run_dir,) = (tmp_path / "bdl-prior-variance").iterdir()
    assert not (run_dir / "metrics.json").exists()
    merged = _tfbdl(*common)
    assert merged.returncode == 0, merged.stderr
    assert "prior variance 0.1" not in merged.stderr  # done by the shard, not redone
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["prior_vars"] == [0.001, 0.1, 10.0] and metrics["n_train"] == 1000 and metrics["n_test"] == 200
    for v, row in zip(metrics["prior_vars"], metrics["values"]):
        assert row["prior_var"] == v and row["weight_decay"] == pytest.approx(1 / (2 * v * 1000))
        assert set(row["test"]) == {"sgd", "swa", "swag"}
        for method in row["test"].values():
            assert set(method) == {"accuracy", "nll", "ece", "brier"}
            assert all(np.isfinite(x) for x in method.values()) and 0 <= method["accuracy"] <= 1
        folder = run_dir / "values" / value_name(v)
        assert (folder / "metrics.json").is_file() and not (folder / "checkpoints").exists()
        with np.load(folder / "predictions.npz") as predictions:
            assert predictions["swag"].shape == (200, 10)
            np.testing.assert_allclose(predictions["swag"].sum(axis=1), 1.0, rtol=1e-5)
        rows = (folder / "metrics.csv").read_text().splitlines()
        assert len(rows) == 4 and "swag_snapshots" in rows[0]  # a header and 3 epochs
    tight, loose = metrics["values"][0], metrics["values"][-1]
    # A prior of variance 0.001 (weight decay 0.5 on 1,000 images) holds the weights at zero: the
    # network learns nothing, while a loose prior lets it learn the digits.
    assert tight["train_accuracy"] < 0.3 and tight["test"]["sgd"]["nll"] == pytest.approx(np.log(10), abs=0.05)
    assert loose["test"]["sgd"]["accuracy"] > 0.5 and loose["test"]["sgd"]["nll"] < tight["test"]["sgd"]["nll"]
    assert (run_dir / "prior_variance.png").is_file()
    summary = (run_dir / "summary.md").read_text()
    assert "| 0.001 | 0.5 |" in summary and "SWAG's test NLL is below SGD's at" in summary
    assert "The tightest prior (v = 0.001, weight decay 0.5) gives SWAG's worst NLL" in summary
    stamp = (run_dir / "summary.md").stat().st_mtime_ns
    again = _tfbdl(*common)
    assert again.returncode == 0 and "prior variance" not in again.stderr
    assert (run_dir / "summary.md").stat().st_mtime_ns == stamp


def test_option_errors_are_one_line(tmp_path):
    env = {**os.environ, "TFBDL_OFFLINE": "1", "TFBDL_DATA_DIR": "", "HOME": str(tmp_path)}
    cases = [
        (["--prior-vars", "0,1"], 2, "Invalid value for '--prior-vars': '0,1': give comma-separated positive prior"),
        (["--prior-vars", "nan"], 2, "give comma-separated positive prior variances"),
        (["--shard", "2/2"], 1, "--shard '2/2': shards are numbered from 0"),
        (["--model", "vgg16_bn"], 2, "'--model'"),
        (["--epochs", "3", "--swa-start", "3"], 1, "--swa-start 3 leaves no epoch to collect"),
    ]
    for extra, code, needle in cases:
        result = _tfbdl("bdl", "prior-variance", "--scale", "tiny", "--out", str(tmp_path / "runs"), *extra, env=env)
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
        assert result.returncode == code and len(errors) == 1 and needle in errors[0], (extra, result.stderr)
        assert "Traceback" not in result.stderr
