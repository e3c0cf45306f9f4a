"""tfbdl dwp: the deep weight prior pipeline end to end at tiny scale, its resume, option errors, and the
split maker."""

import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import release_dir
from tfbdl.cli.deep_weight_prior import PRESETS
from tfbdl.cli.deep_weight_prior.bnn import make_prior, posterior_variance
from tfbdl.cli.deep_weight_prior.presets import parse_sizes
from tfbdl.cli.deep_weight_prior.report import fit_table, prior_comparison
from tfbdl.data.subsets import allocate_per_class, stratified_splits
from tfbdl.dwp.fitting import accuracy_table
from tfbdl.errors import InvalidOptionError

REPO = Path(__file__).resolve().parents[2]


def _tfbdl(*args):
    return subprocess.run([sys.executable, "-m", "tfbdl.cli", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=900)


def _table_rows(summary: str) -> dict:
    """``{prior name: [cell, ...]}`` of the prior x examples table in summary.md."""
    lines = summary.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| prior |"))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def test_dwp_run_tiny_end_to_end_and_resume(shared_data_dir, tmp_path):
    args = ("dwp", "run", "--scale", "tiny", "--out", str(tmp_path), "--data-dir", str(shared_data_dir))
    first = _tfbdl(*args)
    assert first.returncode == 0, first.stderr
    (run_dir,) = (tmp_path / "dwp").iterdir()
    assert sorted(p.name for p in run_dir.iterdir() if p.is_dir()) == ["bnn", "init", "kernels", "source", "vae"]
    preset = PRESETS["tiny"]
    metrics = json.loads((run_dir / "metrics.json").read_text())

    # Source networks: one finished sub-run with saved weights per net, accuracies recorded.
    nets = metrics["source"]["nets"]
    assert len(nets) == preset.source.nets and len({n["seed"] for n in nets}) == preset.source.nets
    for i, net in enumerate(nets):
        assert 0.0 <= net["test_accuracy"] <= 1.0
        assert (run_dir / "source" / "nets" / f"net-{i:03d}" / "weights.h5").is_file()

    # Kernel bank: every slice of every net counted, the kept ones are what the HDF5 holds.
    from tfbdl.dwp.kernel_bank import load_kernel_bank

    bank, counts, meta = load_kernel_bank(run_dir / "kernels" / "kernel_bank.h5")
    w1, w2 = preset.source.widths
    expected_total = {7: preset.source.nets * 1 * w1, 5: preset.source.nets * w1 * w2}
    for k in (7, 5):
        c = metrics["kernels"]["counts"][f"{k}x{k}"]
        assert c == counts[k]
        assert c["total"] == expected_total[k] and c["kept"] + c["dropped"] == c["total"]
        assert bank[k].shape == (c["kept"], k, k) and bank[k].dtype == np.float32
        norms = np.sqrt(np.sum(np.square(bank[k].astype(np.float64)), axis=(1, 2)))
        assert np.all(norms >= meta["threshold"])
    summary = (run_dir / "summary.md").read_text()
    for k in (7, 5):
        c = counts[k]
        assert f"| {k}x{k} | {c['total']} | {c['kept']} | {c['dropped']} |" in summary

    # Kernel VAEs: saved, with finite ELBOs.
    for k in (7, 5):
        assert (run_dir / "vae" / f"kernel_vae_{k}x{k}.h5").is_file()
        assert np.isfinite(metrics["vae"]["vaes"][f"{k}x{k}"]["eval_elbo"])

    # The prior x examples table: every prior and size, accuracies in [0, 1], std over the splits.
    table = metrics["bnn"]["table"]
    sizes, priors, splits = preset.bnn.sizes, preset.bnn.priors, preset.bnn.splits
    assert {(r["prior"], r["examples"]) for r in table} == {(p, s) for p in priors for s in sizes}
    for row in table:
        assert len(row["accuracies"]) == splits and all(0.0 <= a <= 1.0 for a in row["accuracies"])
        assert row["accuracy_mean"] == pytest.approx(np.mean(row["accuracies"]))
        assert row["accuracy_std"] == pytest.approx(np.std(row["accuracies"], ddof=1))
    rows = _table_rows(summary)
    assert set(rows) == {"standard normal", "log-uniform", "DWP"}
    for name, cells in rows.items():
        assert len(cells) == len(sizes) and all(" ± " in cell for cell in cells)
    assert "Measured:" in summary
    # Each run trained on its own split: stratified, of the asked size, disjoint across splits.
    indices = [json.loads((run_dir / "bnn" / "runs" / f"normal-n{sizes[0]}-split{j}" / "result.json").read_text())
               ["train_index"] for j in range(splits)]
    assert all(len(ix) == sizes[0] for ix in indices) and not set(indices[0]) & set(indices[1])

    # DWP initialisation: a curve per initialisation with epoch 0 and every epoch.
    curves = metrics["init"]["curves"]
    for init in ("xavier", "dwp"):
        assert len(curves[init]["mean"]) == preset.init.epochs + 1
        assert len(curves[init]["runs"]) == preset.init.seeds
        assert all(0.0 <= a <= 1.0 for a in curves[init]["mean"])

    # Figures at the top (for REPORT.md), and the substitution of the data sets recorded.
    for figure in ("dwp_init_curves.png", "bnn_accuracy.png", "kernel_norms.png", "vae_latent_7x7.png",
                   "vae_latent_5x5.png", "vae_samples_7x7.png", "vae_samples_5x5.png"):
        assert (run_dir / figure).stat().st_size > 1000
    config = json.loads((run_dir / "config.json").read_text())
    assert {(d["requested"], d["dataset"]) for d in config["data"]} == {("notmnist", "fashion_mnist"),
                                                                        ("mnist", "mnist")}
    assert "notmnist/train → fashion_mnist/train" in summary

    # A rerun finds everything done and recomputes nothing.
    stamps = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    again = _tfbdl(*args)
    assert again.returncode == 0, again.stderr
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()} == stamps
    assert [p.name for p in (tmp_path / "dwp").iterdir()] == [run_dir.name]


