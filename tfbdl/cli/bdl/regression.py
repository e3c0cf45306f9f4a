"""``tfbdl bdl regression-1d``: HMC vs deep ensembles vs mean-field VI on 1-D regression with gaps.

Wilson & Izmailov (2020), "Bayesian Deep Learning and a Probabilistic Perspective of
Generalization", the comparison of deep ensembles with HMC as BMA (after izmailovpavel/understandingbdl,
``experiments/deep_ensembles/1d regression_*.ipynb``): on data in three clusters, a many-chain
HMC posterior and a deep ensemble both become uncertain in the gaps between the clusters, while
mean-field VI stays nearly as confident there as on the data.

All three methods share one model: an MLP on the features ``(x, x^2)`` with ReLU hidden layers
(the reference's ``RegNet([10, 10, 10], input_dim=2)``), a Gaussian likelihood with the known
noise of the generator and an ``N(0, prior_scale^2)`` prior on every weight and bias.

- HMC: ``--num-chains`` chains (tfp.mcmc, one graph), each started at a MAP fit from its own
  random initialisation (the reference pre-trains every chain too), a burn-in with step-size
  adaptation, then ``--hmc-samples`` kept draws per chain.
- Deep ensemble: ``--ensemble-size`` Keras MLPs trained to the MAP of the same posterior from
  different seeds (:mod:`tfbdl.bayes.ensembles`).
- VI: a fully factorised Gaussian over the same weights (:mod:`tfbdl.bayes.vi`), started at the
  MAP of chain 0.

Every piece is written atomically and reused on rerun: ``data/gap_data.npz``, ``map_starts.npz``,
``hmc_samples.npz``, ``ensemble/member-XXX.weights.npz``, ``vi.npz``.
TensorFlow is imported inside the functions, so ``tfbdl --help`` stays fast.
"""

from __future__ import annotations

import dataclasses

import click
import numpy as np

from tfbdl.cli.bdl.group import bdl
from tfbdl.cli.bdl.presets import REGRESSION_PRESETS, RegressionPreset
from tfbdl.cli.bdl.regression_fit import cached, layer_sizes, map_starts, predictions, run_ensemble, run_hmc, run_vi
from tfbdl.cli.bdl.regression_metrics import STUCK_ACCEPTANCE, chain_rhat, method_metrics, oracle_loglik
from tfbdl.cli.bdl.regression_report import regression_figure, regression_summary
from tfbdl.cli.common import open_run, record_run
from tfbdl.cli.options import FiniteFloatRange, common_run_options
from tfbdl.errors import InvalidOptionError

__all__ = ["EXPERIMENT", "parse_hidden", "regression_1d_command", "resolve_preset", "run_regression_1d"]

EXPERIMENT = "bdl-regression-1d"


def parse_hidden(text: str) -> tuple[int, ...]:
    """``"10,10,10"`` -> ``(10, 10, 10)``; InvalidOptionError for anything but positive integers."""
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        widths = ()
    if not widths or any(w < 1 for w in widths):
        raise InvalidOptionError(f"--hidden must be comma-separated positive layer widths such as 10,10,10; "
                                 f"got {text!r}")
    return widths


