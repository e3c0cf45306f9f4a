"""Training: a resumable GradientTape loop, learning-rate schedules, tf.distribute strategies.

Names are loaded lazily, so ``import tfbdl.train.schedules`` (pure Python) never imports
TensorFlow; touching :class:`Trainer` or :func:`get_strategy` does.

- :mod:`tfbdl.train.schedules`: ``constant_schedule``, ``linear_schedule``, ``step_schedule``, ``cosine_schedule``,
  ``swag_schedule``, ``make_schedule``, ``SCHEDULES``.
- :mod:`tfbdl.train.strategy`: ``get_strategy``, ``STRATEGIES``, ``is_chief``, ``parse_tf_config``.
- :mod:`tfbdl.train.loop`: ``Trainer``, ``Callback``, ``epoch_seed``.
- :mod:`tfbdl.train.weight_decay`: ``prior_variance``, ``weight_decay_for_prior``, ``prior_precision``.
"""

from __future__ import annotations

from tfbdl.lazy import lazy_exports

_EXPORTS = {
    "SCHEDULES": "schedules",
    "constant_schedule": "schedules",
    "cosine_schedule": "schedules",
    "make_schedule": "schedules",
    "step_schedule": "schedules",
    "swag_schedule": "schedules",
    "STRATEGIES": "strategy",
    "get_strategy": "strategy",
    "is_chief": "strategy",
    "parse_tf_config": "strategy",
    "Callback": "loop",
    "Trainer": "loop",
    "epoch_seed": "loop",
    "prior_precision": "weight_decay",
    "prior_variance": "weight_decay",
    "weight_decay_for_prior": "weight_decay",
    "linear_schedule": "schedules",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, {name: f"tfbdl.train.{module}" for name, module in _EXPORTS.items()})
