"""The three posteriors of ``bdl regression-1d`` over one MLP's weights, and their samples.

HMC chains started at MAP fits, a deep ensemble of MAP networks and mean-field VI; each piece
is written atomically into the run (``map_starts.npz``, ``hmc_samples.npz``,
``ensemble/member-XXX.weights.npz``, ``vi.npz``) and reused on rerun.
"""

from __future__ import annotations

import math
import time

import click
import numpy as np

from tfbdl.cli.bdl.presets import RegressionPreset

__all__ = ["MAP_LEARNING_RATE", "VI_LEARNING_RATE", "VI_SAMPLE_SIZE", "cached", "layer_sizes", "map_starts",
           "predictions", "run_ensemble", "run_hmc", "run_vi"]

MAP_LEARNING_RATE = 1e-2
VI_LEARNING_RATE = 1e-2
VI_SAMPLE_SIZE = 4


def layer_sizes(preset: RegressionPreset, n_features: int) -> tuple[int, ...]:
    """The MLP's widths ``(n_features, *hidden, 1)``."""
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


def cached(path, make) -> dict:
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

    return cached(run.file("hmc_samples.npz"), sample)


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
        result = bnn_mean_field_vi(layer_sizes(preset, features.shape[1]), features, data.y.astype(np.float32),
                                   preset.prior_scale, data.config.noise_std, num_steps=preset.vi_steps,
                                   learning_rate=schedule, sample_size=VI_SAMPLE_SIZE, init_loc=starts[0],
                                   seed=seed, jit_compile=preset.jit)
        return {"mean": result.mean, "stddev": result.stddev, "losses": result.losses}

    return cached(run.file("vi.npz"), fit)


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
