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


def data_line(provenance: list[dict]) -> str:
    """``requested/split → used/split (source)`` for each data set read, and why any was replaced."""
    seen, parts = set(), []
    for p in provenance:
        text = f"{p['requested']}/{p['requested_split']} → {p['dataset']}/{p['split']} ({p['source']})"
        if text not in seen:
            seen.add(text)
            parts.append(text)
    reasons = sorted({p["reason"] for p in provenance if p["dataset"] != p["requested"] and p["reason"]})
    notes = list(dict.fromkeys(note for p in provenance for note in p.get("notes", ())))
    return ("; ".join(parts) + (f" — {'; '.join(reasons)}" if reasons else "")
            + (f". {'; '.join(notes)}" if notes else ""))


def run_data_line(run) -> str:
    """:func:`data_line` of the data records in a run's ``config.json``."""
    import json

    return data_line(json.loads(run.file("config.json").read_text(encoding="utf-8")).get("data") or [])


def typed_option(name: str, flag: str | None = None) -> str | None:
    """``flag`` (default ``--name-with-dashes``) when the running command's parameter ``name`` was
    typed on the command line, else None (a preset value, or no command running, as in tests and
    data resolvers). Sizes the user typed are never reduced to fit the data: they are errors."""
    import click
    from click.core import ParameterSource

    context = click.get_current_context(silent=True)
    if context is None or name not in context.params:
        return None
    if context.get_parameter_source(name) != ParameterSource.COMMANDLINE:
        return None
    return flag or "--" + name.replace("_", "-")
