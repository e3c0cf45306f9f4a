"""Differences between the result files of two runs of one command.

Arrays must be bitwise equal: ``.npy``, ``.npz``, HDF5 datasets and attributes (Keras weights
included), dtype and shape too. ``.json``, ``.csv`` and ``.md`` files must be equal after the
fields that legitimately differ between two runs are removed (:class:`Volatile`: wall-clock
seconds, timestamps, memory addresses). Everywhere, a run's own output folder written into a file
(an absolute path) reads as ``<out>``: two runs into two folders differ there and nowhere else. A
zip archive (``.keras``) is compared member by member; any other file byte for byte. Messages call
the first run (A) the uninterrupted run and the second (B) the killed run.
"""

from __future__ import annotations

import csv
import dataclasses
import fnmatch
import io
import json
import math
import pathlib
import re
import zipfile
from typing import Any, Iterable

import h5py
import numpy as np

__all__ = ["Volatile", "diff_files", "diff_trees", "resolve"]

_A, _B = "the uninterrupted run", "the killed run"


@dataclasses.dataclass(frozen=True)
class Volatile:
    """Fields that legitimately differ between two runs of the same command.

    ``json_keys``: fnmatch patterns of dotted key paths in JSON files (list items by index, e.g.
    ``created``, ``epochs.*.seconds``; ``*`` also matches dots), removed before comparing (a
    list item is blanked instead, so the others keep their places).
    ``csv_columns``: fnmatch patterns of CSV column names, removed. ``text``: regular expressions
    whose matches are blanked in Markdown files and in the strings of JSON files.
    """

    json_keys: tuple[str, ...] = ()
    csv_columns: tuple[str, ...] = ()
    text: tuple[str, ...] = ()

    def __add__(self, other: "Volatile") -> "Volatile":
        return Volatile(self.json_keys + other.json_keys, self.csv_columns + other.csv_columns,
                        self.text + other.text)


@dataclasses.dataclass(frozen=True)
class _Side:
    """One run: its output folder (written as ``<out>`` in compared strings) and the rules."""

    out: pathlib.Path
    rules: Volatile

    def path_free(self, text: str) -> str:
        """``text`` with this run's output folder replaced by ``<out>``."""
        for root in sorted({str(self.out), str(self.out.resolve())}, key=len, reverse=True):
            text = text.replace(root, "<out>")
        return text

    def text(self, text: str) -> str:
        """``text`` path-free, with the volatile patterns blanked."""
        text = self.path_free(text)
        for pattern in self.rules.text:
            text = re.sub(pattern, "<volatile>", text)
        return text


def resolve(root: pathlib.Path, patterns: Iterable[str]) -> dict[str, list[str]]:
    """Files under ``root`` matching each glob pattern, as sorted paths relative to ``root``
    (hidden files, such as the temp files of atomic writes, never match)."""
    def shown(f: pathlib.Path) -> bool:
        return f.is_file() and not any(part.startswith(".") for part in f.relative_to(root).parts)

    return {p: sorted(str(f.relative_to(root)) for f in root.glob(p) if shown(f)) for p in patterns}


def _short(value: Any, limit: int = 100) -> str:
    text = repr(value.tolist() if isinstance(value, np.ndarray) else value)
    return text if len(text) <= limit else text[:limit] + "..."


def _strings(value: np.ndarray, side: _Side) -> Any:
    """A string array (or scalar) as nested lists of path-free strings."""
    if value.ndim == 0:
        item = value.item()
        return side.path_free(item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item))
    return [_strings(v, side) for v in value]


