"""``tfbdl run-all``: run every registered experiment and collect OUT/REPORT.md.

Each experiment runs in its own process (a clean TensorFlow state, and a log per experiment);
the first failure stops the sweep with a message naming the experiment and its log. Every
experiment resumes its own run directory, so rerunning the same command continues a sweep.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path

import click

from tfbdl.cli.common import RUN_RECORD_ENV
from tfbdl.cli.fidelity import fidelity_section
from tfbdl.cli.options import data_dir_option, out_option, resume_option, scale_option, seed_option
from tfbdl.cli.registry import EXPERIMENTS, Experiment, by_name
from tfbdl.errors import TfbdlError


class ExperimentFailed(TfbdlError):
    """An experiment of the sweep exited non-zero."""


@click.command("run-all")
@scale_option()
@out_option
@data_dir_option
@seed_option
@resume_option
@click.option("--only", "only", multiple=True, type=click.Choice([e.name for e in EXPERIMENTS]),
              help="Run only this experiment (repeat the option for several).")
def run_all(scale, out, data_dir, seed, resume, only):
    """Run every registered experiment at --scale and write OUT/REPORT.md."""
    out_root = Path(out)
    out_root.mkdir(parents=True, exist_ok=True)
    selected = by_name(only)
    results = []
    for experiment in selected:
        click.echo(f"==> {experiment.name}: {experiment.title}", err=True)
        status, runs = _run_one(experiment, out_root, scale, data_dir, seed, resume)
        results.append((experiment, status, runs))
        if status != 0:
            write_report(out_root, scale, results)
            raise ExperimentFailed(
                f"experiment {experiment.name} failed (exit code {status}); its log is "
                f"{out_root / 'logs' / (experiment.name + '.log')}; fix it and rerun with --only {experiment.name}")
    report = write_report(out_root, scale, results)
    click.echo(f"all {len(selected)} experiment(s) done; report: {report}")


def _run_one(experiment: Experiment, out_root: Path, scale, data_dir, seed, resume) -> tuple[int, list[Path]]:
    """Run one experiment in a child process, teeing its output into OUT/logs/<name>.log."""
    logs = out_root / "logs"
    logs.mkdir(exist_ok=True)
    record = logs / f"{experiment.name}.runs"
    record.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "tfbdl.cli", *experiment.command, "--scale", scale,
            "--out", str(out_root), "--seed", str(seed), "--resume" if resume else "--no-resume"]
    if data_dir:
        argv += ["--data-dir", data_dir]
    env = {**os.environ, RUN_RECORD_ENV: str(record), "PYTHONUNBUFFERED": "1"}
    with open(logs / f"{experiment.name}.log", "w", encoding="utf-8") as log:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
        for line in process.stdout:
            sys.stderr.write(line)
            log.write(line)
        status = process.wait()
    runs = [Path(line) for line in record.read_text().split()] if record.exists() else []
    return status, runs


def write_report(out_root: Path, scale: str, results) -> Path:
    """Collect each run's summary.md and figures into OUT/REPORT.md (links relative to OUT)."""
    from tfbdl.io import atomic_write_text, package_versions

    versions = package_versions()
    lines = [
        "# tfbdl report", "",
        f"Scale `{scale}`, written {datetime.datetime.now().isoformat(timespec='seconds')}; "
        + ", ".join(f"{k} {v}" for k, v in versions.items() if v), "",
    ]
    lines += data_used_section(results)
    lines += fidelity_section(results, scale)
    for experiment, status, runs in results:
        lines += [f"## {experiment.name}", "", f"*{experiment.title}*", ""]
        if status != 0:
            lines += [f"**Failed** (exit code {status}); see `logs/{experiment.name}.log`.", ""]
        for run in runs:
            relative = os.path.relpath(run, out_root)
            lines += [f"Run directory: `{relative}`", ""]
            notes = run_data_notes(run)
            if notes:
                lines += ["Data notes: " + "; ".join(notes) + ".", ""]
            summary = run / "summary.md"
            if summary.exists():
                lines += [summary.read_text(encoding="utf-8").rstrip(), ""]
            for figure in sorted(run.glob("*.png")):
                lines += [f"![{figure.stem}]({relative}/{figure.name})", ""]
    path = out_root / "REPORT.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def run_data_records(run: Path) -> list[dict]:
    """The data records (``config.json['data']``) of a run directory; [] when it has none."""
    import json

    try:
        records = json.loads((run / "config.json").read_text(encoding="utf-8")).get("data") or []
    except (OSError, ValueError):
        return []
    return [r for r in records if isinstance(r, dict)]


def run_data_notes(run: Path) -> list[str]:
    """Every note of a run's data records (reduced sizes and the like), each once."""
    return list(dict.fromkeys(note for r in run_data_records(run) for note in r.get("notes", ())))


def data_used_section(results) -> list[str]:
    """REPORT.md's table of which data stood for which dataset across the sweep, and why."""
    rows = {}
    for _, _, runs in results:
        for run in runs:
            for r in run_data_records(run):
                if "requested" not in r:
                    continue
                key = (f"{r['requested']}/{r['requested_split']}", f"{r.get('dataset')}/{r.get('split')}",
                       r.get("source", ""))
                rows.setdefault(key, r.get("reason", ""))
    if not rows:
        return []
    lines = ["## Data used", "", "| asked for | used | source | why |", "|---|---|---|---|"]
    lines += [f"| {asked} | {used} | {source} | {reason or '-'} |" for (asked, used, source), reason in sorted(rows.items())]
    lines += ["", "Where a preset asked for more examples than these data hold, the run used what exists; "
                  "each experiment's *Data notes* below say so.", ""]
    return lines
