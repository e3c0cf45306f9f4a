"""SGDR: cosine annealing with warm restarts (Loshchilov & Hutter 2017), as a plain function.

Cycle ``i`` (from 0) lasts ``T_i = T_0 * T_mult**i`` epochs and starts at epoch
``S_i = T_0 * (T_mult**i - 1) / (T_mult - 1)`` (``i * T_0`` when ``T_mult = 1``). Within it::

    lr(epoch) = eta_min + (eta_max - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2,   T_cur = epoch - S_i

so every cycle starts at ``eta_max`` and anneals to ``eta_min`` at its end, where the next one
restarts. The feature-amounts paper uses ``T_0 = 10``, ``T_mult = 2``, ``eta_max = 0.01``,
``eta_min = 1e-5`` for 150 epochs: cycles of 10, 20, 40, 80 epochs ending exactly at 150.

``epoch`` is fractional and counts finished epochs, as in :mod:`tfbdl.train.schedules`:
:class:`~tfbdl.train.loop.Trainer` calls the schedule with ``epoch + step / steps`` when
``lr_per_step=True`` (annealing per step, as the reference does), else once per epoch.
``per_epoch=True`` makes the schedule constant within each epoch (``floor(epoch)``).
"""

from __future__ import annotations

import functools
import math
from typing import Callable

from tfbdl.errors import InvalidOptionError
from tfbdl.validate import number

__all__ = ["make_sgdr", "sgdr_cycle", "sgdr_restarts", "sgdr_schedule"]


def sgdr_cycle(epoch: float, t_0: float, t_mult: float = 2.0) -> tuple[int, float, float]:
    """``(i, S_i, T_i)``: the index, start epoch and length of the cycle holding ``epoch``."""
    epoch = number(epoch, "epoch", nonnegative=True)
    t_0 = number(t_0, "T_0", positive=True)
    t_mult = number(t_mult, "T_mult", minimum=1.0)
    if t_mult == 1.0:
        i = int(epoch // t_0)
    else:
        i = int(math.floor(math.log1p(epoch * (t_mult - 1.0) / t_0) / math.log(t_mult)))
    start = _start(i, t_0, t_mult)
    while start > epoch:  # float rounding at a restart
        i -= 1
        start = _start(i, t_0, t_mult)
    while _start(i + 1, t_0, t_mult) <= epoch:
        i += 1
        start = _start(i, t_0, t_mult)
    return i, start, t_0 * t_mult ** i


def _start(i: int, t_0: float, t_mult: float) -> float:
    return i * t_0 if t_mult == 1.0 else t_0 * (t_mult ** i - 1.0) / (t_mult - 1.0)


def sgdr_schedule(epoch: float, eta_max: float, t_0: float, t_mult: float = 2.0, eta_min: float = 0.0,
                  per_epoch: bool = False) -> float:
    """The SGDR learning rate at (fractional) ``epoch``; see the module docstring."""
    eta_max = number(eta_max, "eta_max", positive=True)
    eta_min = number(eta_min, "eta_min", nonnegative=True)
    if eta_min > eta_max:
        raise InvalidOptionError(f"eta_min ({eta_min}) must not exceed eta_max ({eta_max})")
    if per_epoch:
        epoch = math.floor(number(epoch, "epoch", nonnegative=True))
    _, start, length = sgdr_cycle(epoch, t_0, t_mult)
    return eta_min + (eta_max - eta_min) * 0.5 * (1.0 + math.cos(math.pi * (epoch - start) / length))


def sgdr_restarts(epochs: float, t_0: float, t_mult: float = 2.0) -> list[float]:
    """The epochs ``S_1, S_2, ...`` (after 0) where a cycle restarts, up to ``epochs`` inclusive."""
    out, i = [], 1
    while _start(i, float(t_0), float(t_mult)) <= epochs:
        out.append(_start(i, float(t_0), float(t_mult)))
        i += 1
    return out


def make_sgdr(eta_max: float, t_0: float, t_mult: float = 2.0, eta_min: float = 0.0,
              per_epoch: bool = False) -> Callable[[float], float]:
    """A one-argument ``epoch -> lr`` SGDR schedule for ``Trainer.fit(lr_schedule=...)``; the
    parameters are checked here (by evaluating at epoch 0)."""
    schedule = functools.partial(sgdr_schedule, eta_max=eta_max, t_0=t_0, t_mult=t_mult, eta_min=eta_min,
                                 per_epoch=per_epoch)
    schedule(0.0)
    return schedule
