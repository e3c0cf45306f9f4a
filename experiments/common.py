"""Helpers every experiment command uses: opening its run directory and announcing it."""

from __future__ import annotations

import os
from pathlib import Path

RUN_RECORD_ENV = "TFBDL_RUN_RECORD"


def open_run(experiment: str, config: dict, *, out: str, scale: str, resume: bool, run_id: str | None = None):
    """Open (or resume) OUT/<experiment>/<run-id>/ for a resolved config."""
    from tfbdl.io import RunDir, default_run_id

    run_id = run_id or default_run_id(config, scale)
    return RunDir.open(out, experiment, run_id, config, resume=resume)


def record_run(run) -> None:
    """Tell ``tfbdl run-all`` (through $TFBDL_RUN_RECORD) which run directory this command wrote."""
    record = os.environ.get(RUN_RECORD_ENV)
    if record:
        Path(record).parent.mkdir(parents=True, exist_ok=True)
        with open(record, "a", encoding="utf-8") as handle:
            handle.write(f"{Path(run.path).resolve()}\n")
