"""Run directories, atomic writes and HDF5 helpers (numpy, stdlib and h5py; no TensorFlow).

A run writes ``OUT/<experiment>/<run-id>/`` holding ``config.json`` (resolved options, package
versions, git commit), ``metrics.csv`` / ``metrics.json``, artifacts, figures and ``summary.md``.
Every file is written atomically (temp file in the same folder, fsync, ``os.replace``, fsync
of the folder), so a killed job leaves either the old or the new file, never half of one;
``progress.json`` records finished pieces so that a rerun skips them.

One process writes a given run directory at a time; shards of a job write separate files.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import errno
import hashlib
import io as _io
import json
import os
import pathlib
import platform
import re
import subprocess
import tempfile
from typing import Any, Iterator

import numpy as np

from tfbdl.errors import InvalidOptionError, RunDirectoryError, ShapeError, TfbdlError

__all__ = [
    "H5BlockMatrix",
    "RunDir",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "config_hash",
    "default_run_id",
    "git_commit",
    "load_h5",
    "package_versions",
    "save_h5",
]

PathLike = str | os.PathLike

# --------------------------------------------------------------------------- atomic writes

_UMASK: int | None = None


def _umask() -> int:
    """The process umask, read once (from /proc when possible, which changes nothing)."""
    global _UMASK
    if _UMASK is None:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("Umask:"):
                        _UMASK = int(line.split()[1], 8)
                        break
        except OSError:
            pass
        if _UMASK is None:
            _UMASK = os.umask(0o022)
            os.umask(_UMASK)
    return _UMASK


def fsync_dir(folder: pathlib.Path) -> None:
    """fsync a folder so a rename inside it survives a power cut (no-op where unsupported)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: pathlib.Path) -> None:
    """fsync a file that some other code (h5py, numpy) wrote and closed."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _new_temp(path: pathlib.Path) -> pathlib.Path:
    """Create an empty hidden temp file next to ``path`` that ends with the same suffix."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    return pathlib.Path(tmp)


