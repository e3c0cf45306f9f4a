"""One mechanism for the packages' lazily loaded exports (PEP 562 module ``__getattr__``).

A package whose public names live in submodules that import TensorFlow, GPflow or TFP lists them
as ``{name: module}`` and gets ``__getattr__`` / ``__dir__`` from :func:`lazy_exports`, so that
``import tfbdl.<package>`` stays cheap and each name is imported on first use, then cached.
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], object], Callable[[], list]]:
    """``(__getattr__, __dir__)`` for ``package`` that load ``exports[name]`` (a module path) on
    first access of ``name`` and store the value in the package's namespace."""
    exports = dict(exports)

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
