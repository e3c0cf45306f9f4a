"""Run directories: one run's folder with its config, metrics, summary and progress records.

A run writes ``OUT/<experiment>/<run-id>/`` holding ``config.json`` (resolved options, package
versions, git commit), ``metrics.csv`` / ``metrics.json``, artifacts, figures and ``summary.md``.
Every file is written atomically, so a killed job leaves either the old or the new file;
``progress.json`` records finished pieces so that a rerun skips them.

One process writes a given run directory at a time; shards of a job write separate files.
"""

from __future__ import annotations

import csv
import datetime as _dt
import errno
import io as _io
import json
import os
import pathlib
from typing import Any

from tfbdl.errors import InvalidOptionError, RunDirectoryError, ShapeError
from tfbdl.io.atomic import PathLike, atomic_write_text, fsync_dir
from tfbdl.io.jsonio import atomic_write_json, canonical_json, to_jsonable
from tfbdl.io.provenance import check_folder_name, git_commit, package_versions

__all__ = ["RunDir"]

_COMPLETE = "__complete__"


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
    value = to_jsonable(value)
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
        check_folder_name(experiment, "experiment name")
        check_folder_name(run_id, "run id")
        if not isinstance(config, dict):
            raise InvalidOptionError(f"config must be a dict, got {type(config).__name__}")
        try:
            config = json.loads(canonical_json(config))
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
            if any(not _is_temporary(p) for p in path.iterdir()):
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
        progress[str(key)] = to_jsonable(info)
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


def _is_temporary(path: pathlib.Path) -> bool:
    """A hidden temporary file of an atomic write (``.name.*.tmp.ext``): a kill can leave one
    behind, and it holds no result."""
    return path.name.startswith(".") and ".tmp" in path.name
