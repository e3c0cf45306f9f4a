"""GP classifiers: exact GP regression on centred one-hot targets, and one-vs-all SVGP.

The numpy/scipy parts (:mod:`~tfbdl.gp.cholesky`, :mod:`~tfbdl.gp.exact`) are imported
eagerly; the GPflow parts (:mod:`~tfbdl.gp.svgp`) and the search helpers
(:mod:`~tfbdl.gp.hyperparams`) are imported on first attribute access, so ``import tfbdl.gp``
does not import TensorFlow.
"""

from __future__ import annotations

from tfbdl.lazy import lazy_exports

from tfbdl.gp.cholesky import (
    JitterWarning,
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

_LAZY = {
    "OneVsAllSVGP": "tfbdl.gp.svgp",
    "random_search": "tfbdl.gp.hyperparams",
    "grid_search": "tfbdl.gp.hyperparams",
    "sample_space": "tfbdl.gp.hyperparams",
    "optimize_marginal_likelihood": "tfbdl.gp.hyperparams",
}

__all__ = [
    "DEFAULT_RELATIVE_GRID",
    "ExactGPResult",
    "JitterWarning",
    "NotPositiveDefiniteError",
    "centred_targets",
    "cho_solve_inplace",
    "cholesky_inplace",
    "classify",
    "fit_predict",
    "noise_grid",
    "restore_from_upper",
    "select_noise",
    *_LAZY,
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