def resolve_preset(scale: str, **overrides) -> RegressionPreset:
    """The scale's preset with the options given on the command line replacing its values."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if "hidden" in given:
        given["hidden"] = parse_hidden(given["hidden"])
    return dataclasses.replace(REGRESSION_PRESETS[scale], **given)


def run_regression_1d(*, preset: RegressionPreset, scale: str, out: str, data_dir, seed: int, resume: bool):
    """Run (or resume) the experiment; return its RunDir."""
    from tfbdl.data.toy_regression import GapDataConfig

    data_config = GapDataConfig(points_per_cluster=preset.points_per_cluster)
    config = {"experiment": EXPERIMENT, "scale": scale, "seed": seed, "data_dir": data_dir,
              "data_config": data_config.to_dict(), **dataclasses.asdict(preset)}
    run = open_run(EXPERIMENT, config, out=out, scale=scale, resume=resume)
    if run.is_complete:
        click.echo("run already complete; nothing to do", err=True)
        record_run(run)
        return run
    metrics = _compute(run, preset, data_config, seed)
    run.finish(regression_summary(preset, metrics))
    record_run(run)
    return run


def _compute(run, preset: RegressionPreset, data_config, seed: int) -> dict:
    """Data, the three posteriors, their metrics and the figure; the metrics."""
    import keras

    from tfbdl.bayes.hmc import bnn_log_prob
    from tfbdl.data.toy_regression import features, load_or_make_gap_data

    keras.utils.set_random_seed(seed)
    data = load_or_make_gap_data(run.file("data/gap_data.npz"), seed, data_config)
    run.record_data([{"dataset": "gap-regression-1d", "source": "generated", "seed": seed,
                      "file": "data/gap_data.npz", "formula": data_config.to_dict()["formula"]}])
    x_train = features(data.x)
    density = bnn_log_prob(layer_sizes(preset, x_train.shape[1]), x_train, data.y.astype(np.float32),
                           prior_scale=preset.prior_scale, noise_scale=data.config.noise_std)
    starts = cached(run.file("map_starts.npz"), lambda: {
        "weights": map_starts(density, preset.num_chains, preset.pretrain_steps, seed)})["weights"]
    hmc = run_hmc(run, density, starts, preset, seed)
    ensemble = run_ensemble(run, data, x_train, preset, seed)
    vi = run_vi(run, data, x_train, starts, preset, seed)

    outputs = predictions(data, features, density, hmc, ensemble, vi, preset, seed)
    metrics = {"methods": {name: method_metrics(data, f) for name, f in outputs.items()},
               "oracle_loglik": oracle_loglik(data), "n_train": int(data.x.size), "n_test": int(data.x_test.size),
               "noise_std": data.config.noise_std, "num_params": density.num_params}
    metrics["methods"]["hmc"].update(
        acceptance_rate=float(hmc["acceptance_rate"]), step_size=float(hmc["step_size"]),
        acceptance_rate_per_chain=[float(a) for a in hmc["acceptance_rate_per_chain"]],
        stuck_chains=int(np.sum(hmc["acceptance_rate_per_chain"] < STUCK_ACCEPTANCE)),
        rhat=chain_rhat(data, outputs["hmc"], preset.num_chains), seconds=float(hmc["seconds"]))
    members = [ensemble.member_info(m) for m in range(preset.ensemble_size)]
    metrics["methods"]["ensemble"].update(member_final_loss=[m["final_loss"] for m in members],
                                          seconds=float(sum(m["seconds"] for m in members)))
    tail = vi["losses"][-max(1, len(vi["losses"]) // 10):]
    metrics["methods"]["vi"].update(final_neg_elbo=float(np.mean(tail)), seconds=float(vi["seconds"]),
                                    mean_weight_stddev=float(np.mean(vi["stddev"])))
    run.write_metrics(metrics)
    regression_figure(run, data, outputs)
    return metrics


@bdl.command("regression-1d")
@click.option("--num-chains", type=click.IntRange(min=1), default=None,
              help="Parallel HMC chains, each from its own MAP start (default: scale preset).")
@click.option("--hmc-samples", type=click.IntRange(min=1), default=None, help="Kept HMC draws per chain.")
@click.option("--hmc-burnin", type=click.IntRange(min=2), default=None,
              help="HMC burn-in steps per chain (at least 2); the step size adapts during the first 80%.")
@click.option("--hmc-thinning", type=click.IntRange(min=1), default=None, help="HMC steps between kept draws.")
@click.option("--leapfrog", type=click.IntRange(min=1), default=None, help="Leapfrog steps per HMC proposal.")
@click.option("--pretrain-steps", type=click.IntRange(min=1), default=None,
              help="Adam steps of the MAP fit each HMC chain (and VI) starts from.")
@click.option("--ensemble-size", type=click.IntRange(min=1), default=None, help="Deep ensemble members.")
@click.option("--ensemble-steps", type=click.IntRange(min=1), default=None,
              help="Full-batch training steps per ensemble member.")
@click.option("--vi-steps", type=click.IntRange(min=1), default=None, help="Optimisation steps of mean-field VI.")
@click.option("--vi-draws", type=click.IntRange(min=1), default=None, help="VI weight draws in its predictive.")
@click.option("--hidden", default=None, help="Hidden layer widths, comma-separated (reference: 10,10,10).")
@click.option("--prior-scale", type=FiniteFloatRange(min=0, min_open=True), default=None,
              help="Std of the Gaussian prior on every weight and bias, shared by all three methods.")
@common_run_options
def regression_1d_command(num_chains, hmc_samples, hmc_burnin, hmc_thinning, leapfrog, pretrain_steps,
                          ensemble_size, ensemble_steps, vi_steps, vi_draws, hidden, prior_scale, scale, out,
                          data_dir, seed, resume):
    """HMC, deep ensembles and mean-field VI on 1-D regression with gaps: predictives side by side."""
    preset = resolve_preset(scale, num_chains=num_chains, hmc_samples=hmc_samples, hmc_burnin=hmc_burnin,
                            hmc_thinning=hmc_thinning, leapfrog=leapfrog, pretrain_steps=pretrain_steps,
                            ensemble_size=ensemble_size, ensemble_steps=ensemble_steps, vi_steps=vi_steps,
                            vi_draws=vi_draws, hidden=hidden, prior_scale=prior_scale)
    run = run_regression_1d(preset=preset, scale=scale, out=out, data_dir=data_dir, seed=seed, resume=resume)
    click.echo(f"bdl regression-1d run written to {run.path}")
