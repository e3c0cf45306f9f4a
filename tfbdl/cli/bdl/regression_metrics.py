"""What the samples of ``bdl regression-1d`` show: predictive spread per region, held-out log
likelihood and RMSE, the chains' R-hat in function space, and the best any method can expect.
"""

from __future__ import annotations

import numpy as np

__all__ = ["STUCK_ACCEPTANCE", "chain_rhat", "method_metrics", "oracle_loglik", "split_outputs"]

STUCK_ACCEPTANCE = 0.05  # a chain accepting fewer proposals than this barely moved


def split_outputs(data, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Columns of ``values [..., P]`` for the grid, the in-cluster and the whole-range held-out points."""
    g, t = data.x_grid.size, data.x_test.size
    return values[..., :g], values[..., g:g + t], values[..., g + t:]


def method_metrics(data, outputs: np.ndarray) -> dict:
    """Predictive std per region, held-out log likelihood and RMSE of one method's samples [S, P]."""
    from tfbdl.bayes.ensembles import mixture_log_likelihood, regression_predictive
    from tfbdl.data.toy_regression import region_masks

    noise = data.config.noise_std
    grid, test, wide = split_outputs(data, outputs)
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

    grid = split_outputs(data, hmc_outputs)[0]
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
