"""REPORT.md's fidelity table (experiments/fidelity.py): each claim read from a run directory whose
metrics have the structure its experiment writes, both verdicts of a directional claim, "not
measured" for a missing or malformed run, the section's place in REPORT.md, and one real tiny
sweep whose rows carry the numbers of its own metrics.json."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tfbdl.cli import fidelity
from tfbdl.cli.fidelity import CLAIMS, fidelity_section, measure
from tfbdl.cli.registry import EXPERIMENTS
from tfbdl.cli.run_all import write_report
from tfbdl.io import atomic_write_json

REPO = Path(__file__).resolve().parents[2]
BY_NAME = {e.name: e for e in EXPERIMENTS}
SUBSET = {"requested": "cifar10", "requested_split": "train", "dataset": "fashion_mnist", "split": "train",
          "source": "embedded subset", "reason": "CIFAR-10 is absent", "scale": "smoke"}


def make_run(root: Path, name: str, metrics, config=None, data=(SUBSET,)) -> Path:
    """A run directory as RunDir writes it: config.json ({"config": options, "data": records}), metrics.json."""
    run = root / name
    run.mkdir(parents=True)
    atomic_write_json(run / "config.json", {"config": {"scale": "smoke", **(config or {})}, "data": list(data)})
    if metrics is not None:
        atomic_write_json(run / "metrics.json", metrics)
    return run


def claim(experiment: str, index: int = 0):
    return [c for c in CLAIMS if c.experiment == experiment][index]


def scores(nll: float, accuracy: float = 0.9) -> dict:
    """tfbdl.metrics.classification_metrics' keys."""
    return {"accuracy": accuracy, "nll": nll, "brier": 0.1, "ece": 0.02}


# --------------------------------------------------------------------------- metrics as each experiment writes them


def convnet_gp_metrics(test_error: float) -> dict:  # convnet_gp.classify_file + kernel_seconds_this_run
    return {"test_accuracy": 1 - test_error, "test_error": test_error, "noise": 0.1, "relative_noise": 0.01,
            "jitter_used": 0.0, "validation": [{"noise": 0.1, "relative_noise": 0.01, "val_accuracy": 0.9,
                                                "jitter": 0.0}],
            "n_train": 5000, "n_test": 2000, "seconds": 4.9, "kernel_seconds_this_run": 1125.0}


def search_metrics() -> dict:  # convnet_gp.run_search
    trials = [{"trial": t, "depth": 3 + t % 2, "var_weight": 2.1, "var_bias": 0.5, "score": 0.908 - 0.01 * t}
              for t in range(10)]
    return {"best": trials[0], "trials": trials,
            "marginal_likelihood": {"lml_before": -5637.0, "lml_after": -2159.0, "num_points": 100,
                                    "params_before": {}, "params_after": {}}}


def swag_metrics(sgd: float, swag: float) -> dict:  # tfbdl.cli.bdl.swag.run_swag
    test = {"sgd": scores(sgd), "swa": scores((sgd + swag) / 2), "swag": scores(swag)}
    return {"test": test, "snapshots": 15, "n_train": 9000, "n_val": 1000, "n_test": 2000,
            "temperature": {k: 1.1 for k in test}, "test_temperature_scaled": test}


def multiswag_metrics(ensembles, multiswag) -> dict:  # tfbdl.cli.bdl.multiswag.run_multiswag / ensemble_curves
    def curve(values):
        return [{"models": k, **scores(v)} for k, v in enumerate(values, 1)]

    curves = {"test": {"sgd": curve(ensembles), "swa": curve(ensembles), "swag": curve(multiswag)}}
    curves["brightness/1"] = curves["test"]
    return {"curves": curves, "n_train": 4000, "n_test": 2000, "n_corrupt": 200, "corruptions": ["brightness"]}


def rethinking_metrics(laplace, ova, binary) -> dict:  # tfbdl.cli.bdl.rethinking.run_rethinking
    fractions = [0.0, 0.5, 1.0][:len(laplace)]
    rows = [{"fraction": f, "train_accuracy": 0.9, "test_accuracy": 0.5, "laplace_log_evidence_per_point": a,
             "ova_elbo_per_point": b, "binary_elbo_per_point": c, "ova_elbo_per_class": [b] * 10,
             "prior_precision": 1.0, "ova_last_change": 0.0, "binary_last_change": 0.0}
            for f, a, b, c in zip(fractions, laplace, ova, binary)]
    return {"rows": rows, "num_classes": 10, "n_train": 1000, "n_test": 1000, "n_gp": 800, "n_binary": 160,
            "classes": [0, 1], "laplace": "last_layer", "prior_precision": 1.0, "decreasing": {}}


