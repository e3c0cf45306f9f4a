"""Tests of tfbdl.dwp.vae: architecture, ELBO, training, resuming, saving and figures (CPU, seconds)."""

import numpy as np
import pytest

from tests.conftest import release_dir
from tests.dwp.release_dwp_oracle import (
    np_conv2d, np_conv_transpose2d, np_normal_log_prob, np_release_decode, np_release_encode)

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from tfbdl.dwp.vae import (  # noqa: E402
    REFERENCE_ARCHITECTURES,
    KernelVAE,
    plot_decoded_samples,
    plot_latent_space,
    train_kernel_vae,
)
from tfbdl.errors import DataFormatError, InvalidOptionError, RunDirectoryError, ShapeError  # noqa: E402
from tfbdl.io import RunDir  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _synthetic_bank(n=2048, k=7, latent=2, noise=0.05, seed=0):
    """Slices from a ``latent``-dim Gaussian code through a fixed linear map, plus small noise."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(k * k, latent)) * 0.3
    z = rng.normal(size=(n, latent))
    return (z @ a.T + noise * rng.normal(size=(n, k * k))).reshape(n, k, k).astype(np.float32)


@pytest.fixture(autouse=True)
def on_cpu():
    """Bitwise reproducibility is promised on a CPU."""
    with tf.device("/CPU:0"):
        yield


# --------------------------------------------------------------------------- architecture


@pytest.mark.parametrize("k,expected", [(7, 112_678), (5, 564_234)])
def test_reference_architectures_have_the_torch_parameter_counts(k, expected):
    """Counts of the reference Encoder/Decoder{7x7,5x5} modules at the paper's sizes, by hand:
    7x7 (h=32, d=2): encoder 320 + 18,496 + 36,928 + 2 * 130, decoder 1,216 + 36,928 + 18,464
    + 2 * 33; 5x5 (h=64, d=4): encoder 640 + 36,928 + 73,856 + 147,584 + 2 * 516, decoder
    640 + 2 * 147,584 + 8,256 + 2 * 65."""
    vae = KernelVAE(k, seed=0, **REFERENCE_ARCHITECTURES[k])
    assert vae.count_params() == expected
    assert all(v.dtype == "float32" for v in vae.trainable_variables)


@pytest.mark.parametrize("k,hidden,latent", [(7, 8, 2), (5, 8, 4), (3, 4, 2)])
def test_shapes(k, hidden, latent):
    vae = KernelVAE(k, hidden, latent, seed=1)
    w = np.random.default_rng(0).normal(size=(6, k, k)).astype(np.float32)
    mu, log_sigma = vae.encode(w)
    assert mu.shape == (6, latent) and log_sigma.shape == (6, latent)
    w_mu, w_log_sigma = vae.decode(mu)
    assert w_mu.shape == (6, k, k) and w_log_sigma.shape == (6, k, k)
    assert w_mu.dtype == tf.float32
    assert vae.elbo(w, seed=0).shape == (6,)
    assert vae(w).shape == (6,)
    samples = vae.sample_kernels(10, seed=0)
    assert samples.shape == (10, k, k) and samples.dtype == np.float32
    assert vae.reconstruct(w).shape == (6, k, k)
    assert vae.encode_means(w).shape == (6, latent)


def test_bad_arguments():
    with pytest.raises(InvalidOptionError, match="kernel_size 4"):
        KernelVAE(4, 8, 2)
    with pytest.raises(InvalidOptionError, match="latent"):
        KernelVAE(7, 8, 0)
    vae = KernelVAE(7, 4, 2, seed=0)
    with pytest.raises(ShapeError, match=r"\[n, 7, 7\]"):
        vae.encode(np.zeros((3, 5, 5)))
    with pytest.raises(ShapeError, match=r"\[n, 2\]"):
        vae.decode(np.zeros((3, 3)))
    with pytest.raises(ShapeError, match="at least 2"):
        train_kernel_vae(np.zeros((1, 7, 7)), hidden=4, latent=2, epochs=1, seed=0)
    with pytest.raises(InvalidOptionError, match="validation_fraction"):
        train_kernel_vae(np.zeros((4, 7, 7)), hidden=4, latent=2, epochs=1, seed=0, validation_fraction=1.0)


# --------------------------------------------------------------------------- ELBO


def test_elbo_equals_a_tfp_computation_with_the_same_noise():
    import tensorflow_probability as tfp

    tfd = tfp.distributions
    vae = KernelVAE(5, 8, 4, seed=2)
    w = _synthetic_bank(16, k=5, latent=4, seed=3)
    eps = np.random.default_rng(5).standard_normal((16, 4)).astype(np.float32)
    log_lik, kl = vae.elbo_terms(w, eps)

    z_mu, z_log_sigma = vae.encode(w)
    r = tfd.Normal(z_mu, tf.exp(z_log_sigma))
    z = z_mu + tf.exp(z_log_sigma) * eps
    w_mu, w_log_sigma = vae.decode(z)
    ref_ll = tf.reduce_sum(tfd.Normal(w_mu, tf.exp(w_log_sigma)).log_prob(w), axis=[1, 2])
    ref_kl = tf.reduce_sum(tfd.kl_divergence(r, tfd.Normal(0.0, 1.0)), axis=1)
    np.testing.assert_allclose(log_lik.numpy(), ref_ll.numpy(), rtol=1e-5)
    np.testing.assert_allclose(kl.numpy(), ref_kl.numpy(), rtol=1e-5)
    # the variances are softplus of the heads, as in the reference
    _, var_logit = vae.decoder(z)
    np.testing.assert_allclose(np.exp(2 * w_log_sigma.numpy()), tf.nn.softplus(var_logit).numpy(), rtol=1e-5)


def test_elbo_noise_is_fixed_by_the_seed():
    vae = KernelVAE(7, 4, 2, seed=0)
    w = _synthetic_bank(8)
    a, b, c = (vae.elbo(w, seed=s).numpy() for s in (3, 3, 4))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    # in inference mode the model's loss uses the encoder mean: deterministic
    np.testing.assert_array_equal(vae(w).numpy(), vae(w).numpy())
    np.testing.assert_allclose(vae(w).numpy(), -vae.elbo_terms(w, np.zeros((8, 2)))[0].numpy()
                               + vae.elbo_terms(w, np.zeros((8, 2)))[1].numpy(), rtol=1e-6)


def test_log_sigma_does_not_underflow():
    from tfbdl.dwp.vae import _log_softplus

    x = tf.constant([-200.0, -30.0, -20.0, 0.0, 30.0])
    out = _log_softplus(x).numpy()
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, np.log(np.log1p(np.exp(np.float64([-200, -30, -20, 0, 30])))), rtol=1e-6)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(_log_softplus(x))
    assert np.all(np.isfinite(tape.gradient(y, x).numpy()))


# --------------------------------------------------------------------------- training and resuming


def _run_dir(tmp_path, run_id):
    return RunDir.open(tmp_path, "dwp-vae-test", run_id, {"run": run_id})


_TRAIN = dict(hidden=16, latent=2, batch_size=64, learning_rate=3e-3, seed=7, verbose=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-epoch run straight through, and one stopped after epoch 1 then resumed to 2."""
    root = tmp_path_factory.mktemp("vae_runs")
    bank = _synthetic_bank()
    with tf.device("/CPU:0"):
        straight, history = train_kernel_vae(bank, epochs=2, run_dir=_run_dir(root, "straight"), **_TRAIN)
        first, history_1 = train_kernel_vae(bank, epochs=1, run_dir=_run_dir(root, "resumed"), **_TRAIN)
        resumed, history_2 = train_kernel_vae(bank, epochs=2, run_dir=_run_dir(root, "resumed"), **_TRAIN)
    return {"bank": bank, "root": root, "straight": (straight, history), "first": (first, history_1),
            "resumed": (resumed, history_2)}


