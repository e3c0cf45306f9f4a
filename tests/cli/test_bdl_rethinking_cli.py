"""tfbdl bdl rethinking-generalization: tiny end to end, resume, option errors, the prior conversion."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfbdl.cli.bdl.rethinking_data import binary_labels, parse_classes, parse_fractions
from tfbdl.errors import InvalidOptionError
from tfbdl.train.weight_decay import prior_precision

REPO = Path(__file__).resolve().parents[2]


def _tfbdl(*args):
    return subprocess.run([sys.executable, "-m", "tfbdl.cli", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=600)


def test_tiny_run_gp_evidence_falls_with_corruption_and_rerun_resumes(shared_data_dir, tmp_path):
    args = ("bdl", "rethinking-generalization", "--scale", "tiny", "--out", str(tmp_path),
            "--data-dir", str(shared_data_dir))
    first = _tfbdl(*args)
    assert first.returncode == 0, first.stderr
    (run_dir,) = (tmp_path / "bdl-rethinking-generalization").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    rows = {r["fraction"]: r for r in metrics["rows"]}
    assert sorted(rows) == [0.0, 0.5, 1.0] and metrics["n_train"] == 200 and metrics["n_gp"] == 200
    # The paper's point, on the GPs: random labels are far less probable under the model.
    assert rows[0.0]["ova_elbo_per_point"] > rows[0.5]["ova_elbo_per_point"] > rows[1.0]["ova_elbo_per_point"]
    assert rows[0.0]["binary_elbo_per_point"] > rows[1.0]["binary_elbo_per_point"]
    for r in rows.values():
        assert -10 < r["ova_elbo_per_point"] < 0 and -1.5 < r["binary_elbo_per_point"] < 0
        assert 0 <= r["train_accuracy"] <= 1 and 0 <= r["test_accuracy"] <= 1
        assert np.isfinite(r["laplace_log_evidence"]) and r["laplace_log_evidence_per_point"] < 0
        assert r["prior_precision"] == pytest.approx(2 * 200 * 5e-4)
        assert r["laplace"] == "last_layer" and r["laplace_parameters"] == (16 + 1) * 10
    # The labels each fraction used: exactly the asked share of the 200 is wrong; binary f/2 flipped.
    with np.load(run_dir / "fractions" / "fraction-0" / "labels.npz") as clean, \
            np.load(run_dir / "fractions" / "fraction-0.5" / "labels.npz") as half:
        assert clean["corrupted"].sum() == 0 and half["corrupted"].sum() == 100
        np.testing.assert_array_equal(half["corrupted"], half["labels"] != clean["labels"])
    assert rows[1.0]["ova_corrupted"] == 1.0 and rows[0.0]["ova_corrupted"] == 0.0
    assert rows[1.0]["binary_flipped"] == pytest.approx(0.5, abs=0.02)
    assert (run_dir / "kernel.h5").is_file() and (run_dir / "rethinking_generalization.png").is_file()
    summary = (run_dir / "summary.md").read_text()
    assert "| 0.5 |" in summary and "one-vs-all GP ELBO / N decreases monotonically" in summary
    assert "fashion_mnist" in summary  # the stand-in for CIFAR-10 is named

    stamp = (run_dir / "summary.md").stat().st_mtime_ns
    again = _tfbdl(*args)
    assert again.returncode == 0, again.stderr
    assert (run_dir / "summary.md").stat().st_mtime_ns == stamp  # a finished run does nothing

    # An unfinished run resumes from its finished fractions: no kernel, GP or network recomputed.
    progress = json.loads((run_dir / "progress.json").read_text())
    progress.pop("__complete__")
    (run_dir / "progress.json").write_text(json.dumps(progress))
    gp_stamp = (run_dir / "fractions" / "fraction-1" / "gp.json").stat().st_mtime_ns
    resumed = _tfbdl(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert "CNN-GP kernel" not in resumed.stderr and "network on labels" not in resumed.stderr
    assert (run_dir / "fractions" / "fraction-1" / "gp.json").stat().st_mtime_ns == gp_stamp
    assert json.loads((run_dir / "metrics.json").read_text())["rows"] == metrics["rows"]


@pytest.mark.parametrize("value, message", [("0,2", "--fractions must lie in [0, 1]; 2 does not"),
                                            ("0,a", "--fractions must be comma-separated numbers"),
                                            ("0.5,0.5", "--fractions has a repeated value")])
def test_bad_fractions_give_a_one_line_error(tmp_path, value, message):
    result = _tfbdl("bdl", "rethinking-generalization", "--scale", "tiny", "--fractions", value,
                    "--out", str(tmp_path))
    assert result.returncode == 1 and message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_parsers():
    assert parse_fractions("1, 0,0.25") == (0.0, 0.25, 1.0)
    assert parse_classes("3,5") == (3, 5)
    for bad in ("", ",", "-0.1"):
        with pytest.raises(InvalidOptionError):
            parse_fractions(bad)
    for bad in ("3", "3,3", "1,2,3", "a,b", "-1,2"):
        with pytest.raises(InvalidOptionError):
            parse_classes(bad)


def test_binary_corruption_randomises_the_fraction():
    y = np.repeat([0, 1], 50)
    assert np.array_equal(binary_labels(y, 0.0, seed=0), y)
    assert np.sum(binary_labels(y, 0.5, seed=0) != y) == 25  # a fair coin on half: a quarter flipped
    assert np.sum(binary_labels(y, 1.0, seed=0) != y) == 50  # a random labelling, not all flipped


def test_laplace_prior_precision_is_what_the_trainer_weight_decay_means():
    keras = pytest.importorskip("keras")
    from tfbdl.bayes.laplace import diagonal_laplace
    from tfbdl.train.loop import Trainer
    from tfbdl.train.weight_decay import prior_variance

    assert prior_precision(5e-4, 1000) == pytest.approx(1.0)
    assert prior_precision(3e-4, 777) == pytest.approx(1 / prior_variance(3e-4, 777))
    assert prior_precision(3e-4, 777) == 2.0 * 777 * 3e-4  # the precision the evidence runs used
    for bad in (0.0, -1e-4):
        with pytest.raises(InvalidOptionError, match="weight_decay must be a positive finite number"):
            prior_precision(bad, 100)
    with pytest.raises(InvalidOptionError, match="n_train must be an integer >= 1"):
        prior_precision(1e-4, 0)

    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, activation="relu"), keras.layers.Dense(3)])
    wd = 0.01
    trainer = Trainer(model, lambda: keras.optimizers.SGD(0.1), weight_decay=wd)
    trainer.fit((x, y), 3, seed=0, batch_size=16, verbose=False)
    lam = prior_precision(wd, x.shape[0])
    posterior = diagonal_laplace(model, (x, y), lam)
    squares = sum(float(np.sum(np.asarray(v, np.float64) ** 2)) for v in model.trainable_variables)
    # N x (mean loss + wd |w|^2), the trainer's objective, is the negative log joint without constants.
    assert x.shape[0] * trainer.objective((x, y)) == pytest.approx(posterior.nll + 0.5 * lam * squares, rel=1e-5)
