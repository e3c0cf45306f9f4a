"""tfbdl bdl posterior-adaptivity: prior draws are confident one by one and uncertain on average;
SGLD posterior samples agree more and predict better as the examples per class grow; a rerun
resumes; bad options are one line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest

from tfbdl.cli.bdl.adaptivity import nested_per_class, parse_per_class
from tfbdl.cli.bdl.adaptivity_metrics import entropy, sample_statistics
from tfbdl.cli.bdl.adaptivity_report import trend

REPO = Path(__file__).resolve().parents[2]


def _tfbdl(*args, env=None):
    return subprocess.run([sys.executable, "-m", "tfbdl.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=600, env=env)


def test_sample_statistics_of_known_functions():
    # Two "samples" on two images of two classes: each sample certain, of opposite classes.
    logits = np.array([[[50.0, 0.0], [50.0, 0.0]], [[0.0, 50.0], [0.0, 50.0]]])
    s = sample_statistics(logits, np.array([0, 1]))
    assert s["max_probability"] == pytest.approx(1.0) and s["entropy"] == pytest.approx(0.0, abs=1e-12)
    assert s["predictive_max_probability"] == pytest.approx(0.5)
    assert s["predictive_entropy"] == pytest.approx(np.log(2)) == pytest.approx(s["disagreement"])
    assert s["top_class_share"] == pytest.approx(1.0)  # each sample puts both images in one class
    assert s["accuracy"] == pytest.approx(0.5) and s["predictive_nll"] == pytest.approx(np.log(2))
    np.testing.assert_allclose(s["predictive_share"], [0.5, 0.5])
    assert entropy(np.array([1.0, 0.0])) == 0.0 and entropy(np.full(4, 0.25)) == pytest.approx(np.log(4))


def test_training_sets_are_nested_and_balanced():
    labels = np.repeat(np.arange(3), 20)[np.random.default_rng(1).permutation(60)]
    sets = nested_per_class(labels, (2, 5, 20), seed=3)
    for k, idx in sets.items():
        np.testing.assert_array_equal(np.bincount(labels[idx]), [k] * 3)
    assert set(sets[2]) <= set(sets[5]) <= set(sets[20])
    assert not np.array_equal(sets[2], nested_per_class(labels, (2,), seed=4)[2])  # the seed draws them


def test_per_class_parsing_and_trend_words():
    assert parse_per_class(None, None, "100,10,10") == (10, 100)
    for bad in ("0,10", "ten", ""):
        with pytest.raises(click.BadParameter, match="comma-separated positive counts"):
            parse_per_class(None, None, bad)
    assert trend([3, 2, 1]) == "falls" and trend([1, 3, 2]) == "rises overall (not at every step)"
    assert trend([2, 2]) == "stays level"


def test_tiny_run_shows_confident_prior_draws_and_a_concentrating_posterior(shared_data_dir, tmp_path):
    args = ("bdl", "posterior-adaptivity", "--scale", "tiny", "--out", str(tmp_path), "--data-dir",
            str(shared_data_dir))
    first = _tfbdl(*args)
    assert first.returncode == 0, first.stderr
    (run_dir,) = (tmp_path / "bdl-posterior-adaptivity").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["per_class"] == [2, 10, 50] and metrics["n_test"] == 100
    prior, posterior = metrics["prior"], metrics["posterior"]
    # One prior draw is confident; the prior predictive, their average, is not.
    assert prior["samples"] == 20
    assert prior["max_probability"] > 0.9 > 0.5 > prior["predictive_max_probability"]
    assert prior["entropy"] < 0.1 < 1.5 < prior["predictive_entropy"] <= np.log(10) + 1e-9
    assert prior["top_class_share"] > 0.4  # a draw puts much of the test set in one class
    for stats in (prior, *posterior.values()):
        for key in ("max_probability", "entropy", "predictive_entropy", "disagreement", "top_class_share"):
            assert np.isfinite(stats[key])
        np.testing.assert_allclose(np.sum(stats["shares"], axis=1), 1.0, rtol=1e-9)
        assert stats["predictive_entropy"] >= stats["entropy"] - 1e-9
    rows = [posterior[k] for k in ("2", "10", "50")]
    # The posterior concentrates: the entropy of its spread over functions (the samples'
    # disagreement, a mutual information) falls, and its predictive gets better, with more data.
    assert rows[0]["disagreement"] > 2 * rows[-1]["disagreement"]
    assert rows[0]["predictive_nll"] > rows[-1]["predictive_nll"]
    assert rows[-1]["predictive_accuracy"] > rows[0]["predictive_accuracy"] and rows[-1]["predictive_accuracy"] > 0.7
    assert all(r["samples"] == 2 and r["top_class_share"] < prior["top_class_share"] for r in rows)
    assert all(len(fits) == 2 and fits[0]["train_accuracy"] > 0.5 for fits in metrics["fits"].values())
    chains = sorted(p.name for p in (run_dir / "chains").iterdir())
    assert chains == [f"n{k}-chain{c}" for k in (10, 2, 50) for c in (0, 1)]
    for chain in chains:
        folder = run_dir / "chains" / chain
        assert (folder / "logits.npz").is_file() and not (folder / "checkpoints").exists()
        assert (folder / "warmup.csv").is_file() and (folder / "sgld.csv").is_file()
    assert (run_dir / "posterior_adaptivity.png").is_file() and (run_dir / "prior.npz").is_file()
    summary = (run_dir / "summary.md").read_text()
    assert "| 0 (prior) |" in summary and "single draws are more confident than their average" in summary
    assert "the chains' disagreement falls" in summary and "mnist/test → mnist/test (full)" in summary
    # A finished run is not recomputed.
    stamp = (run_dir / "summary.md").stat().st_mtime_ns
    again = _tfbdl(*args)
    assert again.returncode == 0 and "chain" not in again.stderr
    assert (run_dir / "summary.md").stat().st_mtime_ns == stamp
    # An interrupted run recomputes only what is missing, to the same numbers.
    progress = json.loads((run_dir / "progress.json").read_text())
    del progress["__complete__"]
    (run_dir / "progress.json").write_text(json.dumps(progress))
    for name in ("n10-chain1", "n50-chain0"):
        for path in (run_dir / "chains" / name).iterdir():
            path.unlink()
        (run_dir / "chains" / name).rmdir()
    resumed = _tfbdl(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr.count("per class, chain") == 2 and "10 per class, chain 2/2" in resumed.stderr
    again = json.loads((run_dir / "metrics.json").read_text())
    for k in ("2", "10", "50"):
        for key in ("predictive_entropy", "disagreement", "accuracy"):
            assert again["posterior"][k][key] == pytest.approx(posterior[k][key], rel=1e-5, abs=1e-7)


def test_option_errors_are_one_line(tmp_path):
    env = {**os.environ, "TFBDL_OFFLINE": "1", "TFBDL_DATA_DIR": "", "HOME": str(tmp_path)}
    cases = [
        (["--per-class", "0,10"], 2, "Invalid value for '--per-class': '0,10': give comma-separated positive counts"),
        (["--per-class", "a"], 2, "give comma-separated positive counts"),
        (["--prior-var", "0"], 2, "'--prior-var'"),
        (["--init", "random"], 2, "'--init'"),
        (["--per-class", "5,5000"], 1, "--per-class 5,000 asks for more images per class than the 100 of "
                                       "mnist_sample/train"),
        (["--test-per-class", "80"], 1, "--test-per-class 80 asks for more images per class than the 50 of "
                                        "mnist_sample/test"),
    ]
    for extra, code, needle in cases:
        result = _tfbdl("bdl", "posterior-adaptivity", "--scale", "tiny", "--out", str(tmp_path / "runs"), *extra,
                        env=env)
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
        assert result.returncode == code and len(errors) == 1 and needle in errors[0], (extra, result.stderr)
        assert "Traceback" not in result.stderr