def regression_metrics(hmc: float, ensemble: float, vi: float) -> dict:  # tfbdl.cli.bdl.regression.run_regression_1d
    def method(ratio):
        return {"std": {"cluster": 0.1, "gap": 0.1 * ratio, "outside": 0.2}, "epistemic_std": {"cluster": 0.05},
                "samples": 100, "gap_to_cluster_std": ratio, "test_loglik": 0.8, "test_rmse": 0.1,
                "test_wide_loglik": 0.1, "test_wide_rmse": 0.3}

    return {"methods": {"hmc": method(hmc), "ensemble": method(ensemble), "vi": method(vi)},
            "oracle_loglik": {"test": 0.9, "test_wide": 0.9}, "n_train": 120, "n_test": 60, "noise_std": 0.1,
            "num_params": 261}


def dwp_metrics(table: dict) -> dict:  # deep_weight_prior.pipeline.run_pipeline: every stage's metrics.json
    rows = [{"prior": prior, "examples": size, "accuracy_mean": value, "accuracy_std": 0.01,
             "accuracies": [value - 0.01, value + 0.01]} for (prior, size), value in table.items()]
    return {"source": {}, "kernels": {}, "vae": {}, "init": {},
            "bnn": {"table": rows, "runs": [], "n_test": 10000, "n_train_pool": 1000}}


def linearized_metrics(accuracy: dict) -> dict:  # linearized.pipeline.run_pipeline, stages.task_row
    tasks = [{"label_idx": k, "eigenvalue": 1.0 / (k + 1), "positive_fraction": 0.5, "linear_test_accuracy": a,
              "nonlinear_test_accuracy": a, "linear_train_accuracy": 1.0, "nonlinear_train_accuracy": 1.0,
              "init_max_abs_logit_difference": 0.0, "alignment_init": 0.1, "alignment_final": 0.2,
              "linear_distance_to_init": 0.1, "nonlinear_distance_to_init": 0.1} for k, a in accuracy.items()]
    return {"compute-ntk": {}, "train-ntk": {"n_train": 500, "n_test": 500, "net": {}, "tasks": tasks},
            "compute-nads": {}, "train-nads": {}, "pretrained-ntk-comparison": {}, "train-cifar2": {}}


def feature_metrics(depth: int, accuracies, reference=None) -> dict:  # feature_amounts.sweep.run_sweep / training.result_row
    def row(i, accuracy, mean):
        return {"id": f"d{depth}-m{i}-s1-a0" if mean is not None else f"d{depth}-ref", "depth": depth,
                "mean": mean, "scale": None if mean is None else 1.0, "skew": None if mean is None else 0.0,
                "widths": "1 2 3", "parameters": 1000, "early_fraction": 0.5, "centre": 0.5,
                "best_val_accuracy": accuracy, "best_epoch": 3, "train_accuracy_at_best": 0.9,
                "final_val_accuracy": accuracy, "final_train_accuracy": 0.9, "final_val_loss": 0.5,
                "micro_batch": 128, "seconds": 1.0}

    rows = [row(i, a, float(i)) for i, a in enumerate(accuracies)]
    if reference is not None:
        rows.insert(0, row(0, reference, None))
    return {"variants": rows, "n_train": 2000, "n_val": 1000}


def prior_metrics(same: float, different: float, translation) -> dict:  # tfbdl.cli.bdl.priors.run_prior_correlations
    pairs = [[same if i == j else different for j in range(3)] for i in range(3)]
    matrix = [[1.0] * 6 for _ in range(6)]
    matrix[0] = [1.0, *translation]
    low = {"translation": {"matrix": [[1.0] * 6] * 6, "clean_std": [0.0] * 6}}
    return {"class_pairs": {"0.02": [[1.0] * 3] * 3, "1.0": pairs},
            "perturbations": {"0.02": low, "1.0": {"translation": {"matrix": matrix, "clean_std": [0.0] * 6}}},
            "sample_functions": {}, "shown_labels": [0, 1, 2], "intensities": [0, 1, 2, 3, 4, 5]}