@pytest.mark.parametrize("args, needle", [
    (["train-bnn", "--sizes", "50,zero"], "--sizes must be comma-separated whole numbers"),
    (["train-bnn", "--prior", "dwp"], "needs the kernel VAEs: pass --vae-run"),
    (["collect-kernels", "--source-run", "MISSING"], "is not a run directory of `tfbdl dwp train-source`"),
    (["dwp-init", "--vae-run", "MISSING"], "is not a run directory of `tfbdl dwp train-vae`"),
])
def test_dwp_option_errors_are_one_line(args, needle, tmp_path):
    args = [str(tmp_path / "missing") if a == "MISSING" else a for a in args]
    result = _tfbdl("dwp", *args, "--scale", "tiny", "--out", str(tmp_path))
    assert result.returncode == 1, result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len([line for line in result.stderr.splitlines() if line.startswith("Error:")]) == 1


def test_stratified_splits_are_disjoint_stratified_and_seeded():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), [900, 1100, 1000, 950, 1050, 1000, 980, 1020, 990, 1010])
    labels = labels[rng.permutation(labels.size)]
    splits = stratified_splits(labels, 50, 10, seed=3)
    assert len(splits) == 10
    fractions = np.bincount(labels) / labels.size
    for ix in splits:
        assert ix.dtype == np.int64 and ix.size == 50 and np.all(np.diff(ix) > 0)
        per_class = np.bincount(labels[ix], minlength=10)
        assert np.all(np.abs(per_class - 50 * fractions) < 1)  # proportional, off by rounding only
    everything = np.concatenate(splits)
    assert np.unique(everything).size == everything.size  # disjoint
    again = stratified_splits(labels, 50, 10, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(splits, again))
    other = stratified_splits(labels, 50, 10, seed=4)
    assert not all(np.array_equal(a, b) for a, b in zip(splits, other))
    assert allocate_per_class([1, 1, 1], 2).tolist() == [1, 1, 0]  # ties go to the lower class
    assert allocate_per_class([6, 3, 1], 10).tolist() == [6, 3, 1]
    with pytest.raises(InvalidOptionError, match="need 16 examples of class 0, the training set has 15"):
        stratified_splits(np.r_[np.zeros(15, int), np.full(5, 9)], 10, 2, seed=0)  # 8 + 2 per split
    with pytest.raises(InvalidOptionError, match="need 600 examples"):
        stratified_splits(labels[:500], 300, 2, seed=0)


