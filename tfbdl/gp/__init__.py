"""GP classifiers: exact GP regression on centred one-hot targets, and one-vs-all SVGP.

The numpy/scipy parts (:mod:`~tfbdl.gp.cholesky`, :mod:`~tfbdl.gp.exact`) are imported
eagerly; the GPflow parts (:mod:`~tfbdl.gp.svgp`, :mod:`~tfbdl.gp.precomputed`) and the search
helpers (:mod:`~tfbdl.gp.hyperparams`) are imported on first attribute access, so
``import tfbdl.gp`` does not import TensorFlow.
"""

from __future__ import annotations

from tfbdl.errors import JitterWarning
from tfbdl.gp.cholesky import (
    NotPositiveDefiniteError,
    cho_solve_inplace,
    cholesky_inplace,
    restore_from_upper,
)
from tfbdl.gp.exact import (
    DEFAULT_RELATIVE_GRID,
    ExactGPResult,
    centred_targets,
    classify,
    fit_predict,
    noise_grid,
    select_noise,
)
from tfbdl.lazy import lazy_exports

_LAZY = {
    "OneVsAllSVGP": "tfbdl.gp.svgp",
    "PrecomputedKernel": "tfbdl.gp.precomputed",
    "grid_search": "tfbdl.gp.hyperparams",
    "gram_constant": "tfbdl.gp.precomputed",
    "index_inputs": "tfbdl.gp.precomputed",
    "optimize_marginal_likelihood": "tfbdl.gp.hyperparams",
    "random_search": "tfbdl.gp.hyperparams",
    "sample_space": "tfbdl.gp.hyperparams",
}

__all__ = [  # the eager names above and the lazy ones
    "DEFAULT_RELATIVE_GRID",
    "ExactGPResult",
    "JitterWarning",
    "NotPositiveDefiniteError",
    "OneVsAllSVGP",
    "PrecomputedKernel",
    "centred_targets",
    "cho_solve_inplace",
    "cholesky_inplace",
    "classify",
    "fit_predict",
    "gram_constant",
    "grid_search",
    "index_inputs",
    "noise_grid",
    "optimize_marginal_likelihood",
    "random_search",
    "restore_from_upper",
    "sample_space",
    "select_noise",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
