"""JSON values: plain-JSON conversion of numpy values, canonical and readable texts, atomic writes.

Configs, metrics and progress records hold numpy scalars and arrays, tuples and paths; they are
made plain JSON before they are written, so a file reads back as the same plain values.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import numpy as np

from tfbdl.errors import InvalidOptionError
from tfbdl.io.atomic import PathLike, atomic_write_text

__all__ = ["atomic_write_json", "canonical_json", "json_text", "to_jsonable"]


def to_jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars/arrays, tuples and paths made plain JSON types, recursively.

    Dict keys become strings (numpy scalar keys via their Python value).
    """
    if isinstance(obj, dict):
        return {_json_key(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, pathlib.PurePath):
        return str(obj)
    return obj


def _json_key(key: Any) -> Any:
    if isinstance(key, np.generic):
        key = key.item()
    return key if isinstance(key, str) else str(key)


def canonical_json(obj: Any) -> str:
    """Compact JSON with sorted keys: equal values give equal texts (TypeError if not JSON)."""
    return json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":"))


def json_text(obj: Any) -> str:
    """Readable JSON (indent 2, sorted keys, final newline); InvalidOptionError if not JSON."""
    try:
        return json.dumps(to_jsonable(obj), indent=2, sort_keys=True) + "\n"
    except TypeError as e:
        raise InvalidOptionError(
            f"cannot store this value as JSON ({e}); pass numbers, strings, lists and dicts"
        ) from e


def atomic_write_json(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as JSON (indent 2, sorted keys; numpy values made plain) atomically."""
    atomic_write_text(path, json_text(obj))