# --------------------------------------------------------------------------- (1) each claim, both directions


def finite_width_row(width: int, network: float, kernel: float, noise: float) -> dict:  # convnet_gp.finite_width
    return {"width": width, "network_distance": network, "kernel_distance": kernel, "kernel_noise": noise}


def test_finite_width_convergence(tmp_path):
    rows = [finite_width_row(3, 1.32, 0.30, 0.11), finite_width_row(100, 0.39, 0.09, 0.08)]
    stuck = [finite_width_row(3, 2.62, 0.97, 0.19), finite_width_row(100, 0.94, 0.86, 0.18)]
    run = make_run(tmp_path, "fw", {"kernels": {"convnet_gp": {"rows": rows[::-1]}}})
    assert measure(claim("convnet-gp-finite-width"), run) == (
        "yes: convnet_gp: one network's kernel 1.32 → 0.39 of ||K|| from 3 to 100 channels; over networks 0.09 "
        "(noise 0.08)")
    both = make_run(tmp_path, "fw2", {"kernels": {"convnet_gp": {"rows": rows}, "residual_cnn_gp": {"rows": stuck}}})
    assert measure(claim("convnet-gp-finite-width"), both).startswith("in part: ")


def test_posterior_adaptivity(tmp_path):
    post = {str(k): {"top_class_share": s, "disagreement": d}
            for k, s, d in ((10, 0.131, 0.137), (100, 0.108, 0.032), (1000, 0.105, 0.014))}
    run = make_run(tmp_path, "pa", {"prior": {"top_class_share": 0.746}, "posterior": post})
    assert measure(claim("bdl-posterior-adaptivity"), run) == (
        "yes: a prior draw puts 0.746 of the test images on one class, posterior samples 0.131 → 0.108 → 0.105 "
        "after 10 / 100 / 1000 examples per class; disagreement 0.137 → 0.032 → 0.014 nats")


def test_prior_variance_range(tmp_path):
    values = [{"prior_var": v, "test": {"sgd": scores(sgd), "swag": scores(swag)}}
              for v, sgd, swag in ((0.001, 2.3018, 2.3021), (0.1, 0.0664, 0.0640), (1.0, 0.0698, 0.0692),
                                   (10.0, 0.0751, 0.0678))]
    run = make_run(tmp_path, "pv", {"values": values})
    assert measure(claim("bdl-prior-variance"), run) == (
        "SWAG NLL within 10% of its best (0.0640) at v = 0.1, 1, 10 of 4 values; below SGD's at 3 of 4")


def test_convnet_gp_error(tmp_path):
    config = {"kernel": "convnet_gp", "kind": "nngp"}
    text = measure(claim("convnet-gp"), make_run(tmp_path, "a", convnet_gp_metrics(0.0265), config))
    assert text == ("2.65% test error with 5,000 training / 2,000 test images (convnet_gp, nngp); "
                    "above the paper's 1.03%")
    text = measure(claim("convnet-gp"), make_run(tmp_path, "b", convnet_gp_metrics(0.0090), config))
    assert "0.90% test error" in text and "at or below the paper's 1.03%" in text


def test_convnet_gp_search(tmp_path):
    text = measure(claim("convnet-gp-search"),
                   make_run(tmp_path, "a", search_metrics(), {"n_train": 500, "n_val": 500}))
    assert text.startswith("9.20% validation error, the best of 10 random trials (depth 3, var_weight 2.1")
    assert "500 images to fit, 500 to score" in text and "on 100 images -5637 → -2159" in text


@pytest.mark.parametrize("sgd, swag, expected", [
    (0.2707, 0.2508, "yes: SWAG 0.2508 < SGD 0.2707"),
    (1.0928, 1.1219, "no: SWAG 1.1219 ≥ SGD 1.0928"),
])
def test_swag_nll(tmp_path, sgd, swag, expected):
    for experiment in ("bdl-swag", "bdl-swag-preresnet20"):
        text = measure(claim(experiment), make_run(tmp_path, experiment, swag_metrics(sgd, swag), {"model": "lenet5"}))
        assert text == expected + " (lenet5, 9,000 training / 2,000 test images)"


