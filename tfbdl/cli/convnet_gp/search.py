"""The convnet-gp hyperparameter search, as in the paper: random depth and variances of the
ConvNet GP scored by exact-GP validation accuracy (``search.csv``, resumable), then
marginal-likelihood optimisation of the best setting."""

from __future__ import annotations

import dataclasses

import numpy as np

from tfbdl.cli.common import open_run, record_run, typed_option
from tfbdl.cli.convnet_gp.data import load_inputs
from tfbdl.cli.convnet_gp.presets import SEARCH_EXPERIMENT, SEARCH_SPACE, Preset, SearchPreset
from tfbdl.cli.convnet_gp.report import search_figure, search_summary

__all__ = ["run_search"]


def run_search(*, dataset, scale, out, data_dir, seed, resume, preset: SearchPreset):
    """Random search scored by exact-GP validation accuracy, then marginal-likelihood optimisation."""
    from tfbdl.gp.exact import classify
    from tfbdl.gp.hyperparams import optimize_marginal_likelihood, random_search
    from tfbdl.kernels import ConvNetKernel
    from tfbdl.kernels.presets import convnet_gp

    config = {"experiment": SEARCH_EXPERIMENT, "dataset": dataset, "scale": scale, "seed": seed,
              "data_dir": data_dir, "space": SEARCH_SPACE, **dataclasses.asdict(preset)}
    run = open_run(SEARCH_EXPERIMENT, config, out=out, scale=scale, resume=resume)
    if run.is_complete:
        record_run(run)
        return run
    sizes = Preset(n_train=preset.n_train + preset.n_val, n_test=1, block=1)
    typed = typed_option("n_train") or typed_option("n_val")
    x, y, _, _, _, _, image_shape, provenance, _ = load_inputs(
        dataset, scale, data_dir, sizes, seed, {"n_train": "--n-train + --n-val" if typed else None})
    run.record_data(provenance[:1])
    order = np.random.default_rng(seed).permutation(y.size)
    train, val = order[:preset.n_train], order[preset.n_train:]
    num_classes = int(y.max() + 1)

    def network(params):
        return convnet_gp(depth=int(params["depth"]), var_weight=float(params["var_weight"]),
                          var_bias=float(params["var_bias"]))

    def evaluate(params) -> float:
        kernel = ConvNetKernel(network(params), image_shape, normalise=False)
        Kxx = kernel.K(x[train]).numpy()
        Kxv = kernel.K(x[train], x[val]).numpy()
        return classify(Kxx, Kxv, y[train], y[val], num_classes, val_fraction=0.1, seed=seed,
                        overwrite=True).test_accuracy

    rows = random_search(evaluate, SEARCH_SPACE, preset.trials, seed, csv_path=run.file("search.csv"))
    best = rows[0]
    metrics = {"best": best, "trials": rows}
    if preset.ml_steps > 0:
        kernel = ConvNetKernel(network(best), image_shape, normalise=False)
        noise = 1e-4 * float(np.mean(kernel.K_diag(x[train]).numpy()))
        metrics["marginal_likelihood"] = optimize_marginal_likelihood(
            kernel, x[train], y[train], noise_variance=noise, steps=preset.ml_steps, method="scipy",
            num_classes=num_classes, max_points=min(preset.ml_points, preset.n_train), seed=seed)
    run.write_metrics(metrics)
    search_figure(run, rows)
    run.finish(search_summary(rows, metrics.get("marginal_likelihood"), preset))
    record_run(run)
    return run