def _array_diff(a: Any, b: Any, sa: _Side, sb: _Side) -> str | None:
    """None if ``a`` and ``b`` are bitwise equal (dtype, shape, bytes; strings path-free), else what differs."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind in "USO" and b.dtype.kind in "USO" and a.shape == b.shape:
        pa, pb = _strings(a, sa), _strings(b, sb)
        return None if pa == pb else f"{_short(pa)} vs {_short(pb)}"
    if a.dtype != b.dtype or a.shape != b.shape:
        return f"{a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)}"
    if np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes():
        return None
    if a.dtype.kind in "fciub" and a.ndim:
        equal = (a == b) | (np.isnan(a) & np.isnan(b)) if a.dtype.kind in "fc" else a == b
        differ = np.argwhere(~equal)
        if not len(differ):
            return f"equal values but not bitwise (signed zeros or NaN payloads) in {a.size} entries"
        first = tuple(int(i) for i in differ[0])
        return f"{len(differ)} of {a.size} entries differ; first at {first}: {a[first]!r} vs {b[first]!r}"
    return f"{_short(a)} vs {_short(b)}"


def _only(name: str, in_a: bool) -> str:
    return f"{name} only in {_A if in_a else _B}"


def _attrs_diffs(where: str, a: h5py.AttributeManager, b: h5py.AttributeManager, sa: _Side, sb: _Side) -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        if key not in a or key not in b:
            out.append(_only(f"attribute {where}@{key}", key in a))
            continue
        diff = _array_diff(a[key], b[key], sa, sb)
        if diff:
            out.append(f"attribute {where}@{key}: {diff}")
    return out


def _h5_diffs(a_file: Any, b_file: Any, sa: _Side, sb: _Side) -> list[str]:
    """Every dataset (values, dtype, shape) and attribute of two HDF5 files, bitwise."""
    with h5py.File(a_file, "r") as fa, h5py.File(b_file, "r") as fb:
        names_a, names_b = [], []
        fa.visit(names_a.append)
        fb.visit(names_b.append)
        out = _attrs_diffs("/", fa.attrs, fb.attrs, sa, sb)
        for name in sorted(set(names_a) | set(names_b)):
            if name not in names_a or name not in names_b:
                out.append(_only(name, name in names_a))
                continue
            oa, ob = fa[name], fb[name]
            if isinstance(oa, h5py.Dataset) != isinstance(ob, h5py.Dataset):
                out.append(f"{name}: a dataset in one file, a group in the other")
                continue
            if isinstance(oa, h5py.Dataset):
                diff = _array_diff(oa[()], ob[()], sa, sb)
                if diff:
                    out.append(f"dataset {name}: {diff}")
            out.extend(_attrs_diffs(name, oa.attrs, ob.attrs, sa, sb))
        return out


def _npz_diffs(a_file: Any, b_file: Any, sa: _Side, sb: _Side) -> list[str]:
    with np.load(a_file, allow_pickle=False) as za, np.load(b_file, allow_pickle=False) as zb:
        out = []
        for key in sorted(set(za.files) | set(zb.files)):
            if key not in za.files or key not in zb.files:
                out.append(_only(f"array {key}", key in za.files))
                continue
            diff = _array_diff(za[key], zb[key], sa, sb)
            if diff:
                out.append(f"array {key}: {diff}")
        return out


def _plain_json(value: Any, side: _Side, path: str = "") -> Any:
    """``value`` without the volatile keys (a volatile list item reads ``<volatile>``), its strings
    path-free with volatile text blanked."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            p = f"{path}.{k}" if path else str(k)
            if not any(fnmatch.fnmatchcase(p, pattern) for pattern in side.rules.json_keys):
                out[k] = _plain_json(v, side, p)
        return out
    if isinstance(value, list):
        items = []
        for i, v in enumerate(value):
            p = f"{path}.{i}" if path else str(i)
            volatile = any(fnmatch.fnmatchcase(p, pattern) for pattern in side.rules.json_keys)
            items.append("<volatile>" if volatile else _plain_json(v, side, p))
        return items
    return side.text(value) if isinstance(value, str) else value


def _json_paths_differ(a: Any, b: Any, path: str = "") -> list[str]:
    """Dotted paths at which two JSON values differ (NaN equals NaN)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            p = f"{path}.{k}" if path else str(k)
            out.extend(_json_paths_differ(a[k], b[k], p) if k in a and k in b else [_only(p, k in a)])
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b))
                for d in _json_paths_differ(x, y, f"{path}.{i}" if path else str(i))]
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return []
    if a == b and type(a) is type(b):
        return []
    return [f"{path or '(whole file)'}: {_short(a)} vs {_short(b)}"]


def _json_diffs(a_text: str, b_text: str, sa: _Side, sb: _Side) -> list[str]:
    try:
        b = json.loads(b_text)
    except ValueError as e:
        return [f"not valid JSON in {_B} ({e})"]
    return _json_paths_differ(_plain_json(json.loads(a_text), sa), _plain_json(b, sb))


def _csv_table(text: str, side: _Side) -> list[list[str | None]]:
    """The rows of a CSV text without the volatile columns, cells path-free."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return []
    keep = [i for i, c in enumerate(rows[0]) if not any(fnmatch.fnmatchcase(c, p) for p in side.rules.csv_columns)]
    return [[side.path_free(r[i]) if i < len(r) else None for i in keep] for r in rows]


