"""Every long job of tfbdl survives ``kill -9`` at any instant.

Each job (tests/fault_injection.py: kernel blocks, NTK blocks, SWAG training, MultiSWAG members,
the feature-amounts sweep, the DWP pipeline, CIFAR-10-C) is killed with SIGKILL once at a random
instant and once inside a write (an atomic file write or a block-store task), rerun until it
completes, and its results must equal an uninterrupted run's: arrays bitwise, JSON / CSV /
Markdown but for wall-clock seconds and timestamps. The jobs run two at a time; the long version
with hundreds of kills is bench/fault_injection.py.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import pathlib
import subprocess
import sys
from typing import Any

import h5py
import numpy as np
import pytest

from tests.cli.fault_injection import JOBS, REPO, Job, Volatile, compare_runs, inject
from tfbdl.io.atomic import KILL_AT_WRITE_ENV

#: Kills per job: one at a random instant, one inside a write (about 3 minutes in all on 2 idle cores).
KILLS, WRITE_SHARE = 2, 1 / 2
#: Atomic writes where a kill is known to be dangerous (counted from a fresh start), killed in
#: instead of a drawn one: the first write of a run (its config.json), and the CSV row of the
#: first epoch of a Trainer, written after the epoch's checkpoint and before its progress mark.
AT_WRITES = {"bdl make-cifar-c": (1,), "feature-amounts sweep": (5,)}
_BY_NAME = {job.name: job for job in JOBS}


# --------------------------------------------------------------------------- the kill hook and the comparison

_WRITE_THREE = """
import pathlib, sys
from tfbdl.io.atomic import atomic_write_text
for i in range(3):
    atomic_write_text(pathlib.Path(sys.argv[1]) / f"f{i}.txt", str(i))
"""


def _write_three(folder: pathlib.Path, kill_at: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != KILL_AT_WRITE_ENV}
    if kill_at is not None:
        env[KILL_AT_WRITE_ENV] = kill_at
    return subprocess.run([sys.executable, "-c", _WRITE_THREE, str(folder)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_kill_hook_kills_between_the_fsync_and_the_rename_of_the_nth_write(tmp_path):
    done = _write_three(tmp_path, "2")
    assert done.returncode == -9, done.stderr
    assert (tmp_path / "f0.txt").read_text() == "0"
    assert not (tmp_path / "f1.txt").exists() and not (tmp_path / "f2.txt").exists()
    temps = list(tmp_path.glob(".f1.txt.*.tmp.txt"))
    assert len(temps) == 1 and temps[0].read_text() == "1"  # written in full, never renamed


def test_kill_hook_is_off_when_unset_and_refuses_a_non_number(tmp_path):
    assert _write_three(tmp_path, None).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f0.txt", "f1.txt", "f2.txt"]
    (tmp_path / "other").mkdir()
    refused = _write_three(tmp_path / "other", "soon")
    assert refused.returncode == 1 and f"{KILL_AT_WRITE_ENV} must be a whole number" in refused.stderr
    assert list((tmp_path / "other").iterdir()) == []  # nothing written, not even a temp file


def _run_folder(root: pathlib.Path, seconds: float, created: str) -> None:
    run = root / "exp" / "tiny-1234"
    run.mkdir(parents=True)
    with h5py.File(run / "store.h5", "w") as f:
        f["K"] = np.arange(12.0).reshape(3, 4)
        f["K"].attrs["n"] = 3
        f.attrs["meta"] = json.dumps({"source": str(run / "source")})  # the output folder reads as <out>
    np.savez(run / "data.npz", x=np.arange(5, dtype=np.float32), y=np.array([1, 2]))
    (run / "config.json").write_text(json.dumps({"created": created, "config": {"seed": 0}}))
    (run / "metrics.json").write_text(json.dumps({"epochs": [{"loss": 0.5, "seconds": seconds}], "nan": float("nan"),
                                                  "loss": f"<function loss at 0x{id(root):x}>"}))
    (run / "metrics.csv").write_text(f"epoch,loss,seconds\n1,0.5,{seconds}\n")
    (run / "summary.md").write_text(f"Trained in {seconds} s; loss 0.5.\n")
    (run / ".summary.md.abc.tmp.md").write_text("a leftover temp file is no result")


_JOB = Job("toy", ("toy",), ("exp/*/**/*.h5", "exp/*/**/*.npz", "exp/*/**/*.json", "exp/*/**/*.csv",
                             "exp/*/**/*.md", "exp/*/*.json"),
           Volatile(json_keys=("*seconds*",), csv_columns=("seconds",), text=(r"\d+(\.\d+)? s\b",)))


def test_compare_runs_ignores_only_the_volatile_fields(tmp_path):
    _run_folder(tmp_path / "A", 1.5, "2026-01-01")
    _run_folder(tmp_path / "B", 7.25, "2026-02-02")
    assert compare_runs(_JOB, tmp_path / "A", tmp_path / "B") == (6, [])


def test_compare_runs_names_each_difference(tmp_path):
    _run_folder(tmp_path / "A", 1.5, "2026-01-01")
    _run_folder(tmp_path / "B", 1.5, "2026-01-01")
    run = tmp_path / "B" / "exp" / "tiny-1234"
    with h5py.File(run / "store.h5", "r+") as f:
        k = f["K"][()]
        k.view(np.uint64)[1, 2] ^= np.uint64(1)  # one bit of one entry
        f["K"][...] = k
        f["K"].attrs["n"] = 4
    np.savez(run / "data.npz", x=np.arange(5, dtype=np.float64), y=np.array([1, 2]))
    (run / "config.json").write_text(json.dumps({"created": "2026-01-01", "config": {"seed": 1}}))
    (run / "metrics.csv").write_text("epoch,loss,seconds\n1,0.25,1.5\n")
    (run / "summary.md").unlink()
    compared, mismatches = compare_runs(_JOB, tmp_path / "A", tmp_path / "B")
    assert compared == 5
    text = "\n".join(mismatches)
    assert len(mismatches) == 6, text
    assert "store.h5: dataset K: 1 of 12 entries differ; first at (1, 2)" in text
    assert "store.h5: attribute K@n" in text
    assert "data.npz: array x: float32[5] vs float64[5]" in text
    assert "config.json: config.seed: 0 vs 1" in text
    assert "metrics.csv: line 2" in text
    assert "summary.md: only in the uninterrupted run" in text


# --------------------------------------------------------------------------- the jobs, killed

@pytest.fixture(scope="module")
def records(request, tmp_path_factory) -> dict[str, concurrent.futures.Future]:
    """One future record per selected job, all started at once on two workers."""
    selected = [item.callspec.params["name"] for item in request.session.items
                if getattr(item, "callspec", None) and item.originalname == "test_job_survives_kill_9"]
    root = tmp_path_factory.mktemp("fault_injection")
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1))
    futures = {name: pool.submit(inject, _BY_NAME[name], root / name.replace(" ", "_"), KILLS, WRITE_SHARE,
                                 at_writes=AT_WRITES.get(name, ()))
               for name in dict.fromkeys(selected)}
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(_BY_NAME))
def test_job_survives_kill_9(name: str, records: dict[str, concurrent.futures.Future]):
    record: dict[str, Any] = records[name].result()
    starts = "\n".join(f"{folder}: " + "; ".join(h) for folder, h in record["history"].items())
    assert record["mismatches"] == [], "\n".join(record["mismatches"]) + "\nstarts:\n" + starts
    assert record["completed"] and record["runs"] >= 1
    assert record["kills"] == KILLS, record
    assert record["files_compared"] > 0
