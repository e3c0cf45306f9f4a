"""Checks of option values shared by the library.

Each returns the value converted (``int`` or ``float``) or raises
:class:`~tfbdl.errors.InvalidOptionError` with a message that names the option and what it
allows, e.g. ``"batch_size must be an integer >= 1, got 0"``. Booleans are refused where a
number is expected (``True`` is an ``int`` to Python, never a batch size to a user).
"""

from __future__ import annotations

import math
import numbers

from tfbdl.errors import InvalidOptionError

__all__ = ["integer", "number", "positive_int", "positive_number", "probability"]


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def integer(value, name: str, minimum: int | None = 0) -> int:
    """``value`` as an int, if it is an integer (not a bool) >= ``minimum`` (any integer for None)."""
    if minimum is None:
        if not _is_integer(value):
            raise InvalidOptionError(f"{name} must be an integer, got {value!r}")
    elif not _is_integer(value) or value < minimum:
        raise InvalidOptionError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def positive_int(value, name: str) -> int:
    """``value`` as an int, if it is an integer >= 1 (not a bool)."""
    if not _is_integer(value) or value < 1:
        raise InvalidOptionError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def number(value, name: str, *, minimum: float | None = None, positive: bool = False,
           nonnegative: bool = False) -> float:
    """``value`` as a float, if it is a finite real number (not a bool) within the bound asked for:
    ``positive`` (> 0), ``nonnegative`` (>= 0) or ``minimum`` (>= minimum)."""
    if not _is_real(value):
        raise InvalidOptionError(f"{name} must be a number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise InvalidOptionError(f"{name} must be a finite number, got {value!r}")
    if positive and out <= 0:
        raise InvalidOptionError(f"{name} must be > 0, got {value!r}")
    if nonnegative and out < 0:
        raise InvalidOptionError(f"{name} must be >= 0, got {value!r}")
    if minimum is not None and out < minimum:
        raise InvalidOptionError(f"{name} must be >= {minimum:g}, got {value!r}")
    return out


def positive_number(value, name: str) -> float:
    """``value`` as a float, if it is a finite number > 0 (not a bool)."""
    if not _is_real(value) or not math.isfinite(value) or value <= 0:
        raise InvalidOptionError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def probability(value, name: str, *, below_one: bool = False) -> float:
    """``value`` as a float, if it is a number in [0, 1] (in [0, 1) with ``below_one``)."""
    interval = "[0, 1)" if below_one else "[0, 1]"
    if not _is_real(value) or not (0.0 <= float(value) < 1.0 if below_one else 0.0 <= float(value) <= 1.0):
        raise InvalidOptionError(f"{name} must be a number in {interval}, got {value!r}")
    return float(value)
