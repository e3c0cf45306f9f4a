"""Declared shapes of the library's array functions, in the notation of ``check_shapes`` (GPflow's).

``@declare_shapes("Kxx: [N, N]", "y_train: [N]", "return: [T, C]")`` declares what a function takes
and returns; ``"name[i]: ..."`` declares item ``i`` of a tuple (``"return[0]: [N, N]"``). Every call
is checked with ``check_shapes.ShapeChecker``, which binds each dimension name across the arguments
and the result, so one call's ``N`` must be the same everywhere. Two differences from decorating
with ``check_shapes.check_shapes`` itself, both on purpose:

- The check runs after the call. The functions check their own arguments first, with errors that
  say what to do (:class:`~tfbdl.errors.ShapeError`, printed as one line by the command line); a
  mismatch here is therefore a bug in the function or its declaration, reported by check_shapes'
  own ``ShapeMismatchError`` with the argument, the declared and the actual shape.
- It runs where ``check_shapes`` is loaded already: GPflow loads it, so every GP and training run is
  checked, and so is every test. Importing it installs its TensorFlow integration, i.e. imports
  TensorFlow (seconds, hundreds of MB), which the numpy-only modules (the exact GP, the in-place
  Cholesky, the metrics) must not pay for, neither when imported nor when called.

``check_shapes.set_enable_check_shapes`` switches these checks off with GPflow's.
"""

from __future__ import annotations

import functools
import inspect
import sys
from typing import Any, Callable, NamedTuple

__all__ = ["declare_shapes", "declared_shapes"]


class _Spec(NamedTuple):
    target: str  # an argument name, or "return"
    index: int | None  # item of a tuple value, or None for the value itself
    shape: str  # "[N, K]" in check_shapes' notation


def _parse(spec: str) -> _Spec:
    target, colon, shape = spec.partition("#")[0].partition(":")
    target, shape = target.strip(), shape.strip()
    index = None
    if target.endswith("]") and "[" in target:
        target, _, item = target[:-1].partition("[")
        index = int(item)
    if not colon or not target.isidentifier() or not shape.startswith("["):
        raise ValueError(f"a shape declaration looks like 'x: [N, D]' or 'return[0]: [N]', got {spec!r}")
    return _Spec(target, index, shape)


def declare_shapes(*specs: str) -> Callable:
    """Declare the shapes of a function's arguments and result (see the module docstring)."""
    parsed = [_parse(spec) for spec in specs]

    def decorate(func: Callable) -> Callable:
        signature = inspect.signature(func)
        unknown = sorted({s.target for s in parsed} - {"return"} - set(signature.parameters))
        if unknown:
            raise ValueError(f"{func.__qualname__} has no argument {', '.join(unknown)} to declare a shape for")

        @functools.wraps(func)
        def checked(*args, **kwargs):
            result = func(*args, **kwargs)
            checker = sys.modules.get("check_shapes")
            if checker is not None and checker.get_enable_check_shapes():
                _verify(checker, func, parsed, signature.bind(*args, **kwargs), result)
            return result

        checked.declared_shapes = tuple(specs)
        return checked

    return decorate


def declared_shapes(func: Callable) -> tuple[str, ...]:
    """The shape declarations of a function decorated with :func:`declare_shapes` (empty if none)."""
    return tuple(getattr(func, "declared_shapes", ()))


def _verify(checker, func: Callable, parsed: list[_Spec], bound: inspect.BoundArguments, result: Any) -> None:
    """Check every declared value that is not None with one ShapeChecker (names bound across them)."""
    from check_shapes.error_contexts import ArgumentContext, FunctionDefinitionContext, IndexContext, StackContext

    bound.apply_defaults()
    checks = []
    for spec in parsed:
        value = result if spec.target == "return" else bound.arguments[spec.target]
        context = StackContext(FunctionDefinitionContext(func), ArgumentContext(spec.target))
        if spec.index is not None and value is not None:
            value = value[spec.index]
            context = StackContext(context, IndexContext(spec.index))
        if value is not None:
            checks.append((value, spec.shape, context))
    checker.ShapeChecker().check_shapes(checks)
