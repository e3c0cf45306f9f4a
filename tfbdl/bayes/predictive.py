"""One interface over every posterior: ``predict(x, num_samples) -> class probabilities [N, C]``.

Each method of :mod:`tfbdl.bayes` keeps its own fitting code (SWAG collects during training,
Laplace measures curvature at a solution, SGLD runs a chain); these small adapters give their
results the same Bayesian-model-average call, so experiments and metrics treat them alike:

- :class:`PointPredictive`: softmax of the model at its current weights (SGD, SWA).
- :class:`SWAGPredictive`: average over SWAG (or SWAG-diagonal) samples, batch norm refreshed.
- :class:`LaplacePredictive`: average over draws of a :class:`~tfbdl.bayes.laplace.KerasLaplace`.
- :class:`SGLDPredictive`: average over the last samples of an :class:`~tfbdl.bayes.sgld.SGLD` chain.
- :class:`EnsemblePredictive`: equal-weight average of members (deep ensembles of point
  predictives, MultiSWAG of SWAG predictives).
- :class:`TemperatureScaled`: any predictive with its confidence fitted on a validation split.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from tfbdl.errors import InvalidOptionError
from tfbdl.validate import integer

__all__ = ["EnsemblePredictive", "LaplacePredictive", "PointPredictive", "Predictive", "SGLDPredictive",
           "SWAGPredictive", "TemperatureScaled", "evaluate"]


class Predictive(Protocol):
    def predict(self, x, num_samples: int = 1) -> np.ndarray:
        """Class probabilities ``[N, C]`` for inputs ``x [N, ...]``, averaged over ``num_samples``
        posterior draws (ignored by point estimates)."""


class PointPredictive:
    """The model's softmax at its current weights."""

    def __init__(self, model, batch_size: int = 512):
        self.model = model
        self.batch_size = integer(batch_size, "batch_size", 1)

    def predict(self, x, num_samples: int = 1) -> np.ndarray:
        from tfbdl.nn.utils import softmax_in_batches

        return softmax_in_batches(self.model, x, self.batch_size)


class SWAGPredictive:
    """Average over SWAG samples of ``posterior`` (one SWAG, or a list of them pooled), each
    followed by a batch-norm refresh on ``bn_batches()`` when the model has batch norm."""

    def __init__(self, model, posterior, *, bn_batches=None, scale: float = 0.5, diagonal_only: bool = False,
                 seed: int = 0):
        self.model, self.posterior, self.bn_batches = model, posterior, bn_batches
        self.scale, self.diagonal_only, self.seed = scale, diagonal_only, seed

    def predict(self, x, num_samples: int = 30) -> np.ndarray:
        from tfbdl.bayes.swag import predict_swag

        return predict_swag(self.model, self.posterior, x, samples_per_model=integer(num_samples, "num_samples", 1),
                            seed=self.seed, scale=self.scale, diagonal_only=self.diagonal_only,
                            bn_batches=self.bn_batches)


class LaplacePredictive:
    """Average over draws of a Laplace posterior, substituted into ``model``."""

    def __init__(self, model, laplace, *, seed: int = 0, batch_size: int | None = 512):
        self.model, self.laplace, self.seed, self.batch_size = model, laplace, seed, batch_size

    def predict(self, x, num_samples: int = 32) -> np.ndarray:
        return self.laplace.predict(self.model, x, num_samples=num_samples, seed=self.seed,
                                    batch_size=self.batch_size)


class SGLDPredictive:
    """Average over the last ``num_samples`` samples of a run :class:`~tfbdl.bayes.sgld.SGLD` chain."""

    def __init__(self, sampler, batch_size: int | None = 512):
        self.sampler, self.batch_size = sampler, batch_size

    def predict(self, x, num_samples: int | None = None) -> np.ndarray:
        return self.sampler.predict(x, num_samples=num_samples, batch_size=self.batch_size)


class EnsemblePredictive:
    """Equal-weight average of the members' predictives, each with ``num_samples`` draws."""

    def __init__(self, members: Sequence[Predictive]):
        if not members:
            raise InvalidOptionError("an ensemble needs at least one member")
        self.members = list(members)

    def predict(self, x, num_samples: int = 1) -> np.ndarray:
        total = None
        for member in self.members:
            probs = member.predict(x, num_samples)
            total = probs if total is None else total + probs
        return total / len(self.members)


class TemperatureScaled:
    """``softmax(log p(x) / T)`` of a wrapped predictive, T fitted by :meth:`fit` on held-out data."""

    def __init__(self, predictive: Predictive, temperature: float = 1.0):
        self.predictive, self.temperature = predictive, float(temperature)

    def fit(self, x_val, y_val, num_samples: int = 1) -> "TemperatureScaled":
        from tfbdl.bayes.temperature import fit_temperature, probabilities_to_logits

        self.temperature = fit_temperature(probabilities_to_logits(self.predictive.predict(x_val, num_samples)),
                                           y_val)
        return self

    def predict(self, x, num_samples: int = 1) -> np.ndarray:
        from tfbdl.bayes.temperature import apply_temperature, probabilities_to_logits

        return apply_temperature(probabilities_to_logits(self.predictive.predict(x, num_samples)), self.temperature)


def evaluate(predictive: Predictive, x, y, num_samples: int = 1) -> dict[str, float]:
    """Accuracy, NLL, ECE and Brier score of a predictive on ``(x, y)``."""
    from tfbdl.metrics import classification_metrics

    return classification_metrics(predictive.predict(x, num_samples), y)