def _commit_temp(tmp: pathlib.Path, path: pathlib.Path) -> None:
    """Give ``tmp`` normal permissions, fsync it, rename it onto ``path`` and fsync the folder."""
    try:
        mode = path.stat().st_mode & 0o7777
    except OSError:
        mode = 0o666 & ~_umask()
    os.chmod(tmp, mode)
    _fsync_file(tmp)
    os.replace(tmp, path)
    fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[pathlib.Path]:
    """Yield a temp path next to ``path`` (same suffix); on success rename it onto ``path``.

    For writers that want a file name (h5py, ``np.savez``): whatever they write appears at
    ``path`` all at once. On an exception the temp file is deleted, ``path`` is left as it
    was, and the exception propagates. The folder of ``path`` must exist.
    """
    path = pathlib.Path(path)
    tmp = _new_temp(path)
    try:
        yield tmp
        _commit_temp(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (readers see the old or the new file, never half)."""
    path = pathlib.Path(path)
    tmp = _new_temp(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _commit_temp(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, tuples and paths into plain JSON types, recursively."""
    if isinstance(obj, dict):
        return {_json_key(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, pathlib.PurePath):
        return str(obj)
    return obj


def _json_key(key: Any) -> Any:
    if isinstance(key, np.generic):
        key = key.item()
    return key if isinstance(key, str) else str(key)


def _to_json(obj: Any) -> str:
    try:
        return json.dumps(_jsonable(obj), indent=2, sort_keys=True) + "\n"
    except TypeError as e:
        raise InvalidOptionError(
            f"cannot store this value as JSON ({e}); pass numbers, strings, lists and dicts"
        ) from e


def atomic_write_json(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as JSON (indent 2, sorted keys; numpy values made plain) atomically."""
    atomic_write_text(path, _to_json(obj))


# --------------------------------------------------------------------------- provenance

_VERSIONED = (
    "tfbdl",
    "tensorflow",
    "keras",
    "tensorflow-probability",
    "gpflow",
    "numpy",
    "scipy",
    "h5py",
    "click",
    "matplotlib",
)


def package_versions() -> dict[str, str | None]:
    """Versions of python and the packages results depend on (None when not installed).

    Read from installed metadata, so nothing is imported (TensorFlow takes seconds to load).
    """
    from importlib import metadata

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    if out["tfbdl"] is None:  # running from a source checkout that is not pip-installed
        from tfbdl import __version__

        out["tfbdl"] = __version__
    return out


def _git(args: list[str], cwd: pathlib.Path) -> str | None:
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0", LC_ALL="C")  # never take the index lock
    try:
        res = subprocess.run(
            ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout if res.returncode == 0 else None


def git_commit(path: PathLike | None = None) -> dict | None:
    """{"commit": sha, "dirty": bool} of the git checkout holding ``path``, or None.

    ``path`` defaults to the folder of the tfbdl package. "dirty" means tracked files differ
    from the commit (untracked files are ignored). None when there is no git, no repository,
    or no commit yet; never raises.
    """
    try:
        folder = pathlib.Path(path) if path is not None else pathlib.Path(__file__).resolve().parent
        if not folder.is_dir():
            folder = folder.parent
        if not folder.is_dir():
            return None
    except OSError:
        return None
    sha = _git(["rev-parse", "--verify", "-q", "HEAD"], folder)
    if not sha or not sha.strip():
        return None
    status = _git(["status", "--porcelain", "--untracked-files=no"], folder)
    return {"commit": sha.strip(), "dirty": bool(status.strip()) if status is not None else None}


def _canonical_json(obj: Any) -> str:
    return json.dumps(_jsonable(obj), sort_keys=True, separators=(",", ":"))


def config_hash(config: dict) -> str:
    """8 hex characters of sha256 of the canonical JSON of ``config`` (key order ignored)."""
    try:
        text = _canonical_json(config)
    except TypeError as e:
        raise InvalidOptionError(f"config must hold JSON values only ({e})") from e
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def _check_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _SAFE_NAME.match(value) or set(value) == {"."}:
        raise InvalidOptionError(
            f"{what} {value!r} is not a safe folder name: use letters, digits, '-', '_' and '.' only"
        )
    return value


def default_run_id(config: dict, scale: str) -> str:
    """``f"{scale}-{config_hash(config)}"``: the same command gives the same id, so a rerun resumes."""
    _check_name(scale, "scale")
    return f"{scale}-{config_hash(config)}"


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _diff_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys at which two JSON values differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new)):
            key = f"{prefix}{k}"
            if k not in old or k not in new:
                out.append(key)
            else:
                out.extend(_diff_keys(old[k], new[k], key + "."))
        return out
    return [] if old == new else [prefix.rstrip(".") or "(whole config)"]


# --------------------------------------------------------------------------- run directories

_COMPLETE = "__complete__"


def _parse_cell(text: str) -> Any:
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _csv_cell(value: Any) -> Any:
    value = _jsonable(value)
    return "" if value is None else value


def _is_non_folder(path: pathlib.Path) -> bool:
    try:
        return path.exists() and not path.is_dir()
    except OSError:  # not even searchable: not the component to blame here
        return False


def _cannot_create(path: pathlib.Path, error: OSError) -> str:
    """One line for an OSError met while creating or resuming the run folder ``path``."""
    reason = error.strerror or str(error) or type(error).__name__
    where = pathlib.Path(error.filename) if error.filename else path
    if isinstance(error, NotADirectoryError) or error.errno == errno.ENOTDIR:
        blocker = next((p for p in [path, *path.parents] if _is_non_folder(p)), None)
        if blocker is not None:
            return (f"cannot create the run folder {path}: {blocker} is a file, not a folder; "
                    "choose another --out (a folder you can write to)")
    if isinstance(error, PermissionError) or error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"cannot create the run folder {path}: {reason} ({where}); choose an --out you can write to, "
                "or fix the folder's permissions")
    return f"cannot create the run folder {path}: {reason} ({where}); choose another --out"


class RunDir:
    """One run's folder ``out/experiment/run_id/`` with atomic writers and progress marks.

    Make one with :meth:`RunDir.open`. ``config`` is the run's config after a JSON round
    trip (what ``config.json`` holds).
    """

    def __init__(self, path: pathlib.Path, experiment: str, run_id: str, config: dict):
        self.path = pathlib.Path(path)
        self.experiment = experiment
        self.run_id = run_id
        self.config = config
        self._progress: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @classmethod
    def open(
        cls, out: PathLike, experiment: str, run_id: str, config: dict, resume: bool = True
    ) -> "RunDir":
        """Create or resume ``out/experiment/run_id/`` and write its ``config.json``.

        An existing run is resumed only when its stored config equals ``config``; otherwise
        RunDirectoryError names the keys that differ. With ``resume=False`` an existing
        folder is renamed to ``run_id.old-<timestamp>`` (never deleted) and a fresh one made.
        Any OSError on the way (a path component that is a file, a read-only or full disk, no
        permission) becomes a one-line RunDirectoryError naming the path and what to do.
        """
        _check_name(experiment, "experiment name")
        _check_name(run_id, "run id")
        if not isinstance(config, dict):
            raise InvalidOptionError(f"config must be a dict, got {type(config).__name__}")
        try:
            config = json.loads(_canonical_json(config))
        except (TypeError, ValueError) as e:
            raise InvalidOptionError(f"config must hold JSON values only ({e})") from e
        path = pathlib.Path(out) / experiment / run_id
        try:
            if path.exists() and not path.is_dir():
                raise RunDirectoryError(f"{path} exists and is not a folder; remove it or choose another --out")
            if path.exists():
                if resume:
                    if cls._resumable(path, config):
                        return cls(path, experiment, run_id, config)
                else:
                    cls._move_aside(path)
            path.mkdir(parents=True, exist_ok=True)
            atomic_write_json(
                path / "config.json",
                {"config": config, "versions": package_versions(), "git": git_commit(), "created": _now_iso()},
            )
        except OSError as error:
            raise RunDirectoryError(_cannot_create(path, error)) from error
        return cls(path, experiment, run_id, config)

    @staticmethod
    def _resumable(path: pathlib.Path, config: dict) -> bool:
        """True if ``path`` holds a run of ``config``; False if it is an empty folder; else raise."""
        cfg_file = path / "config.json"
        if not cfg_file.exists():
            if any(path.iterdir()):
                raise RunDirectoryError(
                    f"{path} exists but has no config.json, so it is not a tfbdl run to resume; "
                    "rerun with --no-resume (the folder is moved aside) or choose another --out"
                )
            return False
        try:
            stored = json.loads(cfg_file.read_text(encoding="utf-8"))["config"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise RunDirectoryError(
                f"cannot read {cfg_file} ({e}); rerun with --no-resume (the old run is moved aside) "
                "or choose another --out"
            ) from e
        if stored != config:
            keys = ", ".join(_diff_keys(stored, config))
            raise RunDirectoryError(
                f"{path} holds a run with a different config (differs in: {keys}); rerun with "
                "--no-resume to start over (the old run is moved aside) or choose another --out"
            )
        return True

    @staticmethod
    def _move_aside(path: pathlib.Path) -> pathlib.Path:
        stamp = _dt.datetime.now().strftime("%Y%m%dT%H%M%S")
        target = path.with_name(f"{path.name}.old-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = path.with_name(f"{path.name}.old-{stamp}-{n}")
        os.rename(path, target)
        fsync_dir(path.parent)
        return target

    # ------------------------------------------------------------------ files

    def file(self, name: str) -> pathlib.Path:
        """Path of ``name`` inside the run folder (subfolders such as ``figures/`` are created)."""
        rel = pathlib.PurePosixPath(str(name).replace(os.sep, "/"))
        if rel.is_absolute() or ".." in rel.parts or not rel.parts or str(rel) == ".":
            raise InvalidOptionError(f"file name {name!r} must be a relative path inside the run folder")
        path = self.path.joinpath(*rel.parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def write_json(self, name: str, obj: Any) -> pathlib.Path:
        """Write ``obj`` as JSON to ``name`` in the run folder, atomically."""
        path = self.file(name)
        atomic_write_json(path, obj)
        return path

    def write_metrics(self, obj: dict) -> pathlib.Path:
        """Write the run's final metrics to ``metrics.json``, atomically."""
        return self.write_json("metrics.json", obj)

    def write_summary(self, markdown: str) -> pathlib.Path:
        """Write ``summary.md`` (collected into OUT/REPORT.md by run_all.sh), atomically."""
        path = self.file("summary.md")
        atomic_write_text(path, markdown if markdown.endswith("\n") else markdown + "\n")
        return path

    def append_metrics_row(self, row: dict, name: str = "metrics.csv") -> pathlib.Path:
        """Append one row to a CSV log; the first row fixes the header (its key order).

        Later rows must have the same keys (ShapeError otherwise). The whole file is
        rewritten atomically, so a killed process leaves the old or the new file.
        """
        if not isinstance(row, dict) or not row:
            raise ShapeError("a metrics row must be a non-empty dict of column -> value")
        path = self.file(name)
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        keys = [str(k) for k in row]
        values = {str(k): v for k, v in row.items()}
        buf = _io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        if old.strip():
            header = next(csv.reader(_io.StringIO(old)))
            if sorted(header) != sorted(keys):
                raise ShapeError(
                    f"{path.name} has columns {header} but this row has {keys}; log the same keys "
                    "every row, or write to another file"
                )
            if not old.endswith("\n"):
                old += "\n"
        else:
            header, old = keys, ""
            writer.writerow(header)
        writer.writerow([_csv_cell(values[k]) for k in header])
        atomic_write_text(path, old + buf.getvalue())
        return path

    def read_metrics_rows(self, name: str = "metrics.csv") -> list[dict]:
        """Rows of a CSV log as dicts (ints/floats where they parse, None for empty); [] if absent."""
        path = self.path / name
        if not path.exists():
            return []
        with open(path, newline="", encoding="utf-8") as f:
            return [{k: _parse_cell(v) for k, v in r.items()} for r in csv.DictReader(f)]

    # ------------------------------------------------------------------ progress

    def _load_progress(self) -> dict[str, Any]:
        if self._progress is None:
            path = self.path / "progress.json"
            if path.exists():
                try:
                    self._progress = json.loads(path.read_text(encoding="utf-8"))
                except ValueError as e:
                    raise RunDirectoryError(
                        f"cannot parse {path} ({e}); rerun with --no-resume to start over"
                    ) from e
            else:
                self._progress = {}
        return self._progress

    def is_done(self, key: str) -> bool:
        """Whether ``key`` (a block, epoch, ensemble member...) was marked done."""
        return str(key) in self._load_progress()

    def mark_done(self, key: str, info: Any = None) -> None:
        """Record ``key`` as done (with optional JSON ``info``) in progress.json, atomically.

        Call it only after the piece's own files are written.
        """
        progress = dict(self._load_progress())
        progress[str(key)] = _jsonable(info)
        atomic_write_json(self.path / "progress.json", progress)
        self._progress = progress

    def done_info(self, key: str, default: Any = None) -> Any:
        """The JSON ``info`` that :meth:`mark_done` recorded for ``key`` (``default`` if not done)."""
        return self._load_progress().get(str(key), default)

    def done_keys(self) -> list[str]:
        """Keys marked done, in the order they were marked."""
        return list(self._load_progress())

    def record_data(self, provenance: list[dict]) -> None:
        """Add to ``config.json`` which data the run really used (full files, an embedded
        subset or a stand-in): the options say what was asked, this says what was read."""
        cfg_file = self.path / "config.json"
        stored = json.loads(cfg_file.read_text(encoding="utf-8"))
        stored["data"] = provenance
        atomic_write_json(cfg_file, stored)

    def finish(self, summary_markdown: str | None = None) -> None:
        """Write ``summary.md`` if given, then mark the whole run complete."""
        if summary_markdown is not None:
            self.write_summary(summary_markdown)
        self.mark_done(_COMPLETE, {"finished": _now_iso()})

    @property
    def is_complete(self) -> bool:
        """True once :meth:`finish` ran."""
        return self.is_done(_COMPLETE)


# --------------------------------------------------------------------------- HDF5

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
                    f.attrs[key] = json.dumps(_jsonable(value))
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


def _norm_slice(s: Any, n: int, what: str) -> tuple[int, int]:
    """(start, stop) of a unit-step, non-empty slice (or (start, stop) pair) within [0, n]."""
    if isinstance(s, tuple) and len(s) == 2:
        s = slice(*s)
    if not isinstance(s, slice):
        raise ShapeError(f"{what} must be a slice or a (start, stop) pair, got {s!r}")
    if s.step not in (None, 1):
        raise ShapeError(f"{what} must have step 1, got {s!r}")
    start = 0 if s.start is None else int(s.start)
    stop = n if s.stop is None else int(s.stop)
    if not 0 <= start < stop <= n:
        raise ShapeError(f"{what} {s!r} is empty or outside [0, {n}); pass start < stop <= {n}")
    return start, stop


class H5BlockMatrix:
    """A 2-D HDF5 dataset [R, C] filled block by block, resumably.

    Each :meth:`write_block` writes the block, flushes and fsyncs the file, and only then
    appends (r0, r1, c0, c1) to the companion dataset ``<name>__done`` [n_done, 4]; so a
    block interrupted mid-write is never listed as done and is recomputed on rerun.
    Unwritten float entries read as NaN.
    """

    def __init__(self, path: PathLike, name: str, shape: tuple[int, int], dtype="float64", chunks=None):
        import h5py

        self.path = pathlib.Path(path)
        self.name = name
        self.shape = tuple(int(n) for n in shape)
        if len(self.shape) != 2 or min(self.shape) < 1:
            raise ShapeError(f"H5BlockMatrix needs a 2-D shape of positive sizes, got {tuple(shape)}")
        self.dtype = np.dtype(dtype)
        self._done_name = f"{name}__done"
        try:
            self._file = h5py.File(self.path, "a")
        except OSError as e:
            raise RunDirectoryError(
                f"cannot open {self.path} as HDF5 ({e}); if a crash damaged it, delete it and rerun"
            ) from e
        try:
            if name in self._file:
                ds = self._file[name]
                if not isinstance(ds, h5py.Dataset) or ds.shape != self.shape or ds.dtype != self.dtype:
                    got = f"{ds.shape} {ds.dtype}" if isinstance(ds, h5py.Dataset) else "a group"
                    raise RunDirectoryError(
                        f"{self.path}:{name} exists as {got}, not {self.shape} {self.dtype}; "
                        "rerun with --no-resume or another --out to start a new matrix"
                    )
            else:
                fill = np.nan if self.dtype.kind in "fc" else 0
                self._file.create_dataset(
                    name, shape=self.shape, dtype=self.dtype, chunks=chunks, fillvalue=fill
                )
            if self._done_name not in self._file:
                self._file.create_dataset(
                    self._done_name, shape=(0, 4), maxshape=(None, 4), dtype="int64", chunks=(256, 4)
                )
            self._sync()
        except BaseException:
            self._file.close()
            raise
        self._ds = self._file[name]
        self._done_ds = self._file[self._done_name]
        self._done = {tuple(int(v) for v in row) for row in self._done_ds[()]}

    def _sync(self) -> None:
        self._file.flush()
        _fsync_file(self.path)

    def _key(self, row_slice, col_slice) -> tuple[int, int, int, int]:
        r = _norm_slice(row_slice, self.shape[0], "row_slice")
        c = _norm_slice(col_slice, self.shape[1], "col_slice")
        return (*r, *c)

    @property
    def dataset(self):
        """The underlying h5py Dataset [R, C] (valid until :meth:`close`)."""
        return self._ds

    def read(self) -> np.ndarray:
        """The whole matrix [R, C] as a numpy array (NaN where no block was written)."""
        return self._ds[()]

    def write_block(self, row_slice, col_slice, values) -> None:
        """Write ``values`` [r1 - r0, c1 - c0] at the block, make it durable, then mark it done."""
        key = self._key(row_slice, col_slice)
        r0, r1, c0, c1 = key
        values = np.asarray(values)
        if values.shape != (r1 - r0, c1 - c0):
            raise ShapeError(
                f"block [{r0}:{r1}, {c0}:{c1}] needs values of shape {(r1 - r0, c1 - c0)}, "
                f"got {values.shape}"
            )
        if key in self._done:  # rewriting: unmark first, so a torn rewrite is not listed as done
            self._rewrite_done(self._done - {key})
        self._ds[r0:r1, c0:c1] = values
        self._sync()
        n = self._done_ds.shape[0]
        self._done_ds.resize((n + 1, 4))
        self._done_ds[n] = key
        self._sync()
        self._done.add(key)

    def _rewrite_done(self, done: set) -> None:
        rows = sorted(done)
        self._done_ds.resize((len(rows), 4))
        if rows:
            self._done_ds[:] = np.asarray(rows, dtype=np.int64)
        self._sync()
        self._done = set(done)

    def is_block_done(self, row_slice, col_slice) -> bool:
        """Whether exactly this block was written completely."""
        return self._key(row_slice, col_slice) in self._done

    def done_blocks(self) -> list[tuple[slice, slice]]:
        """The finished blocks as (row_slice, col_slice) pairs, sorted."""
        return [(slice(r0, r1), slice(c0, c1)) for r0, r1, c0, c1 in sorted(self._done)]

    def close(self) -> None:
        """Flush and close the file (safe to call twice)."""
        if self._file.id.valid:
            self._file.flush()
            self._file.close()

    def __enter__(self) -> "H5BlockMatrix":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
