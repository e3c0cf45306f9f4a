"""Learning-rate schedules as plain functions of the (fractional) epoch; no TensorFlow.

Each schedule is ``f(epoch, *params) -> lr`` where ``epoch`` counts finished epochs from 0:
``epoch = 3`` is the start of the fourth epoch and ``epoch = 3.25`` a quarter into it. The
training loop takes a one-argument callable, so bind the parameters first::

    lr_schedule = functools.partial(swag_schedule, lr_init=0.05, swa_lr=0.01,
                                    swa_start=161, epochs=300)
    trainer.fit(..., lr_schedule=lr_schedule)

:func:`make_schedule` does the same from a name and keyword parameters (for command lines).
"""

from __future__ import annotations

import bisect
import functools
import math
from typing import Callable, Sequence

from tfbdl.errors import InvalidOptionError
from tfbdl.validate import number

__all__ = [
    "SCHEDULES",
    "constant_schedule",
    "cosine_schedule",
    "linear_schedule",
    "make_schedule",
    "step_schedule",
    "swag_schedule",
]


def _epoch(epoch) -> float:
    return number(epoch, "epoch", nonnegative=True)


def constant_schedule(epoch: float, lr: float) -> float:
    """``lr`` at every epoch."""
    _epoch(epoch)
    return number(lr, "lr", positive=True)


def step_schedule(epoch: float, lr_init: float, milestones: Sequence[float], gamma: float = 0.1) -> float:
    """``lr_init * gamma ** k`` where ``k`` is the number of milestones ``<= epoch``.

    With ``milestones=(100, 150)``: ``lr_init`` on epochs [0, 100), ``lr_init * gamma`` on
    [100, 150), ``lr_init * gamma**2`` from 150 on (as torch's MultiStepLR).
    """
    epoch = _epoch(epoch)
    lr_init = number(lr_init, "lr_init", positive=True)
    gamma = number(gamma, "gamma", positive=True)
    try:
        marks = [number(m, "milestone", nonnegative=True) for m in milestones]
    except TypeError:
        raise InvalidOptionError(f"milestones must be a list of epochs, got {milestones!r}") from None
    if marks != sorted(marks):
        raise InvalidOptionError(f"milestones must be increasing, got {list(milestones)}")
    return lr_init * gamma ** bisect.bisect_right(marks, epoch)


def cosine_schedule(epoch: float, lr_init: float, epochs: float, lr_min: float = 0.0) -> float:
    """Cosine annealing from ``lr_init`` at epoch 0 to ``lr_min`` at ``epochs``:

    ``lr_min + (lr_init - lr_min) * (1 + cos(pi * min(epoch, epochs) / epochs)) / 2``.
    """
    epoch = _epoch(epoch)
    lr_init = number(lr_init, "lr_init", positive=True)
    epochs = number(epochs, "epochs", positive=True)
    lr_min = number(lr_min, "lr_min", nonnegative=True)
    t = min(epoch, epochs) / epochs
    return lr_min + (lr_init - lr_min) * 0.5 * (1.0 + math.cos(math.pi * t))


def linear_schedule(epoch: float, lr_init: float, epochs: float) -> float:
    """The deep weight prior release's ``lr_linear``: ``lr_init * (1 - floor(epoch) / epochs)``,
    constant within an epoch and 0 from ``epochs`` on."""
    epoch = _epoch(epoch)
    lr_init = number(lr_init, "lr_init", positive=True)
    epochs = number(epochs, "epochs", positive=True)
    return lr_init * max(0.0, 1.0 - math.floor(epoch + 1e-9) / epochs)


def swag_schedule(epoch: float, lr_init: float, swa_lr: float | None, swa_start: float | None,
                  epochs: float | None = None) -> float:
    """The SWA/SWAG schedule of Maddox et al. 2019 (``schedule()`` in ``run_swag.py``).

    Same as ``schedule(epoch)`` in ``experiments/train/run_swag.py`` of
    ``wjmaddox/swa_gaussian`` (and of ``izmailovpavel/understandingbdl``), where it is called
    with the 0-based epoch index at the start of each epoch::

        t        = epoch / swa_start                  (epoch / epochs without SWA)
        lr_ratio = swa_lr / lr_init                   (0.01 without SWA)
        factor   = 1                                  if t <= 0.5
                 = 1 - (1 - lr_ratio) * (t - 0.5) / 0.4   if 0.5 < t <= 0.9
                 = lr_ratio                           if t > 0.9
        lr       = lr_init * factor

    So: ``lr_init`` for the first half of the epochs before ``swa_start``, a linear decay to
    ``swa_lr`` reached at 90% of ``swa_start``, then ``swa_lr`` constant (also through the
    SWA/SWAG collection phase, epochs ``>= swa_start``).

    ``swa_start=None`` is the reference's plain SGD run (no ``--swa``): ``t = epoch / epochs``
    and the final factor is 0.01; ``swa_lr`` is not used then and ``epochs`` is required.
    With ``swa_start`` given, ``epochs`` (the total budget) does not change the value, as in
    the reference.
    """
    epoch = _epoch(epoch)
    lr_init = number(lr_init, "lr_init", positive=True)
    if epochs is not None:
        epochs = number(epochs, "epochs", positive=True)
    if swa_start is None:
        if epochs is None:
            raise InvalidOptionError("swag_schedule without swa_start needs epochs (the SGD budget)")
        t = epoch / epochs
        lr_ratio = 0.01
    else:
        swa_start = number(swa_start, "swa_start", positive=True)
        if swa_lr is None:
            raise InvalidOptionError("swag_schedule with swa_start needs swa_lr")
        swa_lr = number(swa_lr, "swa_lr", positive=True)
        t = epoch / swa_start
        lr_ratio = swa_lr / lr_init
    if t <= 0.5:
        factor = 1.0
    elif t <= 0.9:
        factor = 1.0 - (1.0 - lr_ratio) * (t - 0.5) / 0.4
    else:
        factor = lr_ratio
    return lr_init * factor


SCHEDULES: dict[str, Callable[..., float]] = {
    "constant": constant_schedule,
    "step": step_schedule,
    "cosine": cosine_schedule,
    "linear": linear_schedule,
    "swag": swag_schedule,
}


def make_schedule(name: str, **params) -> Callable[[float], float]:
    """A one-argument schedule ``epoch -> lr``: ``SCHEDULES[name]`` with ``params`` bound.

    The parameters are checked once here (by evaluating at epoch 0), so a wrong value fails
    before training starts.
    """
    try:
        fn = SCHEDULES[name]
    except (KeyError, TypeError):
        raise InvalidOptionError(
            f"unknown learning-rate schedule {name!r}; choose one of {', '.join(SCHEDULES)}"
        ) from None
    schedule = functools.partial(fn, **params)
    try:
        schedule(0)
    except TypeError as e:
        raise InvalidOptionError(f"bad parameters for the {name!r} schedule: {e}") from None
    return schedule
