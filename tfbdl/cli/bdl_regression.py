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
import math
import time

import click
import numpy as np

from tfbdl.cli.bdl_generalization import bdl
from tfbdl.cli.common import open_run, record_run
from tfbdl.cli.options import FiniteFloatRange, common_run_options
from tfbdl.errors import InvalidOptionError

EXPERIMENT = "bdl-regression-1d"
METHODS = {"hmc": "HMC", "ensemble": "Deep ensemble", "vi": "Mean-field VI"}
COLORS = {"hmc": "tab:blue", "ensemble": "tab:green", "vi": "tab:red"}
MAP_LEARNING_RATE = 1e-2
VI_LEARNING_RATE = 1e-2
VI_SAMPLE_SIZE = 4
STUCK_ACCEPTANCE = 0.05  # a chain accepting fewer proposals than this barely moved


@dataclasses.dataclass(frozen=True)
class RegressionPreset:
    """Sizes of one run. ``hmc_samples`` are kept draws per chain, ``hmc_thinning`` steps apart."""

    points_per_cluster: int
    hidden: tuple[int, ...]
    prior_scale: float
    num_chains: int
    hmc_samples: int
    hmc_burnin: int
    hmc_thinning: int
    leapfrog: int
    pretrain_steps: int
    ensemble_size: int
    ensemble_steps: int
    vi_steps: int
    vi_draws: int
    jit: bool


PRESETS = {
    "tiny": RegressionPreset(points_per_cluster=20, hidden=(10, 10, 10), prior_scale=1.0, num_chains=2,
                             hmc_samples=20, hmc_burnin=40, hmc_thinning=1, leapfrog=10, pretrain_steps=500,
                             ensemble_size=2, ensemble_steps=400, vi_steps=300, vi_draws=100, jit=False),
    "smoke": RegressionPreset(points_per_cluster=40, hidden=(10, 10, 10), prior_scale=1.0, num_chains=24,
                              hmc_samples=100, hmc_burnin=1000, hmc_thinning=10, leapfrog=20, pretrain_steps=2000,
                              ensemble_size=10, ensemble_steps=2000, vi_steps=6000, vi_draws=1000, jit=True),
    # The reference's notebooks: 10 HMC chains of 500 draws, 1000 leapfrog steps each, every chain
    # pre-trained 3000 steps; 50 ensemble members trained 20000 full-batch steps. Its VI length is
    # not stated; 20000 steps here.
    "paper": RegressionPreset(points_per_cluster=40, hidden=(10, 10, 10), prior_scale=1.0, num_chains=10,
                              hmc_samples=500, hmc_burnin=500, hmc_thinning=1, leapfrog=1000, pretrain_steps=3000,
                              ensemble_size=50, ensemble_steps=20000, vi_steps=20000, vi_draws=2000, jit=True),
}


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
    return dataclasses.replace(PRESETS[scale], **given)


# --------------------------------------------------------------------------- the three posteriors


def _layer_sizes(preset: RegressionPreset, n_features: int) -> tuple[int, ...]:
    return (n_features, *preset.hidden, 1)


def map_starts(density, num_chains: int, steps: int, seed: int) -> np.ndarray:
    """MAP fits ``[num_chains, D]`` of the log joint ``density``, one per random initialisation.

    All chains are optimised together (Adam is element-wise, so they do not interact), from
    weights ``N(0, 1/fan_in)`` and zero biases, with a cosine decay of the learning rate.
    """
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5747]))
    parts = []
    for shape in density.shapes:
        if len(shape) == 2:
            parts.append(rng.standard_normal((num_chains, *shape)).reshape(num_chains, -1) / math.sqrt(shape[0]))
        else:
            parts.append(np.zeros((num_chains, shape[0])))
    weights = tf.Variable(np.concatenate(parts, axis=1).astype(density.dtype.as_numpy_dtype))
    optimizer = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(MAP_LEARNING_RATE, steps, alpha=0.01))

    @tf.function
    def descend(n):
        for _ in tf.range(n):
            with tf.GradientTape() as tape:
                loss = -tf.reduce_sum(density(weights))
            optimizer.apply_gradients([(tape.gradient(loss, weights), weights)])

    descend(tf.constant(steps))
    return weights.numpy()