@pytest.mark.parametrize("ensembles, multiswag, expected", [
    ((0.2843, 0.2400, 0.2054), (0.2621, 0.2200, 0.1994),
     "yes: MultiSWAG 0.2621 → 0.1994 (3 models; falls), below deep ensembles 0.2843 → 0.2054"),
    ((0.6601, 0.5746), (1.4089, 0.8459),
     "in part: MultiSWAG 1.4089 → 0.8459 (2 models; falls), not below deep ensembles 0.6601 → 0.5746"),
    ((0.5000, 0.4000), (0.6000, 0.6500),
     "no: MultiSWAG 0.6000 → 0.6500 (2 models; does not fall), not below deep ensembles 0.5000 → 0.4000"),
])
def test_multiswag_nll(tmp_path, ensembles, multiswag, expected):
    for experiment in ("bdl-multiswag", "bdl-multiswag-preresnet20"):
        run = make_run(tmp_path, experiment, multiswag_metrics(ensembles, multiswag))
        assert measure(claim(experiment), run) == expected


def test_multiswag_of_one_model_is_not_measured(tmp_path):
    run = make_run(tmp_path, "a", multiswag_metrics([0.3], [0.3]))
    assert measure(claim("bdl-multiswag"), run) == "not measured (one model only, no curve over the number of models)"


def test_rethinking_evidence(tmp_path):
    falls = make_run(tmp_path, "a", rethinking_metrics([-0.305, -1.2, -1.799], [-1.909, -3.0, -3.411],
                                                       [-0.27, -0.6, -0.7]))
    assert measure(claim("bdl-rethinking-generalization"), falls) == (
        "yes: Laplace evidence / N -0.305 → -1.799, GP one-vs-all ELBO / N -1.909 → -3.411, "
        "GP binary ELBO / N -0.270 → -0.700 (corrupted fraction 0 → 1)")
    mixed = make_run(tmp_path, "b", rethinking_metrics([-2.423, -2.2, -2.512], [-3.1, -3.5, -3.8],
                                                       [-0.5, -0.6, -0.7]))
    text = measure(claim("bdl-rethinking-generalization"), mixed)
    assert text.startswith("in part: Laplace evidence / N -2.423 → -2.512 (not falling at every step), ")
    rises = make_run(tmp_path, "c", rethinking_metrics([-2.0, -1.0], [-3.0, -2.0], [-0.7, -0.5]))
    text = measure(claim("bdl-rethinking-generalization"), rises)
    assert text.startswith("no: Laplace evidence / N -2.000 → -1.000")


def test_regression_gaps(tmp_path):
    run = make_run(tmp_path, "a", regression_metrics(4.4, 2.9, 1.2))
    assert measure(claim("bdl-regression-1d"), run) == "yes: gaps / clusters std HMC 4.40x, ensemble 2.90x, VI 1.20x"
    run = make_run(tmp_path, "b", regression_metrics(1.1, 2.9, 1.2))
    assert measure(claim("bdl-regression-1d"), run) == "no: gaps / clusters std HMC 1.10x, ensemble 2.90x, VI 1.20x"


def test_dwp_accuracy(tmp_path):
    paper = {("normal", 50): 0.717, ("log-uniform", 50): 0.766, ("dwp", 50): 0.800,
             ("normal", 100): 0.816, ("log-uniform", 100): 0.839, ("dwp", 100): 0.867}
    assert measure(claim("dwp"), make_run(tmp_path, "a", dwp_metrics(paper))) == (
        "yes: the DWP highest at 2 of 2 sizes; 50 examples: DWP 0.800, log-uniform 0.766, standard normal 0.717; "
        "100 examples: DWP 0.867, log-uniform 0.839, standard normal 0.816")
    ours = {("normal", 50): 0.770, ("log-uniform", 50): 0.768, ("dwp", 50): 0.587,
            ("normal", 100): 0.832, ("log-uniform", 100): 0.828, ("dwp", 100): 0.698}
    text = measure(claim("dwp"), make_run(tmp_path, "b", dwp_metrics(ours)))
    assert text.startswith("no: the DWP highest at 0 of 2 sizes; 50 examples: DWP 0.587, log-uniform 0.768, "
                           "standard normal 0.770")
    without = make_run(tmp_path, "c", dwp_metrics({("normal", 50): 0.7}))
    assert measure(claim("dwp"), without) == "not measured (the DWP prior was not run)"


