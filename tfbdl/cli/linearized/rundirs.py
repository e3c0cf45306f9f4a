"""Run-directory plumbing of ``tfbdl linearized``: resumable sub-runs, their configs, and the
finished runs a command may reuse (``--ntk-run``, ``--nads-run``)."""

from __future__ import annotations

import dataclasses
import json
import pathlib

from tfbdl.errors import InvalidOptionError

__all__ = ["eigen_count", "finished_run", "read_json", "stage_config", "stage_run", "stored_strategy"]


def stage_run(parent, stage: str, config: dict):
    """The resumable sub-run ``<parent run>/<stage>/``."""
    from tfbdl.io import RunDir

    return RunDir.open(parent.path.parent, parent.path.name, stage, config)


def stage_config(stage: str, preset, **extra) -> dict:
    """A stage's config: its preset and what else determines its results."""
    return {"stage": stage, **dataclasses.asdict(preset), **extra}


def read_json(path) -> dict:
    """The JSON object in the file ``path``."""
    return json.loads(pathlib.Path(path).read_text(encoding="utf-8"))


def finished_run(path, stage: str, files: tuple[str, ...], option: str) -> pathlib.Path:
    """The finished ``stage`` folder at ``path`` (a ``<stage>`` run or a ``linearized run`` directory
    holding one), else InvalidOptionError."""
    folder = pathlib.Path(path)
    if (folder / stage / "config.json").is_file():
        folder = folder / stage
    missing = [name for name in ("config.json", *files) if not (folder / name).is_file()]
    progress = folder / "progress.json"
    complete = progress.is_file() and "__complete__" in read_json(progress)
    if missing or not complete:
        raise InvalidOptionError(f"{option} {path} is not a finished `tfbdl linearized {stage}` run "
                                 f"({'no ' + ', '.join(missing) if missing else 'unfinished'}); run that command first")
    return folder


def eigen_count(folder: pathlib.Path, name: str = "eigen.h5") -> int:
    """Number of eigenvectors stored in ``folder/name`` (reads only the shape)."""
    import h5py

    with h5py.File(folder / name, "r") as f:
        return int(f["eigenvalues"].shape[0])


def stored_strategy(path) -> str:
    """The NTK strategy recorded in the block file ``path``."""
    import h5py

    with h5py.File(path, "r") as f:
        value = f.attrs["strategy"]
    return value.decode() if isinstance(value, bytes) else str(value)
