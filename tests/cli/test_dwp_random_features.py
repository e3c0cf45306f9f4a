"""tfbdl dwp random-features and dwp convergence: the kernel arms (DWP decoder means, Xavier, slices drawn
from a bank; ours and the release's), frozen features, the Adam steps, the tiny runs through the CLI
with their resume, the summaries' verdicts and the fidelity claims."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import release_dir
from tfbdl.cli import fidelity
from tfbdl.cli.deep_weight_prior.kernel_sources import draw_filters, find_pipeline_vaes, kernel_sources
from tfbdl.cli.deep_weight_prior.presets import RFE_PRESETS, RfePreset, parse_scales
from tfbdl.cli.deep_weight_prior.report import convergence_comparison, rfe_comparison, vae_comparison
from tfbdl.cli.deep_weight_prior.stepwise import DenseHeadAdam, _softmax_grads
from tfbdl.errors import InvalidOptionError

REPO = Path(__file__).resolve().parents[2]


def _release():
    folder = release_dir()
    if not (folder / "vae7x7.npz").is_file() or not (folder / "conv5x5_test.npy").is_file():
        pytest.skip(f"the deep weight prior release's VAEs and banks are not at {folder}")
    return folder


def _tfbdl(*args):
    return subprocess.run([sys.executable, "-m", "tfbdl.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=900)


# --------------------------------------------------------------------------- options


def test_paper_presets_pin_the_release_settings():
    from tfbdl.cli.deep_weight_prior.presets import CONVERGENCE_PRESETS, RFE_SCALES

    rfe, conv = RFE_PRESETS["paper"], CONVERGENCE_PRESETS["paper"]
    # SamsungLabs/deep-weight-prior, train-net.py: --lr 0.001 (Adam), --bs 256, --epochs 100 with lr_linear
    # (decay to 0 from --decrease_from 0); --rfe 1 hands the optimiser net.classifier's parameters only.
    assert (rfe.learning_rate, rfe.batch_size, rfe.epochs) == (1e-3, 256, 100)
    assert (conv.learning_rate, conv.batch_size) == (1e-3, 256)
    # SamsungLabs/deep-weight-prior, README.md: the MNIST fconv of the paper's experiments, --hid_dim 32 128.
    assert rfe.base_widths == conv.widths == (32, 128)
    # The release's figures (data/rfe.jpeg, data/fc.jpeg): k = 1/16 ... 1 on MNIST; 0..300 ConvNet steps and
    # 0..1000 VAE steps.
    assert rfe.scales == tuple(RFE_SCALES) == ("1/16", "1/8", "1/4", "1/2", "1")
    assert (conv.steps, conv.vae_steps) == (300, 1000) and rfe.n_train is None and conv.n_train is None
    # SamsungLabs/deep-weight-prior, models/lenet.py, FConvMNIST.weights_init: 'filters' takes
    # np.random.permutation(len(filters))[:N] (no slice twice); 'vae' takes vae.decode(z)[0], the decoder means
    # (the dwp arm: KernelVAE.sample_kernels(mean=True), tested above).
    bank = np.arange(10 * 4, dtype=np.float32).reshape(10, 2, 2)
    assert len({float(v) for v in draw_filters(bank, 10, seed=0)[:, 0, 0]}) == 10


def test_scales_are_parsed_in_increasing_order_and_bad_ones_refused():
    assert parse_scales("1,1/16, 1/4") == ("1/16", "1/4", "1")
    assert parse_scales(None) is None
    for bad in ("1/3", "", "1/16,,x"):
        with pytest.raises(InvalidOptionError, match="--scales must be comma-separated width scales"):
            parse_scales(bad)


def test_without_vaes_the_command_says_what_to_pass(tmp_path):
    with pytest.raises(InvalidOptionError, match="no kernel VAEs: pass --vae-run"):
        kernel_sources(None, None, tmp_path)


# --------------------------------------------------------------------------- the arms' kernels


def test_filters_are_drawn_from_the_bank_without_replacement_while_it_is_large_enough():
    bank = np.arange(50 * 9, dtype=np.float32).reshape(50, 3, 3)  # every slice distinct: its first entry is its id
    drawn = draw_filters(bank, 20, seed=3)
    ids = drawn[:, 0, 0] / 9
    assert drawn.shape == (20, 3, 3) and len(set(ids)) == 20
    np.testing.assert_array_equal(drawn, bank[ids.astype(int)])
    assert not np.array_equal(drawn, draw_filters(bank, 20, seed=4))
    more = draw_filters(bank, 120, seed=3)  # more than the bank holds: with replacement
    assert set((more[:, 0, 0] / 9).astype(int)) <= set(range(50)) and len(more) == 120


def _ours(tmp_path, *, relative: bool):
    """A finished VAE stage with untrained 7x7 / 5x5 VAEs and a bank of distinct slices, as `dwp run` lays it
    out (relative bank path) or as `dwp train-vae` does (absolute)."""
    from tfbdl.dwp.kernel_bank import save_kernel_bank
    from tfbdl.dwp.vae import KernelVAE
    from tfbdl.io import RunDir

    root = tmp_path / "dwp" / "tiny-x"
    bank = {7: np.random.default_rng(0).standard_normal((40, 7, 7)).astype(np.float32),
            5: np.random.default_rng(1).standard_normal((900, 5, 5)).astype(np.float32)}
    (root / "kernels").mkdir(parents=True)
    save_kernel_bank(root / "kernels" / "kernel_bank.h5", bank, {k: {"total": len(v), "kept": len(v), "dropped": 0}
                                                                  for k, v in bank.items()})
    bank_path = "kernels/kernel_bank.h5" if relative else str(root / "kernels" / "kernel_bank.h5")
    run = RunDir.open(tmp_path / "dwp", "tiny-x", "vae", {"stage": "vae", "bank": bank_path})
    for k, latent in ((7, 2), (5, 4)):
        KernelVAE(k, 4, latent, seed=k).save(run.file(f"kernel_vae_{k}x{k}.h5"))
    run.finish()
    return root, bank


def test_our_vaes_and_bank_are_found_under_out_and_the_filters_come_from_that_bank(tmp_path):
    from tfbdl.cli.deep_weight_prior.kernel_sources import initialise_kernels
    from tfbdl.dwp.kernel_bank import kernel_slices
    from tfbdl.nn.fconv import fconv

    root, bank = _ours(tmp_path, relative=True)
    assert find_pipeline_vaes(tmp_path) == root
    sources = kernel_sources(None, None, tmp_path)  # what run-all does: the newest `dwp run` under --out
    assert sources.arms() == ("dwp", "xavier", "filters") and sources.where == {"vae_run": str((root / "vae")
                                                                                                 .resolve())}
    model = fconv(10, widths=(6, 8), seed=1)
    initialise_kernels(model, "filters", sources, seed=5)
    for name, k in (("conv1", 7), ("conv2", 5)):
        slices = kernel_slices(model.get_layer(name).kernel.numpy())
        assert len(slices) == {7: 6, 5: 48}[k]
        # every slice is one of the bank's, none twice
        matches = [int(np.flatnonzero(np.all(bank[k] == s, axis=(1, 2)))[0]) for s in slices]
        assert len(set(matches)) == len(slices)
    # dwp: the VAE's decoder means at z ~ N(0, I), as KernelVAE.sample_kernels(mean=True) draws them
    from tfbdl.seeding import derive_seed

    initialise_kernels(model, "dwp", sources, seed=5)
    expected = sources.vaes["ours"][7].sample_kernels(6, derive_seed(5, 0), mean=True)
    np.testing.assert_allclose(kernel_slices(model.get_layer("conv1").kernel.numpy()), expected, rtol=1e-6)
    # xavier keeps the fconv's own kernels
    fresh = fconv(10, widths=(6, 8), seed=1)
    initialise_kernels(fresh, "xavier", sources, seed=5)
    np.testing.assert_array_equal(fresh.get_layer("conv2").kernel.numpy(),
                                  fconv(10, widths=(6, 8), seed=1).get_layer("conv2").kernel.numpy())


def test_a_train_vae_run_with_an_absolute_bank_path_works_as_vae_run(tmp_path):
    root, bank = _ours(tmp_path, relative=False)
    sources = kernel_sources(str(root / "vae"), None, tmp_path / "elsewhere")
    np.testing.assert_array_equal(sources.banks["ours"][5], bank[5])


def test_the_release_vaes_and_banks_load(tmp_path):
    folder = _release()
    sources = kernel_sources(None, str(folder), tmp_path)
    assert sources.arms() == ("xavier", "dwp-release", "filters-release")
    assert sources.banks["release"][7].shape == (1769, 7, 7) and sources.banks["release"][5].shape == (20448, 5, 5)
    np.testing.assert_array_equal(sources.banks["release"][7], np.load(folder / "conv7x7_train.npy")[:, 0])
    assert (sources.vaes["release"][7].latent, sources.vaes["release"][5].latent) == (2, 4)
    with pytest.raises(InvalidOptionError, match="--release-dir .*vae7x7.npz, vae5x5.npz not found there"):
        kernel_sources(None, str(tmp_path), tmp_path)


# --------------------------------------------------------------------------- training


def test_dense_head_gradients_and_adams_first_step():
    rng = np.random.default_rng(0)
    f, y = rng.standard_normal((16, 5)), rng.integers(0, 3, 16)
    w, b = rng.standard_normal((5, 3)), rng.standard_normal(3)
    loss, gw, gb = _softmax_grads(f, y, w, b)
    h = 1e-6
    for i, j in [(0, 0), (4, 2), (2, 1)]:
        shifted = w.copy()
        shifted[i, j] += h
        assert (_softmax_grads(f, y, shifted, b)[0] - loss) / h == pytest.approx(gw[i, j], abs=1e-4)
    head = DenseHeadAdam(w, b)
    head.step(f, y, 0.01)
    # Adam's first step moves every parameter by lr * g / (|g| + eps): lr against the gradient's sign
    np.testing.assert_allclose(head.params[0], w - 0.01 * np.sign(gw), atol=1e-8)
    np.testing.assert_allclose(head.params[1], b - 0.01 * np.sign(gb), atol=1e-8)


def test_random_features_train_the_dense_layer_only(tmp_path):
    from tfbdl.cli.deep_weight_prior.random_features import train_random_features
    from tfbdl.nn.fconv import fconv

    rng = np.random.default_rng(0)
    data = {"x_train": rng.random((120, 28, 28, 1), dtype=np.float32), "y_train": rng.integers(0, 10, 120),
            "x_test": rng.random((50, 28, 28, 1), dtype=np.float32), "y_test": rng.integers(0, 10, 50)}
    model = fconv(10, widths=(2, 4), seed=3)
    before = {v.path: v.numpy().copy() for v in model.weights}
    preset = RfePreset(scales=("1",), base_widths=(2, 4), seeds=1, epochs=3, batch_size=32, learning_rate=1e-2,
                       n_train=None, n_test=None)
    result = train_random_features(model, preset, data, seed=0)
    for v in model.weights:
        frozen = v.path.startswith(("conv1", "conv2"))
        assert np.array_equal(v.numpy(), before[v.path]) == frozen, v.path  # kernels and biases of the convs
    logits = model(data["x_test"], training=False).numpy()
    # the trained layer was written back: the model's own accuracy is the one recorded (float32 vs float64)
    assert abs(np.mean(np.argmax(logits, 1) == data["y_test"]) - result["test_accuracy"]) <= 1 / 50
    assert result["feature_dim"] == 4 * 9 and np.isfinite(result["train_loss"])


def test_adam_steps_match_adams_first_step_and_leave_other_variables_alone():
    import tensorflow as tf

    from tfbdl.cli.deep_weight_prior.stepwise import AdamSteps, cross_entropy

    w = tf.Variable(np.array([[1.0, -2.0], [0.5, 0.0]], np.float32))
    frozen = tf.Variable(np.array([3.0, -1.0], np.float32))
    steps = AdamSteps(cross_entropy(lambda x: x @ w + frozen), [w])
    x, y = np.array([[1.0, 2.0], [0.0, 1.0]], np.float32), np.array([0, 1], np.int32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x @ w + frozen))
    g = tape.gradient(loss, w).numpy()
    start = w.numpy().copy()
    steps.step(x, y, 0.1)
    np.testing.assert_allclose(w.numpy(), start - 0.1 * np.sign(g), atol=1e-5)
    np.testing.assert_array_equal(frozen.numpy(), [3.0, -1.0])
    steps.reset()
    assert float(steps.t.numpy()) == 0.0 and not np.any(steps.m[0].numpy())


def test_the_mnist_vae_bound_in_closed_form_and_its_encoder_takes_the_arm(tmp_path):
    from tfbdl.cli.deep_weight_prior.kernel_sources import initialise_kernels
    from tfbdl.cli.deep_weight_prior.mnist_vae import conv_vae, elbo_loss, eval_elbo
    from tfbdl.dwp.kernel_bank import kernel_slices

    encoder, decoder = conv_vae((3, 5), 2, seed=0)
    for layer in (encoder.get_layer("posterior"), decoder.get_layer("pixels")):
        for v in layer.weights:
            v.assign(np.zeros(v.shape, np.float32))
    # q(z|x) = N(0, I) (KL 0) and every pixel's logit 0: the bound is 784 log(1/2) whatever the image and noise
    x = (np.random.default_rng(0).random((7, 28, 28, 1)) > 0.5).astype(np.float32)
    eps = np.random.default_rng(1).standard_normal((7, 2)).astype(np.float32)
    assert eval_elbo(elbo_loss(encoder, decoder), x, eps, batch_size=3) == pytest.approx(-784 * np.log(2), rel=1e-5)
    root, bank = _ours(tmp_path, relative=True)
    initialise_kernels(encoder, "filters", kernel_sources(str(root), None, tmp_path), seed=2)
    for name, k in (("conv1", 7), ("conv2", 5)):
        for s in kernel_slices(encoder.get_layer(name).kernel.numpy()):
            assert np.any(np.all(bank[k] == s, axis=(1, 2)))


# --------------------------------------------------------------------------- summaries and fidelity claims


def _rfe_metrics(means: dict) -> dict:
    """metrics.json of random_features.stage_random_features; ``means``: {scale: {arm: mean}}."""
    table = [{"arm": arm, "scale": k, "accuracies": [m - 0.001, m + 0.001], "accuracy_mean": m,
              "accuracy_std": 0.0014} for k, row in means.items() for arm, m in row.items()]
    arms = list(next(iter(means.values())))
    return {"table": table, "arms": arms, "widths": {k: [2, 8] for k in means}, "n_train": 60000, "n_test": 10000}


def _conv_metrics(at50: dict) -> dict:
    """metrics.json of convergence.stage_convergence with the given means after 50 steps."""
    return {"steps": [0, 25, 50], "arms": list(at50),
            "curves": {arm: {"mean": [0.1, m - 0.05, m], "std": [0.0, 0.01, 0.002], "runs": []}
                       for arm, m in at50.items()}}


def _make_run(root: Path, metrics: dict) -> Path:
    root.mkdir(parents=True)
    (root / "metrics.json").write_text(json.dumps(metrics))
    (root / "config.json").write_text(json.dumps({"config": {"scale": "paper"}}))
    return root


def test_rfe_verdicts_and_claim(tmp_path):
    paper = _rfe_metrics({"1/16": {"dwp": 0.956, "xavier": 0.930, "filters": 0.963},
                          "1": {"dwp": 0.983, "xavier": 0.983, "filters": 0.987}})
    text = rfe_comparison(paper, ["1/16", "1"])
    assert text.startswith("Measured: at k = 1/16 every prior-drawn arm beat Xavier, as the paper reports (")
    assert "dwp against xavier, k = 1/16: 0.956 vs 0.930, +0.026; k = 1: 0.983 vs 0.983, +0.000 (within" in text
    claim = next(c for c in fidelity.CLAIMS if c.experiment == "dwp-random-features")
    assert fidelity.measure(claim, _make_run(tmp_path / "a", paper)) == (
        "yes: k = 1/16: dwp 0.956, xavier 0.930, filters 0.963; k = 1: dwp 0.983, xavier 0.983, filters 0.987")
    worse = _rfe_metrics({"1/16": {"dwp": 0.90, "xavier": 0.93}, "1/4": {"dwp": 0.95, "xavier": 0.95}})
    assert "no prior-drawn arm beat Xavier, so the paper's claim is not reproduced" in rfe_comparison(
        worse, ["1/16", "1/4"])
    assert fidelity.measure(claim, _make_run(tmp_path / "b", worse)).startswith("no: k = 1/16: dwp 0.900")


def test_convergence_verdicts_and_claim(tmp_path):
    paper = _conv_metrics({"dwp": 0.96, "xavier": 0.93, "filters": 0.965})
    text = convergence_comparison(paper)
    assert text.startswith("Measured: after 50 steps every prior-drawn start was ahead of Xavier")
    assert "dwp 0.960 vs xavier 0.930 after 50 steps, +0.030; ahead at 2 of 2 evaluated steps" in text
    claim = next(c for c in fidelity.CLAIMS if c.experiment == "dwp-convergence")
    assert fidelity.measure(claim, _make_run(tmp_path / "a", paper)) == (
        "yes: after 50 steps: dwp 0.960, xavier 0.930, filters 0.965")
    mixed = _conv_metrics({"dwp": 0.92, "xavier": 0.93, "filters": 0.931})
    assert "filters was ahead of Xavier but dwp was not; the difference for filters is within the std" in \
        convergence_comparison(mixed)
    assert fidelity.measure(claim, _make_run(tmp_path / "b", mixed)).startswith("in part: after 50 steps")


def test_vae_panel_verdict():
    panel = {"steps": [0, 100, 200, 1000], "curves": {
        "dwp": {"mean": [-540, -160, -115, -95], "std": [1, 5, 4, 2]},
        "xavier": {"mean": [-540, -200, -155, -96], "std": [1, 5, 4, 2]},
        "filters": {"mean": [-540, -165, -117, -94], "std": [1, 5, 4, 2]}}}
    text = vae_comparison(panel, ["dwp", "xavier", "filters"])
    assert text.startswith("Measured: after 200 steps every prior-drawn encoder had a higher lower bound than "
                           "Xavier's, as in the paper (dwp -115.0 vs xavier -155.0 nats after 200 steps, ahead at 3 "
                           "of 3 evaluated steps; filters -117.0 vs xavier -155.0 nats after 200 steps, ahead at 3")


# --------------------------------------------------------------------------- the CLI at tiny scale


def test_random_features_tiny_two_seeds_two_widths_and_resume(shared_data_dir, tmp_path):
    folder = _release()
    args = ("dwp", "random-features", "--scale", "tiny", "--out", str(tmp_path), "--data-dir", str(shared_data_dir),
            "--release-dir", str(folder))
    first = _tfbdl(*args)
    assert first.returncode == 0, first.stderr
    (run,) = (tmp_path / "dwp-random-features").iterdir()
    preset = RFE_PRESETS["tiny"]
    assert preset.seeds == 2 and len(preset.scales) == 2
    metrics = json.loads((run / "metrics.json").read_text())
    arms = ("xavier", "dwp-release", "filters-release")
    assert metrics["arms"] == list(arms) and metrics["widths"] == {"1/16": [1, 4], "1/4": [4, 16]}
    for row in metrics["table"]:
        assert len(row["accuracies"]) == 2 and all(0 <= a <= 1 for a in row["accuracies"])
        assert row["accuracy_mean"] == pytest.approx(np.mean(row["accuracies"]))
        assert row["accuracy_std"] == pytest.approx(np.std(row["accuracies"], ddof=1))
    assert {(r["arm"], r["scale"]) for r in metrics["table"]} == {(a, k) for a in arms for k in preset.scales}
    result = json.loads((run / "nets" / "filters-release-k1_4-seed1" / "result.json").read_text())
    assert result["widths"] == [4, 16] and result["feature_dim"] == 16 * 9
    summary = (run / "summary.md").read_text()
    assert "| filters (release bank) |" in summary and "Measured: at k = 1/16 " in summary
    assert (run / "random_features.png").stat().st_size > 1000
    stamps = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    again = _tfbdl(*args)
    assert again.returncode == 0, again.stderr
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == stamps


def test_convergence_tiny_resumes_per_arm_and_seed(shared_data_dir, tmp_path):
    folder = _release()
    args = ("dwp", "convergence", "--scale", "tiny", "--out", str(tmp_path), "--data-dir", str(shared_data_dir),
            "--release-dir", str(folder), "--steps", "6", "--eval-every", "4", "--vae-steps", "4")
    first = _tfbdl(*args)
    assert first.returncode == 0, first.stderr
    (run,) = (tmp_path / "dwp-convergence").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == [0, 4, 6]
    for arm in ("xavier", "dwp-release", "filters-release"):
        curve = metrics["curves"][arm]
        assert len(curve["runs"]) == 2 and all(len(r) == 3 for r in curve["runs"])
        np.testing.assert_allclose(curve["mean"], np.mean(curve["runs"], axis=0))
    vae = metrics["vae"]
    assert vae["steps"] == [0, 3, 4]  # the tiny preset evaluates every 3 VAE steps
    for arm in ("xavier", "dwp-release", "filters-release"):
        runs = np.asarray(vae["curves"][arm]["runs"])
        assert runs.shape == (2, 3) and np.all(runs < 0) and np.all(runs > -800)  # nats per image, above 784 ln 2
    assert "VAE on MNIST" in (run / "summary.md").read_text()
    # one arm's seed lost: only it is retrained, the others are read back
    import shutil

    shutil.rmtree(run / "nets" / "dwp-release-seed1")
    (run / "progress.json").write_text("{}")
    kept = (run / "nets" / "xavier-seed0" / "result.json").stat().st_mtime_ns
    again = _tfbdl(*args)
    assert again.returncode == 0, again.stderr
    assert (run / "nets" / "xavier-seed0" / "result.json").stat().st_mtime_ns == kept
    redone = json.loads((run / "nets" / "dwp-release-seed1" / "result.json").read_text())
    # the same seed retrains the same network (up to float noise in a 300-image accuracy)
    np.testing.assert_allclose(redone["test_accuracy"], metrics["curves"]["dwp-release"]["runs"][1], atol=0.01)
