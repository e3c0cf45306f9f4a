"""Posteriors over weights (SWAG, Laplace, SGLD, ensembles, VI, HMC) and temperature scaling.

- :mod:`~tfbdl.bayes.swag`: SWA / SWAG moments collected during training, their samples and their
  Gaussian as a ``tfp`` distribution (:meth:`SWAG.as_distribution`).
- :mod:`~tfbdl.bayes.laplace`: Laplace approximations (a numpy core; diagonal and last-layer Keras).
- :mod:`~tfbdl.bayes.sgld`, :mod:`~tfbdl.bayes.hmc`, :mod:`~tfbdl.bayes.vi`: SGLD chains, HMC over
  many chains and mean-field VI (with the log density of a small Bayesian MLP).
- :mod:`~tfbdl.bayes.ensembles`: resumable deep ensembles and the moments of their predictive.
- :mod:`~tfbdl.bayes.predictive`: one ``predict(x, num_samples)`` interface over all of them.
- :mod:`~tfbdl.bayes.temperature`, :mod:`~tfbdl.bayes.priors`: temperature scaling, and the
  functions drawn from a Gaussian weight prior.

The submodules import TensorFlow / Keras when used; the names below are loaded on first access
so that ``import tfbdl.bayes.laplace`` (numpy-only core) stays light.
"""

from __future__ import annotations

from tfbdl.lazy import lazy_exports

_MODULES = {
    "ensembles": ("DeepEnsemble", "RegressionPredictive", "average_probabilities", "fit_regression_member",
                  "gaussian_nll_loss", "member_seed", "mixture_log_likelihood", "regression_predictive"),
    "hmc": ("BNNLogDensity", "HMCResult", "bnn_log_prob", "hmc_sample", "predict_bnn"),
    "laplace": ("HessianNotPositiveDefiniteError", "KerasLaplace", "LaplacePosterior", "Likelihood",
                "diagonal_laplace", "laplace_from_hessian", "last_layer_laplace"),
    "predictive": ("EnsemblePredictive", "LaplacePredictive", "PointPredictive", "Predictive", "SGLDPredictive",
                   "SWAGPredictive", "TemperatureScaled", "evaluate"),
    "priors": ("class_pair_correlations", "level_correlations", "output_correlations", "prior_outputs",
               "softmax_entropies"),
    "sgld": ("PolynomialDecay", "SGLD", "SGLDResult", "polynomial_decay", "sgld_sample"),
    "swag": ("SWAG", "SWAGCallback", "SWAGCollector", "VAR_CLAMP", "assign_flat", "flatten", "predict_swag",
             "refresh_batch_norm"),
    "temperature": ("apply_temperature", "fit_temperature", "probabilities_to_logits", "scaled_nll"),
    "vi": ("DEFAULT_INIT_SCALE", "MeanFieldVIResult", "bnn_mean_field_vi", "fit_mean_field_vi",
           "mean_field_surrogate", "predictive_samples"),
}

_LAZY = {name: f"tfbdl.bayes.{module}" for module, names in _MODULES.items() for name in names}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