def test_training_raises_the_elbo_and_lowers_the_reconstruction_error(trained):
    bank = trained["bank"]
    vae, history = trained["straight"]
    untrained = KernelVAE(7, 16, 2, seed=_TRAIN["seed"])  # the same initial weights
    before = float(np.mean(untrained.elbo(bank, seed=0)))
    after = float(np.mean(vae.elbo(bank, seed=0)))
    mse_before = float(np.mean((untrained.reconstruct(bank) - bank) ** 2))
    mse_after = float(np.mean((vae.reconstruct(bank) - bank) ** 2))
    assert after > before + 40.0, (before, after)  # nats per 7x7 slice
    assert mse_after < 0.4 * mse_before, (mse_before, mse_after)
    assert [r["epoch"] for r in history] == [1, 2]
    assert history[1]["eval_elbo"] > history[0]["eval_elbo"]
    assert history[1]["eval_recon_mse"] < history[0]["eval_recon_mse"]
    for row in history:
        assert row["train_elbo"] == -row["train_loss"]
        assert row["eval_elbo"] == pytest.approx(row["eval_log_lik"] - row["eval_kl"])
    # the learning rate decays linearly: lr * (1 - epoch index / epochs)
    assert [r["lr"] for r in history] == [pytest.approx(3e-3), pytest.approx(1.5e-3)]


