"""Checks of option values shared by the library, raising InvalidOptionError with the option's name."""

from __future__ import annotations

import math
import numbers

from tfbdl.errors import InvalidOptionError


def integer(value, name: str, minimum: int = 0) -> int:
    """``value`` as an int, if it is an integer (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InvalidOptionError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def positive_number(value, name: str) -> float:
    """``value`` as a float, if it is a finite number > 0 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise InvalidOptionError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)
