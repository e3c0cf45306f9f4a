"""Helpers every experiment command uses: opening its run directory and announcing it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

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


def seeded_subset(n_total: int, n_keep: int | None, seed: int) -> np.ndarray:
    """Sorted seeded random indices of ``n_keep`` of ``n_total`` items (all of them when None or larger)."""
    if n_keep is None or n_keep >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).permutation(n_total)[:n_keep])


def data_line(provenance: list[dict]) -> str:
    """``requested/split → used/split (source)`` for each data set read, and why any was replaced."""
    seen, parts = set(), []
    for p in provenance:
        text = f"{p['requested']}/{p['requested_split']} → {p['dataset']}/{p['split']} ({p['source']})"
        if text not in seen:
            seen.add(text)
            parts.append(text)
    reasons = sorted({p["reason"] for p in provenance if p["dataset"] != p["requested"] and p["reason"]})
    return "; ".join(parts) + (f" — {'; '.join(reasons)}" if reasons else "")