def test_linearized_eigenfunctions(tmp_path):
    run = make_run(tmp_path, "a", linearized_metrics({500: 0.420, 1: 0.984, 20: 0.7}))
    assert measure(claim("linearized"), run) == (
        "yes: linearized network test accuracy 98.4% at k = 1 → 42.0% at k = 500")
    run = make_run(tmp_path, "b", linearized_metrics({1: 0.4375, 10: 0.5625}))
    assert measure(claim("linearized"), run) == (
        "no: linearized network test accuracy 43.8% at k = 1 → 56.2% at k = 10")


def test_feature_family_size(tmp_path, monkeypatch):
    run = make_run(tmp_path, "a", feature_metrics(16, [0.9, 0.8], reference=0.91), {"family": "release"})
    assert measure(claim("feature-amounts", 0), run) == (
        "yes: VGG-16: 193 variants in the release family (2 trained), the paper's 193")
    monkeypatch.setitem(fidelity.PAPER_FAMILY_SIZES, 16, 194)
    assert measure(claim("feature-amounts", 0), run).startswith("no: VGG-16: 193 variants")
    small = make_run(tmp_path, "b", feature_metrics(10, [0.5, 0.6, 0.7]), {"family": "release"})
    assert measure(claim("feature-amounts", 0), small) == (
        "not comparable (the paper's depths are 16 / 19): VGG-10: 153 variants in the release family (3 trained)")


def test_feature_accuracy_spread(tmp_path):
    near = make_run(tmp_path, "a", feature_metrics(16, [0.905, 0.80, 0.95], reference=0.91))
    assert measure(claim("feature-amounts", 1), near) == (
        "yes: VGG-16: 3 variants 80.0–95.0% best validation accuracy, "
        "2 within 1 pt of the reference's 91.0% or above")
    far = make_run(tmp_path, "b", feature_metrics(16, [0.10, 0.50], reference=0.91))
    assert measure(claim("feature-amounts", 1), far).startswith("no: VGG-16: 2 variants 10.0–50.0%")
    no_reference = make_run(tmp_path, "c", feature_metrics(10, [0.094, 0.102]))
    assert measure(claim("feature-amounts", 1), no_reference) == (
        "not measured (no reference VGG trained): VGG-10: 2 variants 9.4–10.2% best validation accuracy")


def test_prior_correlations(tmp_path):
    run = make_run(tmp_path, "a", prior_metrics(0.902, 0.865, [0.929, 0.9, 0.85, 0.8, 0.786]))
    assert measure(claim("bdl-prior-correlations"), run) == (
        "yes: alpha 1.0: same class 0.902 > different classes 0.865; correlation with the translated image "
        "0.929 → 0.786 (intensity 1 → 5)")
    run = make_run(tmp_path, "b", prior_metrics(0.80, 0.865, [0.7, 0.8, 0.85, 0.9, 0.95]))
    assert measure(claim("bdl-prior-correlations"), run).startswith("no: alpha 1.0: same class 0.800 ≤ different")


# --------------------------------------------------------------------------- (2) missing or malformed metrics


@pytest.mark.parametrize("item", CLAIMS, ids=lambda c: f"{c.experiment}-{c.measure.__name__}")
def test_missing_or_malformed_metrics_are_not_measured(tmp_path, item):
    assert measure(item, make_run(tmp_path, "missing", None)) == "not measured (no metrics.json)"
    assert measure(item, tmp_path / "no-such-run") == "not measured (no metrics.json)"
    broken = make_run(tmp_path, "broken", None)
    (broken / "metrics.json").write_text('{"test": ')
    assert measure(item, broken) == "not measured (metrics.json is not valid JSON)"
    assert measure(item, make_run(tmp_path, "empty", {})).startswith("not measured (metrics.json lacks '")
    wrong = make_run(tmp_path, "wrong", {key: 3 for key in ("test", "curves", "rows", "methods", "bnn", "train-ntk",
                                                            "variants", "class_pairs", "test_error", "best")})
    assert measure(item, wrong).startswith("not measured (")


# --------------------------------------------------------------------------- (3) the section in REPORT.md