def test_resumed_run_equals_the_uninterrupted_one_bit_for_bit(trained):
    straight, history = trained["straight"]
    resumed, history_2 = trained["resumed"]
    first, _ = trained["first"]
    for a, b, c in zip(straight.variables, resumed.variables, first.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    # the first run really stopped after one epoch (weights differ from the 2-epoch ones)
    assert any(not np.array_equal(a.numpy(), c.numpy()) for a, c in zip(straight.trainable_variables,
                                                                         first.trainable_variables))
    # the same metric rows (wall-clock seconds aside; accuracy is NaN, undefined for a VAE)
    assert all(np.isnan(r["train_accuracy"]) for r in history + history_2)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("seconds", "train_accuracy")}  # noqa: E731
                          for r in rows]
    assert strip(history_2) == strip(history)


def test_run_dir_holds_checkpoints_metrics_and_the_saved_vae(trained):
    folder = trained["root"] / "dwp-vae-test" / "resumed"
    run = RunDir(folder, "dwp-vae-test", "resumed", {"run": "resumed"})
    rows = run.read_metrics_rows("kernel_vae_7x7_metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2]
    assert run.is_done("kernel_vae_7x7/epoch-2")
    assert (folder / "checkpoints" / "kernel_vae_7x7" / "checkpoint.json").exists()
    loaded = KernelVAE.load(folder / "kernel_vae_7x7.h5")
    resumed, _ = trained["resumed"]
    w = trained["bank"][:32]
    np.testing.assert_array_equal(loaded.elbo(w, seed=1).numpy(), resumed.elbo(w, seed=1).numpy())


def test_rerunning_a_finished_run_restores_it_without_training(trained):
    resumed, history_2 = trained["resumed"]
    again, history_3 = train_kernel_vae(trained["bank"], epochs=2, run_dir=_run_dir(trained["root"], "resumed"),
                                        **_TRAIN)
    assert len(history_3) == 2 and [r["epoch"] for r in history_3] == [1, 2]
    for a, b in zip(resumed.variables, again.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_resuming_with_another_seed_is_refused(trained):
    with pytest.raises(RunDirectoryError, match="seed"):
        train_kernel_vae(trained["bank"], epochs=2, run_dir=_run_dir(trained["root"], "resumed"),
                         **{**_TRAIN, "seed": 8})


def test_validation_split_is_held_out():
    bank = _synthetic_bank(64, seed=1)
    _, history = train_kernel_vae(bank, hidden=4, latent=2, epochs=1, batch_size=32, seed=0, verbose=False,
                                  validation_fraction=0.25)
    row = history[0]
    assert np.isfinite(row["eval_elbo"]) and np.isfinite(row["train_elbo"])
    from tfbdl.dwp.vae import held_out_split

    train_idx, val_idx = held_out_split(64, 0.25, 0)
    assert len(val_idx) == 16 and len(train_idx) == 48
    assert not set(train_idx) & set(val_idx)


# --------------------------------------------------------------------------- saving


def test_save_load_gives_identical_outputs(tmp_path):
    vae = KernelVAE(5, 8, 4, seed=11)
    w = _synthetic_bank(20, k=5, latent=4)
    path = vae.save(tmp_path / "vae.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vae.h5"]
    loaded = KernelVAE.load(path)
    assert loaded.get_config() == {"kernel_size": 5, "hidden": 8, "latent": 4}
    for a, b in zip(vae.encode(w), loaded.encode(w)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    z = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    for a, b in zip(vae.decode(z), loaded.decode(z)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(vae.elbo(w, seed=2).numpy(), loaded.elbo(w, seed=2).numpy())
    np.testing.assert_array_equal(vae.sample_kernels(7, seed=3), loaded.sample_kernels(7, seed=3))


def test_load_rejects_other_files(tmp_path):
    from tfbdl.io import save_h5

    save_h5(tmp_path / "x.h5", {"a": np.zeros(2)}, {"format": "nope"})
    with pytest.raises(DataFormatError, match="not a saved kernel VAE"):
        KernelVAE.load(tmp_path / "x.h5")


def test_samples_and_means():
    vae = KernelVAE(7, 4, 2, seed=0)
    means = vae.sample_kernels(50, seed=1, mean=True)
    samples = vae.sample_kernels(50, seed=1)
    np.testing.assert_array_equal(means, vae.sample_kernels(50, seed=1, mean=True))
    z = np.random.default_rng(1).standard_normal((50, 2)).astype(np.float32)
    np.testing.assert_array_equal(means, vae.decode(z)[0].numpy())  # z drawn first from the same stream
    assert not np.allclose(samples, means)


# --------------------------------------------------------------------------- figures


@pytest.mark.parametrize("k,latent", [(7, 2), (5, 4)])
def test_figures_are_png(tmp_path, k, latent):
    vae = KernelVAE(k, 4, latent, seed=0)
    bank = _synthetic_bank(300, k=k, latent=latent)
    p1 = plot_latent_space(vae, bank, tmp_path / "latent.png", max_points=200)
    p2 = plot_decoded_samples(vae, tmp_path / "samples.png", num=10, seed=0)
    for p in (p1, p2):
        data = p.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 1000


# --------------------------------------------------------------------------- the release's VAEs


def _release_file(name):
    path = release_dir() / name
    if not path.is_file():
        pytest.skip(f"the deep weight prior release's {name} is not at {path}")
    return path


def test_oracle_transposed_conv_is_the_adjoint_of_the_conv():
    """torch's ConvTranspose2d(weight) is the input-gradient of Conv2d(weight) (same weight
    tensor, read [in_t, out_t] = [out_conv, in_conv]): <convT(x), y> = <x, conv(y)>."""
    rng = np.random.default_rng(0)
    for stride, padding in [(1, 0), (1, 1), (2, 1)]:
        weight = rng.normal(size=(3, 4, 3, 3))
        x = rng.normal(size=(2, 3, 4, 4))
        out = np_conv_transpose2d(x, weight, np.zeros(4), stride=stride, padding=padding)
        y = rng.normal(size=out.shape)
        # a strided conv is the stride-1 one subsampled
        conv_y = np_conv2d(y, weight, np.zeros(3), padding)[:, :, ::stride, ::stride][:, :, :4, :4]
        assert conv_y.shape == x.shape
        np.testing.assert_allclose(np.sum(out * y), np.sum(x * conv_y), rtol=1e-12)
    # padding-0 stride-1 transposed conv grows 1 -> 3 and is the kernel times the pixel
    x = np.array([[[[2.0]]]])
    weight = rng.normal(size=(1, 1, 3, 3))
    np.testing.assert_allclose(np_conv_transpose2d(x, weight, np.zeros(1))[0, 0], 2.0 * weight[0, 0])


@pytest.mark.parametrize("k,hidden,latent", [(7, 32, 2), (5, 64, 4)])
def test_from_release_equals_the_release_networks(k, hidden, latent):
    path = _release_file(f"vae{k}x{k}.npz")
    bank = np.load(_release_file(f"conv{k}x{k}_test.npy"))
    with np.load(path) as f:
        sd = {name: f[name] for name in f.files}
    vae = KernelVAE.from_release(path)
    assert vae.get_config() == {"kernel_size": k, "hidden": hidden, "latent": latent}
    assert vae.count_params() == sum(v.size for v in sd.values())

    # decoder p(w | z) for seeded z ~ N(0, I), and z far out in the tails (|z| ~ 4 sigma, where
    # the 5x5 decoder's outputs grow to |mu| ~ 20 and var ~ 1e3: float32 error relative to those)
    z = np.random.default_rng(k).standard_normal((64, latent)).astype(np.float32)
    for rows, scale, tol in [(slice(8, None), 1.0, 1e-5), (slice(None, 8), 4.0, 1e-4)]:
        zs = (scale * z[rows]).astype(np.float32)
        ref_mu, ref_var = np_release_decode(sd, k, zs.astype(np.float64)[:, :, None, None])
        mu, log_sigma = (t.numpy() for t in vae.decode(zs))
        np.testing.assert_allclose(mu, ref_mu[:, 0], rtol=tol, atol=1e-5)
        np.testing.assert_allclose(np.exp(2.0 * log_sigma), ref_var[:, 0], rtol=tol, atol=1e-7)
        np.testing.assert_allclose(log_sigma, 0.5 * np.log(ref_var[:, 0]), rtol=0, atol=tol)

    # encoder r(z | w) on the release's own test kernels
    w = bank[np.random.default_rng(1).choice(len(bank), 128, replace=False)]
    ref_z_mu, ref_z_var = np_release_encode(sd, k, w.astype(np.float64))
    z_mu, z_log_sigma = (t.numpy() for t in vae.encode(w[:, 0]))
    np.testing.assert_allclose(z_mu, ref_z_mu[:, :, 0, 0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(z_log_sigma, 0.5 * np.log(ref_z_var[:, :, 0, 0]), rtol=0, atol=1e-5)

    # the per-kernel terms of the release's kl_dwp / train-vae loss at z = mu + sqrt(var) * eps
    eps = np.random.default_rng(2).standard_normal((len(w), latent)).astype(np.float32)
    z_s = ref_z_mu[:, :, 0, 0] + np.sqrt(ref_z_var[:, :, 0, 0]) * eps
    w_mu, w_var = np_release_decode(sd, k, z_s[:, :, None, None])
    ref_ll = np.sum(np_normal_log_prob(w.astype(np.float64), w_mu, w_var), axis=(1, 2, 3))
    m, v = ref_z_mu[:, :, 0, 0], ref_z_var[:, :, 0, 0]
    ref_kl = np.sum(0.5 * (v + m ** 2 - 1.0 - np.log(v)), axis=1)
    log_lik, kl = (t.numpy() for t in vae.elbo_terms(w[:, 0], eps))
    np.testing.assert_allclose(log_lik, ref_ll, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(kl, ref_kl, rtol=1e-5, atol=1e-5)


def _write_npz(path, arrays):
    np.savez(path, **arrays)
    return path


def test_from_release_rejects_other_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        KernelVAE.from_release(tmp_path / "absent.npz")
    (tmp_path / "junk.npz").write_bytes(b"not an archive at all")
    with pytest.raises(DataFormatError, match="not a readable .npz"):
        KernelVAE.from_release(tmp_path / "junk.npz")
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(DataFormatError, match="single array"):
        KernelVAE.from_release(tmp_path / "one.npy")
    np.savez(tmp_path / "objects.npz", a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(DataFormatError, match="cannot be read"):
        KernelVAE.from_release(tmp_path / "objects.npz")
    with pytest.raises(DataFormatError, match="not a state dict of the deep weight prior release"):
        KernelVAE.from_release(_write_npz(tmp_path / "other.npz", {"w": np.zeros(3)}))

    # a 7x7 state dict at small sizes, then broken in one place at a time
    good = {
        "encoder.features.0.weight": np.zeros((4, 1, 3, 3)), "encoder.features.0.bias": np.zeros(4),
        "encoder.features.2.weight": np.zeros((8, 4, 3, 3)), "encoder.features.2.bias": np.zeros(8),
        "encoder.features.4.weight": np.zeros((8, 8, 3, 3)), "encoder.features.4.bias": np.zeros(8),
        "encoder.fc_mu.weight": np.zeros((2, 8, 1, 1)), "encoder.fc_mu.bias": np.zeros(2),
        "encoder.fc_var.weight": np.zeros((2, 8, 1, 1)), "encoder.fc_var.bias": np.zeros(2),
        "decoder.decoder.0.weight": np.zeros((2, 8, 3, 3)), "decoder.decoder.0.bias": np.zeros(8),
        "decoder.decoder.2.weight": np.zeros((8, 8, 3, 3)), "decoder.decoder.2.bias": np.zeros(8),
        "decoder.decoder.4.weight": np.zeros((8, 4, 3, 3)), "decoder.decoder.4.bias": np.zeros(4),
        "decoder.fc_mu.weight": np.zeros((1, 4, 1, 1)), "decoder.fc_mu.bias": np.zeros(1),
        "decoder.fc_var.weight": np.zeros((1, 4, 1, 1)), "decoder.fc_var.bias": np.zeros(1),
    }
    vae = KernelVAE.from_release(_write_npz(tmp_path / "good.npz", good))
    assert vae.get_config() == {"kernel_size": 7, "hidden": 4, "latent": 2}
    missing = {key: v for key, v in good.items() if key != "decoder.fc_var.bias"}
    with pytest.raises(DataFormatError, match=r"closest is the 7x7 one, missing \['decoder.fc_var.bias'\]"):
        KernelVAE.from_release(_write_npz(tmp_path / "missing.npz", missing))
    with pytest.raises(DataFormatError, match=r"unexpected \['extra'\]"):
        KernelVAE.from_release(_write_npz(tmp_path / "extra.npz", {**good, "extra": np.zeros(1)}))
    # a ConvTranspose2d weight given in the Conv2d layout [out, in, kh, kw]
    swapped = {**good, "decoder.decoder.4.weight": np.zeros((4, 8, 3, 3))}
    expected = r"decoder.decoder.4.weight should be a float array of shape \(8, 4, 3, 3\)"
    with pytest.raises(DataFormatError, match=expected):
        KernelVAE.from_release(_write_npz(tmp_path / "swapped.npz", swapped))
    with pytest.raises(DataFormatError, match="should be a float array"):
        KernelVAE.from_release(_write_npz(tmp_path / "ints.npz", {**good, "encoder.fc_mu.bias": np.zeros(2, int)}))
    with pytest.raises(DataFormatError, match="encoder.features.0.weight should be a Conv2d weight"):
        KernelVAE.from_release(_write_npz(tmp_path / "flat.npz", {**good, "encoder.features.0.weight": np.zeros(36)}))
    with pytest.raises(DataFormatError, match="NaN or inf"):
        KernelVAE.from_release(_write_npz(tmp_path / "nan.npz", {**good, "decoder.fc_mu.bias": np.full(1, np.nan)}))
