"""tfbdl bdl swag end to end at tiny scale: metrics of SGD, SWA and SWAG, resume, option errors."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def _tfbdl(*args):
    return subprocess.run([sys.executable, "-m", "tfbdl.cli", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=600)


def test_swag_run_compares_three_predictives_and_resumes(shared_data_dir, tmp_path):
    args = ("bdl", "swag", "--scale", "tiny", "--epochs", "4", "--swa-start", "2", "--samples", "3",
            "--out", str(tmp_path), "--data-dir", str(shared_data_dir))
    first = _tfbdl(*args)
    assert first.returncode == 0, first.stderr
    (run_dir,) = (tmp_path / "bdl-swag").iterdir()
    assert run_dir.name.startswith("lenet5-tiny-")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["test"]) == {"sgd", "swa", "swag"} and metrics["snapshots"] == 2
    assert metrics["n_train"] == 800 and metrics["n_val"] == 200  # the tiny preset holds 200 of 1,000 out
    for row in metrics["test"].values():
        assert 0.5 < row["accuracy"] <= 1.0 and 0 < row["nll"] < 2.0  # LeNet5 learns digits in 3 epochs
    for name, row in metrics["test_temperature_scaled"].items():
        assert 0.05 <= metrics["temperature"][name] <= 20.0
        # Scaling by one positive temperature never changes the predicted class.
        assert row["accuracy"] == metrics["test"][name]["accuracy"]
    summary = (run_dir / "summary.md").read_text()
    assert "SWAG + temperature" in summary and "mnist/test → mnist/test (full)" in summary
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert len(rows) == 5 and "swag_snapshots" in rows[0]  # a header and 4 epochs
    stamp = (run_dir / "summary.md").stat().st_mtime_ns
    again = _tfbdl(*args)
    assert again.returncode == 0 and (run_dir / "summary.md").stat().st_mtime_ns == stamp


def test_preresnet_swag_on_the_padded_cifar_stand_in(shared_data_dir, tmp_path):
    result = _tfbdl("bdl", "swag", "--model", "preresnet20", "--scale", "tiny", "--out", str(tmp_path),
                    "--data-dir", str(shared_data_dir))
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "bdl-swag").iterdir()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"]["model"] == "preresnet20" and config["data"][0]["requested"] == "cifar10"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n_train"] == 192 and metrics["n_test"] == 200
    for row in metrics["test"].values():
        assert 0.0 <= row["accuracy"] <= 1.0 and np.isfinite(row["nll"])
    assert metrics["snapshots"] == 2
    assert "cifar10/train → fashion_mnist/train" in (run_dir / "summary.md").read_text()


def test_swag_option_errors_are_one_line(tmp_path):
    late = _tfbdl("bdl", "swag", "--epochs", "3", "--swa-start", "5", "--out", str(tmp_path))
    assert late.returncode == 1 and "--swa-start 5 leaves no epoch to collect" in late.stderr
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
    common = ("bdl", "multiswag", "--scale", "tiny", "--models", "2", "--n-corrupt", "4", "--out", str(tmp_path),
              "--data-dir", str(shared_data_dir))
    first = _tfbdl(*common, "--shard", "0/2")
    assert first.returncode == 0, first.stderr
    assert "1 member(s) still to train" in first.stdout
    second = _tfbdl(*common, "--shard", "1/2")
    assert second.returncode == 0, second.stderr
    (run_dir,) = (tmp_path / "bdl-multiswag").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n_corrupt"] == 4 and len(metrics["corruptions"]) == 17  # no frost textures; grey images
    assert set(metrics["curves"]) == {"test"} | {f"{n}/{s}" for n in metrics["corruptions"] for s in range(1, 6)}
    for curves in metrics["curves"].values():
        for method in ("sgd", "swa", "swag"):
            rows = curves[method]
            assert [r["models"] for r in rows] == [1, 2]
            assert all(np.isfinite(r["nll"]) and r["nll"] > 0 for r in rows)
    test = metrics["curves"]["test"]
    assert all(0 < r["nll"] < 3 for rows in test.values() for r in rows)
    # Averaging two models' probabilities can only lower the NLL below their mean NLL (convexity).
    from tfbdl.metrics import nll

    with np.load(run_dir / "members" / "member-0" / "predictions.npz") as a, \
            np.load(run_dir / "members" / "member-1" / "predictions.npz") as b:
        pa, pb = a["test|sgd"].astype(np.float64), b["test|sgd"].astype(np.float64)
        assert a["gaussian_noise/5|swag"].shape == (4, 10)
        labels = np.argmax(pa + pb, axis=1)  # any labels satisfy the inequality
        assert nll((pa + pb) / 2, labels) <= (nll(pa, labels) + nll(pb, labels)) / 2 + 1e-12
    assert metrics["curves"]["test"]["sgd"][0]["nll"] == pytest.approx(nll(pa, _test_labels(run_dir)),
                                                                       rel=1e-5)
    for figure in ("multiswag_nll.png", "multiswag_corruptions.png", "multiswag_corruptions_grid.png"):
        assert (run_dir / figure).is_file()
    assert "| severity |" in (run_dir / "summary.md").read_text()


def _test_labels(run_dir):
    """The test labels the run evaluated, loaded again the way the run loads them."""
    from tfbdl.cli.bdl.data import load_training_data
    from tfbdl.cli.bdl.presets import MULTI_PRESETS

    config = json.loads((run_dir / "config.json").read_text())["config"]
    preset = MULTI_PRESETS["lenet5"]["tiny"].member
    return load_training_data(preset, "tiny", config["data_dir"], config["seed"])[3]


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
    alphas = ("0.02", "0.1", "1.0")
    assert set(metrics["class_pairs"]) == set(alphas)
    for matrix in metrics["class_pairs"].values():
        m = np.array(matrix)
        assert m.shape == (10, 10)
        np.testing.assert_allclose(m, m.T, atol=1e-12)
        assert np.all(m <= 1.0 + 1e-12)
    m = np.array(metrics["class_pairs"]["1.0"])
    assert np.mean(np.diag(m)) > np.mean(m[~np.eye(10, dtype=bool)])  # digits of a class look alike a priori
    # Perturbations: a 6x6 (clean + intensities 1..5) correlation matrix per perturbation and alpha.
    for per_name in metrics["perturbations"].values():
        assert {"translation", "gaussian_noise", "contrast"} <= set(per_name) and "saturate" not in per_name
        for row in per_name.values():
            c = np.array(row["matrix"])
            assert c.shape == (6, 6) and np.all(np.abs(c) <= 1.0)
            np.testing.assert_allclose(np.diag(c), 1.0, atol=1e-9)
            np.testing.assert_allclose(c, c.T, atol=1e-12)
    shift = np.array(metrics["perturbations"]["1.0"]["translation"]["matrix"])[0]
    assert shift[1] > shift[5]  # a prior draw changes more under a larger shift of the digit
    # Sample functions: single draws grow confident with alpha; averaging draws never lowers the entropy.
    samples = metrics["sample_functions"]
    per_draw = [samples[a]["entropy_per_draw"] for a in alphas]
    assert np.log(10) - 0.01 < per_draw[0] <= np.log(10) + 1e-9 and per_draw[0] > per_draw[1] > per_draw[2]
    for a in alphas:
        assert samples[a]["entropy_predictive"] >= samples[a]["entropy_per_draw"] - 1e-9
        np.testing.assert_allclose(np.sum(samples[a]["shown_predictive"], axis=-1), 1.0, rtol=1e-9)
    for figure in ("prior_correlations.png", "prior_perturbation_correlations.png", "prior_sample_functions.png"):
        assert (run_dir / figure).is_file()
    summary = (run_dir / "summary.md").read_text()
    assert "| translation |" in summary and "entropy of the prior predictive" in summary
    too_many = _tfbdl("bdl", "prior-correlations", "--scale", "tiny", "--per-class", "2", "--perturb-per-class", "3",
                      "--out", str(tmp_path), "--data-dir", str(shared_data_dir))
    assert too_many.returncode == 1 and "--perturb-per-class 3 is more than --per-class 2" in too_many.stderr


def test_make_cifar_c_refuses_more_images_than_the_test_set(shared_data_dir, tmp_path):
    result = _tfbdl("bdl", "make-cifar-c", "--scale", "tiny", "--n-images", "999999", "--out", str(tmp_path),
                    "--data-dir", str(shared_data_dir))
    assert result.returncode == 1 and "--n-images 999,999 asks for more images than the 10,000 of" in result.stderr
    assert "Traceback" not in result.stderr


def test_swag_on_wholly_corrupted_labels_learns_nothing_true(shared_data_dir, tmp_path):
    result = _tfbdl("bdl", "swag", "--scale", "tiny", "--label-corruption", "1", "--samples", "2",
                    "--out", str(tmp_path), "--data-dir", str(shared_data_dir))
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "bdl-swag").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # Every training label is wrong: the clean test labels are matched at most by chance (10%).
    assert all(row["accuracy"] < 0.2 for row in metrics["test"].values())
    assert "100% of the training labels wrong" in (run_dir / "summary.md").read_text()
    both = _tfbdl("bdl", "swag", "--scale", "tiny", "--label-corruption", "0.5", "--label-arr", str(run_dir / "config.json"),
                  "--out", str(tmp_path))
    assert both.returncode == 1 and "not both" in both.stderr and "Traceback" not in both.stderr
