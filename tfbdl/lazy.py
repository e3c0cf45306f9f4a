"""One mechanism for the packages' lazily loaded exports (PEP 562 module ``__getattr__``).

A package whose public names live in submodules that import TensorFlow, GPflow or TFP lists them
as ``{name: module}`` and gets ``__getattr__`` / ``__dir__`` from :func:`lazy_exports`, so that
``import tfbdl.<package>`` stays cheap and each name is imported on first use, then cached.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Callable, Mapping

__all__ = ["lazy_exports"]


class _LazyPackage(types.ModuleType):
    """A package whose exported names win over its submodules of the same name.

    ``tfbdl.nn`` exports the function ``fconv`` and has a submodule ``tfbdl.nn.fconv``: importing
    the submodule makes Python bind ``tfbdl.nn.fconv`` to it, which would hide the lazily loaded
    function. An eager ``from .fconv import fconv`` in ``__init__`` rebinds the name afterwards; here
    that binding is skipped instead, so ``from tfbdl.nn import fconv`` gives the function either way.
    """

    def __setattr__(self, name, value):
        if (isinstance(value, types.ModuleType) and name in self.__dict__.get("_lazy_exports", ())
                and value.__name__ == f"{self.__name__}.{name}"):
            return
        super().__setattr__(name, value)


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], object], Callable[[], list]]:
    """``(__getattr__, __dir__)`` for ``package`` that load ``exports[name]`` (a module path) on
    first access of ``name`` and store the value in the package's namespace (an exported name
    shadows a submodule of the same name, as an eager import in ``__init__`` would)."""
    exports = dict(exports)
    module = sys.modules[package]
    module.__dict__["_lazy_exports"] = frozenset(exports)
    module.__class__ = _LazyPackage

    def __getattr__(name: str):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
