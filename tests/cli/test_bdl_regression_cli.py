"""tfbdl bdl regression-1d end to end at tiny scale: the predictives' uncertainty, resume, option errors."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _tfbdl(*args):
    return subprocess.run([sys.executable, "-m", "tfbdl.cli", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=600)


def test_tiny_run_shows_gap_uncertainty_and_resumes_from_its_artifacts(tmp_path):
    args = ("bdl", "regression-1d", "--scale", "tiny", "--out", str(tmp_path))
    first = _tfbdl(*args)
    assert first.returncode == 0, first.stderr
    (run_dir,) = (tmp_path / "bdl-regression-1d").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    methods = metrics["methods"]
    assert set(methods) == {"hmc", "ensemble", "vi"}
    for name in ("hmc", "ensemble"):  # uncertain between the clusters, confident on them
        std = methods[name]["std"]
        assert 0.1 <= std["cluster"] < 0.13, (name, std)  # the noise std (0.1) plus a little
        assert std["gap"] > 2 * std["cluster"], (name, std)
    assert methods["vi"]["gap_to_cluster_std"] < min(methods["hmc"]["gap_to_cluster_std"],
                                                     methods["ensemble"]["gap_to_cluster_std"])
    oracle = metrics["oracle_loglik"]
    for row in methods.values():  # in the clusters every method fits, but none beats the truth by much
        assert 0.3 < row["test_loglik"] < oracle["test"] + 0.1
        assert row["test_wide_loglik"] < row["test_loglik"]  # the gaps are harder
    hmc = methods["hmc"]
    assert 0.3 < hmc["acceptance_rate"] <= 1.0 and hmc["step_size"] > 0
    assert hmc["samples"] == 2 * 20 and len(hmc["acceptance_rate_per_chain"]) == 2
    assert hmc["rhat"]["median_cluster"] >= 1.0 and methods["ensemble"]["samples"] == 2
    for name in ("data/gap_data.npz", "map_starts.npz", "hmc_samples.npz", "vi.npz", "regression_1d.png",
                 "ensemble/member-000.weights.npz", "ensemble/member-001.weights.npz"):
        assert (run_dir / name).is_file(), name
    summary = (run_dir / "summary.md").read_text()
    assert "| HMC |" in summary and "mean-field VI" in summary

    stamps = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    again = _tfbdl(*args)
    assert again.returncode == 0 and "nothing to do" in again.stderr
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()} == stamps

    # Interrupted after training: the results are recomputed from the saved samples and members.
    for name in ("metrics.json", "regression_1d.png", "summary.md", "progress.json"):
        (run_dir / name).unlink()
    third = _tfbdl(*args)
    assert third.returncode == 0, third.stderr
    assert "HMC:" not in third.stderr and "mean-field VI" not in third.stderr
    for name in ("hmc_samples.npz", "vi.npz", "map_starts.npz", "ensemble/member-000.weights.npz"):
        assert (run_dir / name).stat().st_mtime_ns == stamps[run_dir / name], name
    assert json.loads((run_dir / "metrics.json").read_text()) == metrics
    assert (run_dir / "regression_1d.png").is_file()


def test_bad_option_values_give_one_line_errors(tmp_path):
    bad = _tfbdl("bdl", "regression-1d", "--scale", "tiny", "--hidden", "10,x", "--out", str(tmp_path))
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert lines == ["Error: --hidden must be comma-separated positive layer widths such as 10,10,10; got '10,x'"]
    assert not (tmp_path / "bdl-regression-1d").exists()
    zero = _tfbdl("bdl", "regression-1d", "--num-chains", "0", "--out", str(tmp_path))
    assert zero.returncode == 2 and "--num-chains" in zero.stderr and "Traceback" not in zero.stderr