def _cached(path, make) -> dict:
    """The arrays saved at ``path``, or ``make()``'s arrays saved there atomically first (with the
    seconds ``make`` took, under ``"seconds"``)."""
    from tfbdl.io import atomic_path

    if not path.is_file():
        began = time.perf_counter()
        arrays = make()
        arrays["seconds"] = np.float64(time.perf_counter() - began)
        with atomic_path(path) as temp:
            np.savez(temp, **arrays)
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def run_hmc(run, density, starts: np.ndarray, preset: RegressionPreset, seed: int) -> dict:
    """All chains in one tfp.mcmc call (burn-in with step-size adaptation, then the kept draws),
    saved as ``hmc_samples.npz`` once done."""
    from tfbdl.bayes.hmc import hmc_sample

    def sample():
        click.echo(f"HMC: {preset.num_chains} chains x ({preset.hmc_burnin} burn-in + "
                   f"{preset.hmc_samples * preset.hmc_thinning} sampling steps), {preset.leapfrog} leapfrog "
                   f"steps each", err=True)
        result = hmc_sample(density, starts, num_results=preset.hmc_samples, num_burnin=preset.hmc_burnin,
                            step_size=1e-3, num_leapfrog=preset.leapfrog, seed=seed, thinning=preset.hmc_thinning,
                            jit_compile=preset.jit)
        return {"samples": result.samples, "acceptance_rate": np.float64(result.acceptance_rate),
                "acceptance_rate_per_chain": result.acceptance_rate_per_chain,
                "step_size": np.float64(result.step_size), "target_log_prob": result.target_log_prob}

    return _cached(run.file("hmc_samples.npz"), sample)


def run_ensemble(run, data, features, preset: RegressionPreset, seed: int):
    """Train (or reuse) every member; return the :class:`DeepEnsemble`."""
    from tfbdl.bayes.ensembles import DeepEnsemble, fit_regression_member
    from tfbdl.nn import mlp
    from tfbdl.progress import progress

    ensemble = DeepEnsemble(run.path / "ensemble", preset.ensemble_size,
                            lambda s: mlp(preset.hidden, 1, input_shape=(features.shape[1],), seed=s), seed=seed)

    def train(model, _seed):
        began = time.perf_counter()
        info = fit_regression_member(model, features, data.y, noise_scale=data.config.noise_std,
                                     prior_scale=preset.prior_scale, steps=preset.ensemble_steps,
                                     learning_rate=MAP_LEARNING_RATE)
        return {**info, "seconds": time.perf_counter() - began}

    todo = ensemble.missing()
    if todo:
        with progress(len(todo), "ensemble members") as bar:
            ensemble.fit(train, todo, on_member=lambda m, info: bar.update(1))
    return ensemble


def run_vi(run, data, features, starts: np.ndarray, preset: RegressionPreset, seed: int) -> dict:
    """Fit (or reuse) the mean-field Gaussian; its means, scales and loss trace."""

    def fit():
        import keras

        from tfbdl.bayes.vi import bnn_mean_field_vi

        click.echo(f"mean-field VI: {preset.vi_steps} steps", err=True)
        schedule = keras.optimizers.schedules.CosineDecay(VI_LEARNING_RATE, preset.vi_steps, alpha=0.01)
        result = bnn_mean_field_vi(_layer_sizes(preset, features.shape[1]), features, data.y.astype(np.float32),
                                   preset.prior_scale, data.config.noise_std, num_steps=preset.vi_steps,
                                   learning_rate=schedule, sample_size=VI_SAMPLE_SIZE, init_loc=starts[0],
                                   seed=seed, jit_compile=preset.jit)
        return {"mean": result.mean, "stddev": result.stddev, "losses": result.losses}

    return _cached(run.file("vi.npz"), fit)


# --------------------------------------------------------------------------- predictions, metrics


def predictions(data, features_fn, density, hmc: dict, ensemble, vi: dict, preset: RegressionPreset,
                seed: int) -> dict:
    """Sampled network outputs ``[S, P]`` of each method at the grid + held-out inputs ``P``."""
    from tfbdl.bayes.hmc import predict_bnn

    x_all = np.concatenate([data.x_grid, data.x_test, data.x_test_wide])
    inputs = features_fn(x_all)
    samples = hmc["samples"]
    hmc_f = predict_bnn(samples.reshape(-1, samples.shape[-1]), inputs, density)[..., 0]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5649]))
    draws = vi["mean"] + vi["stddev"] * rng.standard_normal((preset.vi_draws, vi["mean"].size))
    vi_f = predict_bnn(draws.astype(vi["mean"].dtype), inputs, density)[..., 0]
    return {"hmc": hmc_f, "ensemble": ensemble.predict(inputs)[..., 0], "vi": vi_f}


