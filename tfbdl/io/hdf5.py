"""Small HDF5 files of named arrays and root attributes, written atomically (h5py, no TensorFlow).

Attributes HDF5 cannot hold natively (dicts, None, mixed lists) are stored as JSON and decoded on
reading, so :func:`load_h5` gives back what :func:`save_h5` was given.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import numpy as np

from tfbdl.errors import TfbdlError
from tfbdl.io.atomic import PathLike, atomic_path
from tfbdl.io.jsonio import to_jsonable

__all__ = ["load_h5", "save_h5"]

_JSON_ATTRS = "_tfbdl_json_attrs"


def save_h5(path: PathLike, arrays: dict[str, np.ndarray], attrs: dict | None = None) -> None:
    """Write named arrays (names may contain '/' for groups) and root attributes, atomically.

    Attributes HDF5 cannot hold natively (dicts, None, mixed lists) are stored as JSON and
    decoded again by :func:`load_h5`.
    """
    import h5py

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            for name, value in arrays.items():
                f.create_dataset(name, data=np.asarray(value))
            json_names = []
            for key, value in (attrs or {}).items():
                if _numeric_list(value):
                    f.attrs[key] = np.asarray(value)
                elif isinstance(value, (dict, list, tuple)) or value is None:
                    f.attrs[key] = json.dumps(to_jsonable(value))
                    json_names.append(key)
                else:
                    f.attrs[key] = str(value) if isinstance(value, pathlib.PurePath) else value
            if json_names:
                f.attrs[_JSON_ATTRS] = json.dumps(json_names)


def _numeric_list(value: Any) -> bool:
    """A non-empty flat list/tuple of (non-bool) numbers, which HDF5 stores as an array."""
    return (
        isinstance(value, (list, tuple))
        and len(value) > 0
        and all(isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_)) for v in value)
    )


def _attr_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value


def load_h5(path: PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read every dataset (keyed by its full name, e.g. ``"group/x"``) and the root attributes."""
    import h5py

    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise TfbdlError(
            f"{path} is not a readable HDF5 file ({e}); delete it and rerun to recreate it"
        ) from e
    with f:
        arrays: dict[str, np.ndarray] = {}

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                arrays[name] = obj[()]

        f.visititems(visit)
        attrs = {k: _attr_value(v) for k, v in f.attrs.items()}
    for key in json.loads(attrs.pop(_JSON_ATTRS, "[]")):
        attrs[key] = json.loads(attrs[key])
    return arrays, attrs
