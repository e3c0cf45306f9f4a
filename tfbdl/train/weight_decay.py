"""Weight decay and the Gaussian prior it means.

The Trainer minimises ``mean_batch loss + weight_decay * |w|^2``. Times the training-set size N
this is ``-log p(D | w) + N weight_decay |w|^2``: the negative log joint under the prior
``N(0, s^2 I)`` with ``1 / (2 s^2) = N weight_decay``. These three functions convert between
the weight decay, the prior variance ``s^2`` and the prior precision ``lambda = 1 / s^2``
(the reference's ``--prior_var`` regulariser ``|w|^2 / (2 prior_var N)`` is
``weight_decay_for_prior(prior_var, N)``).
"""

from __future__ import annotations

from tfbdl.validate import integer, positive_number

__all__ = ["prior_precision", "prior_variance", "weight_decay_for_prior"]


def prior_variance(weight_decay: float, n_train: int) -> float:
    """The Gaussian prior variance ``1 / (2 * weight_decay * n_train)`` that ``weight_decay`` means."""
    return 1.0 / (2.0 * positive_number(weight_decay, "weight_decay") * integer(n_train, "n_train", 1))


def weight_decay_for_prior(prior_var: float, n_train: int) -> float:
    """The ``weight_decay`` ``1 / (2 * prior_var * n_train)`` of a ``N(0, prior_var I)`` prior."""
    return 1.0 / (2.0 * positive_number(prior_var, "prior_var") * integer(n_train, "n_train", 1))


def prior_precision(weight_decay: float, n_train: int) -> float:
    """The precision ``2 * n_train * weight_decay`` of the prior that ``weight_decay`` means (the
    inverse of :func:`prior_variance`): what a Laplace evidence must use so that the trained
    weights are the MAP of the posterior it approximates. Zero weight decay has no Gaussian prior
    and is refused."""
    return 2.0 * integer(n_train, "n_train", 1) * positive_number(weight_decay, "weight_decay")
