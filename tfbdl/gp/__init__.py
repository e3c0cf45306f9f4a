"""GP classifiers: exact GP regression on centred one-hot targets, and one-vs-all SVGP.

The numpy/scipy parts (:mod:`~tfbdl.gp.cholesky`, :mod:`~tfbdl.gp.exact`) are imported
eagerly; the GPflow parts (:mod:`~tfbdl.gp.svgp`) and the search helpers
(:mod:`~tfbdl.gp.hyperparams`) are imported on first attribute access, so ``import tfbdl.gp``
does not import TensorFlow.
"""

from __future__ import annotations

import importlib

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
    "stratified_indices": "tfbdl.gp.svgp",
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


def __getattr__(name: str):
    """Import the GPflow-dependent names on first use."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tfbdl.gp' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
