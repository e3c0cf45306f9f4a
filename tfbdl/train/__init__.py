"""Training: a resumable GradientTape loop, learning-rate schedules, tf.distribute strategies.

Names are loaded lazily, so ``import tfbdl.train.schedules`` (pure Python) never imports
TensorFlow; touching :class:`Trainer` or :func:`get_strategy` does.

- :mod:`tfbdl.train.schedules`: ``constant_schedule``, ``linear_schedule``, ``step_schedule``, ``cosine_schedule``,
  ``swag_schedule``, ``make_schedule``, ``SCHEDULES``.
- :mod:`tfbdl.train.sgdr`: cosine annealing with warm restarts, ``make_sgdr``, ``sgdr_schedule``, ...
- :mod:`tfbdl.train.strategy`: ``get_strategy``, ``STRATEGIES``, ``is_chief``, ``is_default_strategy``,
  ``parse_tf_config``.
- :mod:`tfbdl.train.loop`: ``Trainer``, ``Callback``, ``epoch_seed``.
- :mod:`tfbdl.train.oom`: ``AdaptiveMicroBatchTrainer``, which halves its micro-batch on out-of-memory.
- :mod:`tfbdl.train.weight_decay`: ``prior_variance``, ``weight_decay_for_prior``, ``prior_precision``.
"""

from __future__ import annotations

from tfbdl.lazy import lazy_exports

_MODULES = {
    "loop": ("Callback", "Trainer", "epoch_seed"),
    "oom": ("AdaptiveMicroBatchTrainer", "OutOfMemory", "available_memory_bytes", "estimate_micro_batch",
            "fail_above", "model_memory_bytes"),
    "schedules": ("SCHEDULES", "constant_schedule", "cosine_schedule", "linear_schedule", "make_schedule",
                  "step_schedule", "swag_schedule"),
    "sgdr": ("make_sgdr", "sgdr_cycle", "sgdr_restarts", "sgdr_schedule"),
    "strategy": ("STRATEGIES", "get_strategy", "is_chief", "is_default_strategy", "parse_tf_config"),
    "weight_decay": ("prior_precision", "prior_variance", "weight_decay_for_prior"),
}

_LAZY = {name: f"tfbdl.train.{module}" for module, names in _MODULES.items() for name in names}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
