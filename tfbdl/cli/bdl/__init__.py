"""``tfbdl bdl``: "Bayesian Deep Learning and a Probabilistic Perspective of Generalization"
(Wilson & Izmailov 2020).

One module per command (``swag``, ``multiswag``, ``cifar_c``, ``rethinking``, ``regression``,
``priors``, ``adaptivity``, ``prior_variance``), each with its own data, fitting and report modules
beside it; the presets are in :mod:`tfbdl.cli.bdl.presets` and :mod:`tfbdl.cli.bdl.prior_presets`. Importing this package adds every command to
the :data:`bdl` group.
"""

from tfbdl.cli.bdl import (  # noqa: F401  (registers them)
    adaptivity, cifar_c, multiswag, prior_variance, priors, regression, rethinking, swag)
from tfbdl.cli.bdl.group import bdl

__all__ = ["bdl"]