def _split(data, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Columns of ``values [..., P]`` for the grid, the in-cluster and the whole-range held-out points."""
    g, t = data.x_grid.size, data.x_test.size
    return values[..., :g], values[..., g:g + t], values[..., g + t:]


def method_metrics(data, outputs: np.ndarray) -> dict:
    """Predictive std per region, held-out log likelihood and RMSE of one method's samples [S, P]."""
    from tfbdl.bayes.ensembles import mixture_log_likelihood, regression_predictive
    from tfbdl.data.toy_regression import region_masks

    noise = data.config.noise_std
    grid, test, wide = _split(data, outputs)
    pred = regression_predictive(grid, noise)
    std, epistemic = pred.std[:, 0], pred.epistemic_std[:, 0]
    masks = region_masks(data.x_grid, data.config.clusters)
    out = {"std": {r: float(std[m].mean()) for r, m in masks.items() if m.any()},
           "epistemic_std": {r: float(epistemic[m].mean()) for r, m in masks.items() if m.any()},
           "samples": int(outputs.shape[0])}
    out["gap_to_cluster_std"] = out["std"]["gap"] / out["std"]["cluster"]
    for name, f, x, y in (("test", test, data.x_test, data.y_test), ("test_wide", wide, data.x_test_wide,
                                                                     data.y_test_wide)):
        out[f"{name}_loglik"] = float(mixture_log_likelihood(f, y, noise).mean())
        out[f"{name}_rmse"] = float(np.sqrt(np.mean((f.mean(axis=0) - y) ** 2)))
    return out


def chain_rhat(data, hmc_outputs: np.ndarray, num_chains: int) -> dict | None:
    """Potential scale reduction of the network output at each grid point across chains
    (function space: weight-space R-hat is meaningless under the network's symmetries)."""
    import tensorflow_probability as tfp

    from tfbdl.data.toy_regression import region_masks

    grid = _split(data, hmc_outputs)[0]
    if num_chains < 2 or grid.shape[0] // num_chains < 2:
        return None
    per_chain = grid.reshape(-1, num_chains, grid.shape[-1])  # [draws, chains, G]
    rhat = np.asarray(tfp.mcmc.potential_scale_reduction(per_chain.astype(np.float64)))
    masks = region_masks(data.x_grid, data.config.clusters)
    return {"median": float(np.median(rhat)), "max": float(rhat.max()),
            **{f"median_{r}": float(np.median(rhat[m])) for r, m in masks.items() if m.any()}}


def oracle_loglik(data) -> dict:
    """Held-out log likelihood of the true function with the true noise: the best any method can
    expect on average."""
    from tfbdl.bayes.ensembles import mixture_log_likelihood

    return {name: float(mixture_log_likelihood(data.true_function(x)[None], y, data.config.noise_std).mean())
            for name, x, y in (("test", data.x_test, data.y_test), ("test_wide", data.x_test_wide, data.y_test_wide))}


# --------------------------------------------------------------------------- the run


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
    run.finish(_summary(preset, metrics))
    record_run(run)
    return run


def _compute(run, preset: RegressionPreset, data_config, seed: int) -> dict:
    import keras

    from tfbdl.bayes.hmc import bnn_log_prob
    from tfbdl.data.toy_regression import features, load_or_make_gap_data

    keras.utils.set_random_seed(seed)
    data = load_or_make_gap_data(run.file("data/gap_data.npz"), seed, data_config)
    run.record_data([{"dataset": "gap-regression-1d", "source": "generated", "seed": seed,
                      "file": "data/gap_data.npz", "formula": data_config.to_dict()["formula"]}])
    x_train = features(data.x)
    density = bnn_log_prob(_layer_sizes(preset, x_train.shape[1]), x_train, data.y.astype(np.float32),
                           prior_scale=preset.prior_scale, noise_scale=data.config.noise_std)
    starts = _cached(run.file("map_starts.npz"), lambda: {
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
    _figure(run, data, outputs)
    return metrics


# --------------------------------------------------------------------------- figure and summary


def _figure(run, data, outputs: dict) -> None:
    """Three predictive panels sharing axes (data, mean, ±2 std) and a panel of the std across x."""
    from tfbdl.bayes.ensembles import regression_predictive
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    fig = plt.figure(figsize=(12, 7))
    grid_spec = fig.add_gridspec(2, 3, height_ratios=(1.6, 1.0), hspace=0.28, wspace=0.06)
    top = [fig.add_subplot(grid_spec[0, 0])]
    top += [fig.add_subplot(grid_spec[0, i], sharex=top[0], sharey=top[0]) for i in (1, 2)]
    bottom = fig.add_subplot(grid_spec[1, :], sharex=top[0])
    x = data.x_grid
    span = data.f_grid.max() - data.f_grid.min()
    ylim = (min(data.y.min(), data.f_grid.min()) - 0.6 * span, max(data.y.max(), data.f_grid.max()) + 0.6 * span)

    def shade(ax):
        for lo, hi in data.config.clusters:
            ax.axvspan(lo, hi, color="0.92", zorder=0)

    stds = {}
    for ax, (name, label) in zip(top, METHODS.items()):
        pred = regression_predictive(_split(data, outputs[name])[0], data.config.noise_std)
        mean, std = pred.mean[:, 0], pred.std[:, 0]
        stds[name] = std
        shade(ax)
        ax.fill_between(x, mean - 2 * std, mean + 2 * std, color=COLORS[name], alpha=0.25, lw=0, label="±2 std")
        ax.plot(x, data.f_grid, "k--", lw=1, label="true function")
        ax.plot(x, mean, color=COLORS[name], lw=1.8, label="predictive mean")
        ax.scatter(data.x, data.y, s=8, c="k", zorder=3, label="data")
        ax.set_title(f"{label} ({outputs[name].shape[0]} samples)", fontsize=10)
        ax.set_ylim(*ylim)
        ax.set_xlim(x[0], x[-1])
    for ax in top[1:]:
        ax.tick_params(labelleft=False)
    top[0].set_ylabel("y")
    top[0].legend(fontsize=7, loc="upper left")
    shade(bottom)
    for name, label in METHODS.items():
        bottom.plot(x, stds[name], color=COLORS[name], lw=1.8, label=label)
    bottom.axhline(data.config.noise_std, color="k", ls=":", lw=1, label="noise std")
    bottom.set_ylabel("predictive std")
    bottom.set_xlabel("x (grey: training clusters)")
    bottom.legend(fontsize=8, ncol=4, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    bottom.set_ylim(bottom=0)
    fig.suptitle("1-D regression with gaps: HMC vs deep ensemble vs mean-field VI", fontsize=11)
    save_figure(fig, run.file("regression_1d.png"))


def _conclusion(metrics: dict) -> str:
    """One sentence on what the numbers show, worded from the numbers themselves."""
    r = {name: m["gap_to_cluster_std"] for name, m in metrics["methods"].items()}
    text = (f"In the gaps the predictive std is {r['hmc']:.1f}x its in-cluster value for HMC, "
            f"{r['ensemble']:.1f}x for the deep ensemble and {r['vi']:.1f}x for mean-field VI")
    if min(r["hmc"], r["ensemble"]) > r["vi"]:
        return text + ": as in the paper, HMC and the deep ensemble grow their uncertainty between the " \
                      "clusters while mean-field VI underestimates it there."
    return text + ": unlike the paper, mean-field VI is not the least uncertain method in the gaps at " \
                  "these settings (short chains or few members can understate the others' spread)."


def _summary(preset: RegressionPreset, metrics: dict) -> str:
    m = metrics["methods"]
    hmc = m["hmc"]
    rhat = hmc["rhat"]
    rhat_text = f", R-hat of f(x) median {rhat['median']:.2f} (max {rhat['max']:.2f})" if rhat else ""
    if hmc["stuck_chains"]:
        rhat_text += f"; {hmc['stuck_chains']} chain(s) accepted under {STUCK_ACCEPTANCE:.0%} of proposals"
    lines = [f"{metrics['n_train']} training points in three clusters (noise std {metrics['noise_std']}); an MLP "
             f"on (x, x^2) with hidden widths {list(preset.hidden)} ({metrics['num_params']} parameters), "
             f"prior N(0, {preset.prior_scale}^2) on every weight. HMC: {preset.num_chains} chains x "
             f"{preset.hmc_samples} draws ({preset.leapfrog} leapfrog steps, acceptance "
             f"{hmc['acceptance_rate']:.2f}, step size {hmc['step_size']:.2g}{rhat_text}); deep ensemble of "
             f"{preset.ensemble_size} MAP networks ({preset.ensemble_steps} steps each); mean-field VI "
             f"({preset.vi_steps} steps, {preset.vi_draws} draws).", "",
             "| method | std in clusters | std in gaps | gaps / clusters | test log-lik (clusters) | "
             "test log-lik (whole range) |", "|---|---:|---:|---:|---:|---:|"]
    for name, label in METHODS.items():
        row = m[name]
        lines.append(f"| {label} | {row['std']['cluster']:.3f} | {row['std']['gap']:.3f} | "
                     f"{row['gap_to_cluster_std']:.2f} | {row['test_loglik']:.3f} | {row['test_wide_loglik']:.3f} |")
    oracle = metrics["oracle_loglik"]
    lines += [f"| true function | {metrics['noise_std']:.3f} | {metrics['noise_std']:.3f} | 1.00 | "
              f"{oracle['test']:.3f} | {oracle['test_wide']:.3f} |", "", _conclusion(metrics)]
    return "\n".join(lines) + "\n"


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