def test_write_report_places_the_section_after_data_used(tmp_path):
    swag = make_run(tmp_path / "bdl-swag", "lenet5-smoke-1", swag_metrics(0.2707, 0.2508), {"model": "lenet5"})
    (swag / "summary.md").write_text("SWAG summary.\n")
    regression = make_run(tmp_path / "bdl-regression-1d", "smoke-2", regression_metrics(4.4, 2.9, 1.2),
                          data=[{"dataset": "gap-regression-1d", "source": "generated", "seed": 0}])
    check = make_run(tmp_path / "data-check", "smoke-3", {"checks": []})
    results = [(BY_NAME["data-check"], 0, [check]), (BY_NAME["bdl-swag"], 0, [swag]),
               (BY_NAME["bdl-regression-1d"], 0, [regression]), (BY_NAME["linearized"], 1, [])]
    report = write_report(tmp_path, "smoke", results).read_text(encoding="utf-8")
    data, section = report.index("## Data used"), report.index("## Fidelity: the papers' numbers beside this sweep's")
    assert data < section < report.index("## data-check") < report.index("## bdl-swag")
    table = report[section:report.index("## data-check")]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| paper, claim")]
    assert len(rows) == 3  # one per claim of each experiment with one; data-check has none
    assert "| yes: SWAG 0.2508 < SGD 0.2707 (lenet5, 9,000 training / 2,000 test images) | " \
           "cifar10/train → fashion_mnist/train (embedded subset) — CIFAR-10 is absent, smoke |" in rows[0]
    assert "| yes: gaps / clusters std HMC 4.40x, ensemble 2.90x, VI 1.20x | gap-regression-1d (generated), smoke |" \
           in rows[1]
    assert "| not measured (the run failed, see `logs/linearized.log`) | — |" in rows[2]
    assert "Ran without a headline claim in this table: data-check." in table


def test_no_results_no_section_and_no_claims_no_table():
    assert fidelity_section([], "tiny") == []
    assert fidelity_section([(BY_NAME["data-check"], 0, [])], "tiny") == [
        "## Fidelity: the papers' numbers beside this sweep's", "",
        "No experiment with a headline claim ran in this sweep.", "",
        "Ran without a headline claim in this table: data-check.", ""]


# --------------------------------------------------------------------------- a real tiny sweep


def test_a_real_tiny_sweep_reports_its_own_numbers(tmp_path, shared_data_dir):
    """``tfbdl run-all`` of two tiny experiments (about 90 s on two busy cores): REPORT.md's rows hold
    the numbers of the runs' own metrics.json."""
    out = tmp_path / "out"
    env = {**os.environ, "TFBDL_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([sys.executable, "-m", "tfbdl.cli", "run-all", "--only", "convnet-gp", "--only",
                           "bdl-regression-1d", "--scale", "tiny", "--out", str(out), "--data-dir",
                           str(shared_data_dir)], capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = (out / "REPORT.md").read_text(encoding="utf-8")
    assert report.index("## Data used") < report.index("## Fidelity") < report.index("## convnet-gp")
    section = report[report.index("## Fidelity"):report.index("## convnet-gp")]

    (run,) = (out / "convnet-gp").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    (row,) = [line for line in section.splitlines() if line.startswith("| ConvNet GP")]
    error = f"{100 * metrics['test_error']:.2f}% test error with {metrics['n_train']:,} training / " \
            f"{metrics['n_test']:,} test images"
    assert error in row and "| mnist/train → mnist/train (full); mnist/test → mnist/test (full), tiny |" in row
    assert re.search(r"(above|at or below) the paper's 1\.03%", row)

    (run,) = (out / "bdl-regression-1d").iterdir()
    ratio = {k: v["gap_to_cluster_std"] for k, v in json.loads((run / "metrics.json").read_text())["methods"].items()}
    (row,) = [line for line in section.splitlines() if "1-D regression" in line]
    verdict = "yes" if min(ratio["hmc"], ratio["ensemble"]) > ratio["vi"] else "no"
    assert (f"| {verdict}: gaps / clusters std HMC {ratio['hmc']:.2f}x, ensemble {ratio['ensemble']:.2f}x, "
            f"VI {ratio['vi']:.2f}x | gap-regression-1d (generated), tiny |") in row
