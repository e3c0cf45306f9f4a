"""Posteriors over weights (SWAG, Laplace, SGLD, ensembles, VI, HMC) and temperature scaling.

The submodules import TensorFlow / Keras when used; the names below are loaded on first access
so that ``import tfbdl.bayes.laplace`` (numpy-only core) stays light.
"""

from __future__ import annotations

from tfbdl.lazy import lazy_exports

_LAZY = {
    "SWAG": "tfbdl.bayes.swag",
    "SWAGCallback": "tfbdl.bayes.swag",
    "SWAGCollector": "tfbdl.bayes.swag",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