def _lines_diffs(a: list, b: list, what: str = "line") -> list[str]:
    if len(a) != len(b):
        return [f"{len(a)} {what}s vs {len(b)} {what}s"]
    return [f"{what} {i + 1}: {_short(x)} vs {_short(y)}" for i, (x, y) in enumerate(zip(a, b)) if x != y][:5]


def _bytes_diffs(name: str, a: bytes, b: bytes, sa: _Side, sb: _Side) -> list[str]:
    """Differences between two versions of the file ``name`` given as bytes."""
    suffix = pathlib.PurePath(name).suffix.lower()
    if suffix in (".h5", ".hdf5"):
        return _h5_diffs(io.BytesIO(a), io.BytesIO(b), sa, sb)
    if suffix == ".npz":
        return _npz_diffs(io.BytesIO(a), io.BytesIO(b), sa, sb)
    if suffix == ".npy":
        diff = _array_diff(np.load(io.BytesIO(a), allow_pickle=False), np.load(io.BytesIO(b), allow_pickle=False),
                           sa, sb)
        return [diff] if diff else []
    if suffix in (".keras", ".zip"):
        return _zip_diffs(a, b, sa, sb)
    if suffix not in (".json", ".csv", ".md"):
        return [] if a == b else [f"bytes differ ({len(a)} vs {len(b)} bytes)"]
    text_a, text_b = a.decode("utf-8", errors="replace"), b.decode("utf-8", errors="replace")
    if suffix == ".json":
        return _json_diffs(text_a, text_b, sa, sb)
    if suffix == ".csv":
        return _lines_diffs(_csv_table(text_a, sa), _csv_table(text_b, sb))
    return _lines_diffs(sa.text(text_a).splitlines(), sb.text(text_b).splitlines())


def _zip_diffs(a: bytes, b: bytes, sa: _Side, sb: _Side) -> list[str]:
    """A Keras archive (or any zip): every member compared by its own kind."""
    with zipfile.ZipFile(io.BytesIO(a)) as za, zipfile.ZipFile(io.BytesIO(b)) as zb:
        names_a, names_b = set(za.namelist()), set(zb.namelist())
        out = [_only(f"member {n}", n in names_a) for n in sorted(names_a ^ names_b)]
        for name in sorted(names_a & names_b):
            out.extend(f"member {name}: {d}" for d in _bytes_diffs(name, za.read(name), zb.read(name), sa, sb))
        return out


def diff_files(a_file: pathlib.Path, b_file: pathlib.Path, a_out: pathlib.Path, b_out: pathlib.Path,
               rules: Volatile) -> list[str]:
    """What differs between one result file of two runs into ``a_out`` and ``b_out`` (a file that
    cannot be read back is a difference too)."""
    sa, sb = _Side(a_out, rules), _Side(b_out, rules)
    try:
        return _bytes_diffs(a_file.name, a_file.read_bytes(), b_file.read_bytes(), sa, sb)
    except Exception as error:  # a corrupt file is a finding, not a crash of the comparison
        return [f"cannot be read back ({type(error).__name__}: {error})"]


def diff_trees(a_out: pathlib.Path, b_out: pathlib.Path, patterns: Iterable[str],
               rules: Volatile) -> tuple[int, list[str]]:
    """Compare the files matching ``patterns`` under two output folders: (files compared, differences).

    Each difference is one line ``path: what differs``; a file matching in one folder only is one too.
    """
    patterns = tuple(patterns)
    found_a, found_b = resolve(a_out, patterns), resolve(b_out, patterns)
    a_files = {rel for files in found_a.values() for rel in files}
    b_files = {rel for files in found_b.values() for rel in files}
    out = [f"{rel}: only in {_A}" for rel in sorted(a_files - b_files)]
    out += [f"{rel}: only in {_B}" for rel in sorted(b_files - a_files)]
    for rel in sorted(a_files & b_files):
        out += [f"{rel}: {d}" for d in diff_files(a_out / rel, b_out / rel, a_out, b_out, rules)]
    return len(a_files & b_files), out
