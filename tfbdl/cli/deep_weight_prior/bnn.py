"""Stage 4, Bayesian networks: the Bayesian fconv with one prior on both convolutions (standard
normal, log-uniform or the deep weight prior), trained on few target examples per stratified split
(``train-bnn.py``), each run a resumable sub-run ``runs/<prior>-n<size>-split<j>``."""

from __future__ import annotations

import click
import numpy as np

from tfbdl.cli.deep_weight_prior.data import target_data
from tfbdl.cli.deep_weight_prior.figures import bnn_figure
from tfbdl.cli.deep_weight_prior.presets import SEED_BNN, BnnPreset
from tfbdl.cli.deep_weight_prior.report import bnn_summary
from tfbdl.cli.deep_weight_prior.rundirs import load_vaes, read_json
from tfbdl.data.subsets import stratified_splits
from tfbdl.dwp.fitting import accuracy_table, fit_bnn_blocks
from tfbdl.seeding import derive_seed

__all__ = ["kernel_posterior_scale", "make_prior", "posterior_variance", "stage_bnn", "train_bnn"]


def make_prior(name: str, vaes, dwp_samples: int, antithetic: bool = False):
    """The prior object of ``name`` (one of :data:`PRIORS`). The log-uniform prior is the reference's:
    Kingma et al.'s KL for ``alpha <= 1`` on ``bayes-mtrunca`` layers (see :func:`posterior_variance`)."""
    from tfbdl.dwp.priors import DeepWeightPrior, StandardNormalPrior, TruncatedLogUniformPrior

    if name == "normal":
        return StandardNormalPrior()
    if name == "log-uniform":
        return TruncatedLogUniformPrior()
    return DeepWeightPrior(vaes, weight_samples=dwp_samples, antithetic=antithetic)


def posterior_variance(prior_name: str) -> str:
    """The posterior's variance parameterisation for ``prior_name``: the reference runs the log-uniform
    prior on ``MuTruncAlphaFFGConv2d`` (``sigma^2 = alpha mu^2``, ``alpha <= 1``), the others on
    ``BayesConv2d`` (``log sigma^2``)."""
    return "alpha" if prior_name == "log-uniform" else "log_sigma2"


def kernel_posterior_scale(layer) -> dict:
    """Root mean square of a Bayesian conv layer's posterior means and median posterior std: where the
    prior left the kernels (a prior whose mode is at zero shrinks the means well below its samples' scale)."""
    mu = layer.kernel_mu.numpy()
    sigma = np.sqrt(np.asarray(layer.kernel_sigma2))
    return {"mean_rms": float(np.sqrt(np.mean(np.square(mu)))), "sigma_median": float(np.median(sigma))}


def train_bnn(sub, preset: BnnPreset, prior_name: str, data: dict, train_index: np.ndarray, vaes,
              seed: int) -> dict:
    """One Bayesian fconv with ``prior_name`` on both convolutions, trained on ``train_index``
    (resumable in ``sub``); its test metrics (``test_samples``-sample ensemble and posterior mean)."""
    import keras

    from tfbdl.dwp.bnn import bayesian_fconv, predict_bnn_proba
    from tfbdl.metrics import classification_metrics

    keras.utils.set_random_seed(seed)
    prior = make_prior(prior_name, vaes, preset.dwp_samples, preset.dwp_antithetic)
    model = bayesian_fconv(data["num_classes"], data["x_train"].shape[1:], widths=preset.widths,
                           priors={"conv1": prior, "conv2": prior}, init=preset.init,
                           vaes=vaes if preset.init == "dwp" else None, variance=posterior_variance(prior_name),
                           log_sigma2_init=preset.log_sigma2_init, seed=seed)
    x, y = data["x_train"][train_index], data["y_train"][train_index]
    history = fit_bnn_blocks(model, x, y, epochs=preset.epochs, block=preset.block, batch_size=preset.batch_size,
                             learning_rate=preset.learning_rate, seed=seed, run_dir=sub, name="bnn")
    ensemble = classification_metrics(predict_bnn_proba(model, data["x_test"], preset.test_samples, seed=seed,
                                                        batch_size=1000), data["y_test"])
    mean = classification_metrics(predict_bnn_proba(model, data["x_test"], 0, seed=seed, batch_size=1000),
                                  data["y_test"])
    return {"accuracy": ensemble["accuracy"], "nll": ensemble["nll"], "ece": ensemble["ece"],
            "mean_accuracy": mean["accuracy"], "train_loss": history[-1]["train_loss"],
            "train_accuracy": history[-1]["train_accuracy"], "kl": history[-1]["kl"], "seed": seed,
            "kernels": {name: kernel_posterior_scale(model.get_layer(name)) for name in ("conv1", "conv2")}}


def stage_bnn(run, preset: BnnPreset, vae_run, *, scale: str, data_dir, seed: int) -> dict:
    """Every prior x size x split BNN (each a resumable sub-run ``runs/<prior>-n<size>-split<j>``),
    then the accuracy table, its figure and the summary; finishes ``run``. ``vae_run``: a finished
    VAE run, the release's VAE folder (a path) or None when no prior or init needs the VAEs."""
    from tfbdl.io import RunDir
    from tfbdl.progress import progress

    data, provenance = target_data(scale, data_dir, preset.n_test, seed)
    run.record_data(provenance)
    splits = {size: stratified_splits(data["y_train"], size, preset.splits, derive_seed(seed, SEED_BNN))
              for size in preset.sizes}
    vaes = load_vaes(vae_run) if vae_run is not None else None
    results = []
    total = len(preset.sizes) * preset.splits * len(preset.priors)
    with progress(total, "dwp BNNs") as bar:
        for size in preset.sizes:
            for j in range(preset.splits):
                for prior in preset.priors:
                    name = f"{prior}-n{size}-split{j}"
                    sub = RunDir.open(run.path, "runs", name, {**run.config, "prior": prior, "examples": size,
                                                                "split": j})
                    if not sub.is_complete:
                        result = train_bnn(sub, preset, prior, data, splits[size][j], vaes,
                                           derive_seed(seed, SEED_BNN, size, j))
                        sub.write_json("result.json", {**result, "train_index": splits[size][j]})
                        sub.finish()
                        click.echo(f"BNN {name}: test accuracy {result['accuracy']:.4f}", err=True)
                    result = read_json(sub, "result.json")
                    result.pop("train_index")
                    results.append({"prior": prior, "examples": size, "split": j, **result})
                    bar.update(1)
    rows = accuracy_table(results, preset.priors, preset.sizes)
    metrics = {"table": rows, "runs": results, "n_test": int(data["y_test"].size),
               "n_train_pool": int(data["y_train"].size)}
    run.write_metrics(metrics)
    bnn_figure(run, rows, preset)
    run.finish(bnn_summary(preset, metrics, provenance))
    return metrics