def test_small_helpers():
    assert parse_sizes("100, 50,100") == (50, 100) and parse_sizes(None) is None
    for bad in ("", "0", "5,a"):
        with pytest.raises(InvalidOptionError):
            parse_sizes(bad)
    results = [{"prior": p, "examples": 50, "split": j, "accuracy": a}
               for p, accs in (("normal", (0.6, 0.7)), ("dwp", (0.8, 0.9))) for j, a in enumerate(accs)]
    rows = accuracy_table(results, ("normal", "dwp"), (50,))
    assert rows[1]["accuracy_mean"] == pytest.approx(0.85)
    assert rows[1]["accuracy_std"] == pytest.approx(np.std([0.8, 0.9], ddof=1))
    sentence = prior_comparison(rows, ("normal", "dwp"), (50,))
    assert "highest mean accuracy at every size" in sentence and "DWP 0.850 vs standard normal 0.650" in sentence
    worse = prior_comparison(accuracy_table([{**r, "prior": {"normal": "dwp", "dwp": "normal"}[r["prior"]]}
                                             for r in results], ("normal", "dwp"), (50,)), ("normal", "dwp"), (50,))
    assert "not reproduced here" in worse


def test_log_uniform_prior_runs_on_the_references_truncated_alpha_layers():
    from tfbdl.dwp.priors import StandardNormalPrior, TruncatedLogUniformPrior

    assert isinstance(make_prior("log-uniform", None, 1), TruncatedLogUniformPrior)
    assert posterior_variance("log-uniform") == "alpha"
    assert isinstance(make_prior("normal", None, 1), StandardNormalPrior)
    assert posterior_variance("normal") == posterior_variance("dwp") == "log_sigma2"


def test_dwp_prior_options_reach_the_prior():
    vae = types.SimpleNamespace(encode=None, decode=None, kernel_size=5, latent=4)
    prior = make_prior("dwp", {5: vae}, 3, antithetic=True)
    assert prior.weight_samples == 3 and prior.antithetic
    assert not make_prior("dwp", {5: vae}, 1).antithetic  # the reference's plain draws by default


def test_fit_table_averages_over_splits_and_skips_old_results():
    results = [{"prior": "dwp", "examples": 50, "train_accuracy": acc,
                "kernels": {"conv1": {"mean_rms": 1.0, "sigma_median": 1.0},
                            "conv2": {"mean_rms": rms, "sigma_median": 0.01}}}
               for acc, rms in ((0.7, 0.002), (0.9, 0.004))]
    results.append({"prior": "normal", "examples": 50, "train_accuracy": 1.0})  # written before the kernels key
    lines = fit_table(results, ("normal", "dwp"), (50,))
    assert lines[2:] == ["| DWP | 50 | 0.800 | 0.0030 | 0.0100 |"]


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_log_sigma2_init_must_be_finite(value, tmp_path):
    result = _tfbdl("dwp", "train-bnn", "--prior", "normal", "--log-sigma2-init", value, "--scale", "tiny",
                    "--out", str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert "--log-sigma2-init" in result.stderr and "must be a finite number" in result.stderr
    assert not any(tmp_path.iterdir())  # refused before any run directory is made


def test_train_bnn_with_the_releases_vaes(shared_data_dir, tmp_path):
    folder = release_dir()
    if not (folder / "vae7x7.npz").is_file():
        pytest.skip(f"the deep weight prior release's VAEs are not in {folder}")
    result = _tfbdl("dwp", "train-bnn", "--release-vaes", str(folder), "--prior", "dwp", "--sizes", "50",
                    "--splits", "1", "--epochs", "3", "--scale", "tiny", "--out", str(tmp_path),
                    "--data-dir", str(shared_data_dir))
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "dwp-bnn").iterdir()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"]["release_vaes"] == str(folder.resolve())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    (row,) = metrics["runs"]
    assert row["prior"] == "dwp" and row["examples"] == 50 and 0.0 <= row["accuracy"] <= 1.0


def test_release_vaes_option_errors_are_one_line(tmp_path):
    missing = _tfbdl("dwp", "train-bnn", "--release-vaes", str(tmp_path), "--scale", "tiny", "--out", str(tmp_path))
    assert missing.returncode == 1 and "vae7x7.npz, vae5x5.npz not found there" in missing.stderr
    both = _tfbdl("dwp", "train-bnn", "--release-vaes", str(tmp_path), "--vae-run", str(tmp_path), "--scale", "tiny",
                  "--out", str(tmp_path))
    assert both.returncode == 1 and "not both" in both.stderr
    assert "Traceback" not in missing.stderr + both.stderr
