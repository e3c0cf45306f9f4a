"""Posteriors over weights (SWAG, Laplace, SGLD, ensembles, VI, HMC) and temperature scaling.

The submodules import TensorFlow / Keras when used; the names below are loaded on first access
so that ``import tfbdl.bayes.laplace`` (numpy-only core) stays light.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "SWAG": "tfbdl.bayes.swag",
    "SWAGCallback": "tfbdl.bayes.swag",
    "SWAGCollector": "tfbdl.bayes.swag",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tfbdl.bayes' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
