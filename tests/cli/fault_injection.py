"""Fault injection: kill a tfbdl job with SIGKILL at any instant, rerun it, compare with an unbroken run.

Every long command of tfbdl promises that it can be killed at any time and that rerunning the same
command resumes it and ends with the same results. A :class:`Job` is a CLI argument list, the
result files it writes (glob patterns relative to its ``--out`` folder) and the fields of them
that legitimately differ between two runs (:class:`Volatile`: wall-clock seconds, timestamps).
:func:`inject` checks the promise:

1. it runs the job once, uninterrupted, into ``WORKDIR/A`` (``python -m tfbdl.cli ARGS --out A``
   from the repository root, with ``TFBDL_OFFLINE=1``, ``MPLBACKEND=Agg``,
   ``TF_CPP_MIN_LOG_LEVEL=3`` and the caller's environment, ``TFBDL_DATA_DIR`` included);
2. into a fresh ``WORKDIR/B<k>`` it starts the same command again and again and kills it (its
   whole process group) with SIGKILL: at instants drawn uniformly over the uninterrupted run's
   duration (seeded), and inside writes through the hooks ``TFBDL_KILL_AT_WRITE=n``
   (:mod:`tfbdl.io.atomic`: between the fsync of a temp file and its rename) and
   ``TFBDL_BLOCK_STORE_CRASH_AFTER=n`` (:mod:`tfbdl.io.blocks`: after a task's values are
   written, before its done mark), until a run completes (exit 0); while planned kills remain it
   starts over in a new folder;
3. it compares each completed ``B<k>`` with ``A`` (:mod:`tests.result_diff`): arrays bitwise
   (``.npy``, ``.npz``, HDF5 datasets and attributes, Keras weights), ``.json`` / ``.csv`` /
   ``.md`` after removing the volatile fields, any other file byte for byte.

Used by ``tests/test_fault_injection.py`` (a few kills per job) and ``bench/fault_injection.py``
(hundreds). A run that exits with an error after a kill, a result file missing or extra, or a
value that differs is a mismatch, named by file and place.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import time
from typing import Any, Callable, Sequence

import h5py

from tests.cli.result_diff import Volatile, diff_trees, resolve
from tfbdl.io.atomic import KILL_AT_WRITE_ENV
from tfbdl.io.blocks import CRASH_AFTER_ENV, TASK_DONE

__all__ = [
    "BLOCK",
    "COMMON",
    "JOBS",
    "Job",
    "JobFailed",
    "Outcome",
    "REPO",
    "TIME",
    "Volatile",
    "WRITE",
    "compare_runs",
    "inject",
    "job_env",
    "run_once",
]

#: The repository root (the folder above tests/): the jobs run there, so its tfbdl is imported.
REPO = pathlib.Path(__file__).resolve().parents[2]

#: Kinds of kill: at a random instant, inside an atomic write, inside a block-store task.
TIME, WRITE, BLOCK = "time", "write", "block"


#: What differs between any two runs of a command: when config.json was created and at which
#: commit, when the run was marked complete, when a Keras archive was saved, the names Keras gives
#: optimizer variables in checkpoints (``adam_8/...``: numbered by the optimizers made before in the
#: same process), memory addresses in the ``repr`` of a function.
COMMON = Volatile(json_keys=("created", "git", "__complete__.finished", "date_saved", "optimizer_variables.*.0"),
                  text=(r" at 0x[0-9a-fA-F]+",))


@dataclasses.dataclass(frozen=True)
class Job:
    """One long command: ``python -m tfbdl.cli *args --out OUT``.

    ``results``: glob patterns of its result files relative to OUT (each must match in the
    uninterrupted run); ``volatile``: fields that differ between runs (added to :data:`COMMON`).
    """

    name: str
    args: tuple[str, ...]
    results: tuple[str, ...]
    volatile: Volatile = Volatile()

    @property
    def rules(self) -> Volatile:
        """:data:`COMMON` plus the job's own volatile fields."""
        return COMMON + self.volatile


class JobFailed(RuntimeError):
    """The uninterrupted run of a job failed (the job, not its resumption, is broken)."""


# --------------------------------------------------------------------------- the jobs

_SECONDS = Volatile(json_keys=("*seconds*", "*elapsed*", "*time_s", "*wall*"),
                    csv_columns=("*seconds*", "*elapsed*"),
                    text=(r"\d+(\.\d+)?\s*(s|sec|seconds)\b", r"\d+m\d+s"))


def _results(experiment: str, *suffixes: str) -> tuple[str, ...]:
    """Every file ending with one of ``suffixes`` under ``experiment/<run-id>/``, at any depth."""
    return tuple(f"{experiment}/*/**/*.{suffix}" for suffix in suffixes)


#: The long jobs at the smallest sizes that still resume (several tasks, epochs, members...),
#: the longest first (so that jobs run side by side end together).
JOBS: tuple[Job, ...] = (
    # Ensemble members, each a resumable training run, then the corrupted test sets.
    Job("bdl multiswag",
        ("bdl", "multiswag", "--scale", "tiny", "--models", "2", "--n-corrupt", "1"),
        _results("bdl-multiswag", "npz", "json", "csv", "md"), _SECONDS),
    # Every DWP stage in one run directory (the stages read each other's outputs): source nets,
    # kernel bank, kernel VAEs, BNNs, DWP initialisation.
    Job("dwp run",
        ("dwp", "run", "--scale", "tiny", "--nets", "1", "--vae-epochs", "1", "--prior", "normal", "--sizes", "10",
         "--splits", "1", "--bnn-epochs", "1"),
        _results("dwp", "h5", "npz", "json", "csv", "md"), _SECONDS),
    # Variants trained one after the other (a fixed micro-batch: the estimate depends on free memory).
    Job("feature-amounts sweep",
        ("feature-amounts", "sweep", "--scale", "tiny", "--variants", "2", "--epochs", "1", "--n-train", "64",
         "--n-val", "32", "--micro-batch", "64"),
        _results("feature-amounts", "json", "csv", "md"), _SECONDS),
    # Kernel blocks in a block store (8 tasks): Kxx (upper triangle), Kxt, the diagonals.
    Job("convnet-gp save-kernels",
        ("convnet-gp", "save-kernels", "--scale", "tiny", "--n-train", "16", "--n-test", "8", "--block", "8"),
        _results("convnet-gp", "h5", "npz", "json"), _SECONDS),
    # Trainer epochs with checkpoints; a SWAG snapshot after epoch 2, whose state is checkpointed.
    Job("bdl swag",
        ("bdl", "swag", "--scale", "tiny", "--epochs", "2", "--swa-start", "1", "--max-rank", "2", "--samples", "1",
         "--val-size", "0"),
        _results("bdl-swag", "npz", "json", "csv", "md"), _SECONDS),
    # Empirical NTK blocks in a block store, then the eigendecomposition.
    Job("linearized compute-ntk",
        ("linearized", "compute-ntk", "--scale", "tiny", "--n-train", "16", "--n-test", "8", "--block-size", "8"),
        _results("linearized-compute-ntk", "h5", "npz", "json", "md"), _SECONDS),
    # The CIFAR-10-C corruptions of a few test images (offline: a stand-in data set), one file each.
    Job("bdl make-cifar-c",
        ("bdl", "make-cifar-c", "--scale", "tiny", "--n-images", "4"),
        _results("bdl-cifar-c", "npz", "json", "md"), _SECONDS),
)


# --------------------------------------------------------------------------- running a job

def job_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without the kill hooks, offline, Agg plots, quiet TensorFlow, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in (KILL_AT_WRITE_ENV, CRASH_AFTER_ENV)}
    env.update(TFBDL_OFFLINE="1", MPLBACKEND="Agg", TF_CPP_MIN_LOG_LEVEL="3")
    env.update(extra or {})
    return env


def _exited(proc: subprocess.Popen) -> bool:
    """Whether ``proc`` has ended, leaving it unreaped (so its process group id stays its own)."""
    return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None


def _wait_then_kill(proc: subprocess.Popen, seconds: float) -> None:
    """Wait until ``proc`` ends or ``seconds`` pass, SIGKILL its whole process group (it and any
    children; the unreaped leader keeps the group id from being reused), then reap it."""
    deadline = time.monotonic() + seconds
    while not _exited(proc) and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How one start of a command ended: exit status (-9: SIGKILL), seconds, log file."""

    rc: int
    seconds: float
    log: pathlib.Path

    def tail(self, lines: int = 8) -> str:
        """The last lines of the command's output."""
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])


def run_once(job: Job, out: pathlib.Path, log: pathlib.Path, env_extra: dict[str, str] | None = None,
             kill_after: float | None = None, timeout: float = 3600.0) -> Outcome:
    """Start ``job`` writing into ``out``; SIGKILL its process group after ``kill_after`` seconds.

    Returns the exit status (negative: killed by that signal; a run that finished before the
    kill keeps its own status) and the seconds it ran. Output goes to ``log``.
    """
    command = [sys.executable, "-m", "tfbdl.cli", *job.args, "--out", str(out)]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as sink:
        start = time.monotonic()
        proc = subprocess.Popen(command, cwd=REPO, env=job_env(env_extra), stdout=sink, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        _wait_then_kill(proc, timeout if kill_after is None else min(kill_after, timeout))
        return Outcome(proc.returncode, time.monotonic() - start, log)


# --------------------------------------------------------------------------- comparing and counting

def compare_runs(job: Job, a_out: pathlib.Path, b_out: pathlib.Path) -> tuple[int, list[str]]:
    """Compare the result files of two ``--out`` folders of ``job``: (files compared, mismatches).

    Each mismatch is one line ``path: what differs``; a result file in one folder only is one too.
    """
    return diff_trees(a_out, b_out, job.results, job.rules)


def _temp_leftovers(out: pathlib.Path) -> list[str]:
    """Temp files of atomic writes left behind by kills (``.NAME.XXXX.tmp.SUFFIX``)."""
    return sorted(str(f.relative_to(out)) for f in out.rglob(".*.tmp*") if f.is_file())


def _store_tasks(out: pathlib.Path) -> int:
    """Tasks of the largest block store (an HDF5 file with ``task_done``) under ``out``; 0 if none."""
    most = 0
    for path in out.rglob("*.h5"):
        try:
            with h5py.File(path, "r") as f:
                if TASK_DONE in f:
                    most = max(most, int(f[TASK_DONE].shape[0]))
        except OSError:
            continue
    return most


# --------------------------------------------------------------------------- the kill loop

def _plan(kills: int, write_share: float, with_blocks: bool, at_writes: Sequence[int],
          rng: random.Random) -> list[tuple[str, int | None]]:
    """The planned kills as (kind, write or task number; None: drawn when the kill comes).

    First one inside each atomic write of ``at_writes``; then, shuffled, the rest of ``kills``:
    ``write_share`` of them inside writes (alternately block-store tasks and atomic writes when
    the job has a store, else atomic writes), the others at random instants.
    """
    fixed = [(WRITE, int(n)) for n in at_writes]
    rest = max(0, kills - len(fixed))
    n_inside = min(rest, max(0, round(kills * write_share) - len(fixed)))
    drawn = [(BLOCK if with_blocks and i % 2 == 0 else WRITE, None) for i in range(n_inside)]
    drawn += [(TIME, None)] * (rest - n_inside)
    rng.shuffle(drawn)
    return fixed + drawn


def _kill(kind: str | None, n: int | None, duration: float, highest: dict[str, int],
          rng: random.Random) -> tuple[dict[str, str], float | None, str, int | None]:
    """How to kill one start: (hook variables, seconds before a SIGKILL, description, number).

    ``n`` (a write or task number) is drawn from 1..``highest[kind]`` when None; a random instant
    from the uninterrupted run's ``duration``.
    """
    if kind == TIME:
        after = rng.uniform(0.0, duration)
        return {}, after, f"kill at {after:.1f} s", None
    if kind in (WRITE, BLOCK):
        n = rng.randint(1, max(1, highest[kind])) if n is None else n
        if kind == WRITE:
            return {KILL_AT_WRITE_ENV: str(n)}, None, f"kill at atomic write {n}", n
        return {CRASH_AFTER_ENV: str(n)}, None, f"kill at block-store task {n}", n
    return {}, None, "no kill", None


def inject(job: Job, workdir: pathlib.Path, kills: int = 3, write_share: float = 1 / 3, seed: int = 0,
           at_writes: Sequence[int] = (), say: Callable[[str], None] | None = None,
           keep: bool = False) -> dict[str, Any]:
    """Kill ``job`` ``kills`` times (SIGKILL) and compare every completed rerun with an unbroken run.

    ``write_share`` of the kills land inside writes, the others at random instants; the first
    ones inside the atomic writes numbered ``at_writes`` (counted from each start), the others
    at drawn writes or block-store tasks.

    Returns ``{job, kills, completed, files_compared, mismatches}`` plus ``kinds`` (kills by
    kind), ``runs`` (completed reruns, each compared), ``failed`` (reruns that exited with an
    error), ``bad_runs`` (reruns that failed or differ), ``starts``, ``history`` (per folder
    ``B<k>``, how each start ended: to reproduce a mismatch), ``seconds_uninterrupted``,
    ``leftover_temp_files`` and ``seconds``. ``completed`` is False when a rerun failed
    (``mismatches`` says how; the kills go on in a fresh folder). Raises JobFailed when the
    uninterrupted run fails. ``workdir`` is emptied first; with ``keep`` false the folders of
    runs without mismatches are removed.
    """
    say = say or (lambda text: None)
    started = time.monotonic()
    rng = random.Random(f"{seed}:{job.name}")
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    a_out = workdir / "A"
    first = run_once(job, a_out, workdir / "logs" / "A.log")
    if first.rc != 0:
        raise JobFailed(f"{job.name}: the uninterrupted run exited with {first.rc}:\n{first.tail()}")
    missing = [p for p, files in resolve(a_out, job.results).items() if not files]
    if missing:
        raise JobFailed(f"{job.name}: the uninterrupted run wrote nothing matching {missing}")
    duration = first.seconds
    # Upper bounds of the write / task numbers drawn for kills inside writes; a draw that did not
    # land (the run ended first) lowers them.
    n_files = sum(1 for f in a_out.rglob("*") if f.is_file())
    highest = {WRITE: max(2, 2 * n_files), BLOCK: _store_tasks(a_out)}
    plan = _plan(kills, write_share, highest[BLOCK] > 0, at_writes, rng)
    say(f"{job.name}: uninterrupted run {duration:.1f} s; plan {[kind for kind, _ in plan]}")

    record: dict[str, Any] = {"job": job.name, "kills": 0, "completed": True, "files_compared": 0,
                              "mismatches": [], "kinds": {TIME: 0, WRITE: 0, BLOCK: 0}, "runs": 0, "starts": 0,
                              "failed": 0, "bad_runs": 0, "history": {}, "seconds_uninterrupted": round(duration, 1),
                              "leftover_temp_files": 0}
    budget = 4 * kills + 10  # starts allowed before the plan is given up (kills that never land)
    episode = 0
    while episode == 0 or (plan and record["starts"] < budget):
        episode += 1
        out = workdir / f"B{episode}"
        history = record["history"][f"B{episode}"] = []
        while True:  # one episode: start, kill, restart... until a start completes
            kind, n = plan.pop(0) if plan and record["starts"] < budget else (None, None)
            drawn = n is None
            extra, kill_after, what, n = _kill(kind, n, duration, highest, rng)
            record["starts"] += 1
            outcome = run_once(job, out, workdir / "logs" / f"B{episode}-{record['starts']}.log", extra, kill_after,
                               timeout=max(600.0, 5 * duration))
            history.append(f"{what} -> exit {outcome.rc} after {outcome.seconds:.1f} s")
            say(f"{job.name}: B{episode} start {record['starts']}: {history[-1]}")
            if outcome.rc == -signal.SIGKILL and kind is not None:
                record["kills"] += 1
                record["kinds"][kind] += 1
                continue
            if kind is not None:  # the run ended before the kill: try it again in a fresh run
                if kind in (WRITE, BLOCK) and drawn:
                    highest[kind] = max(1, n - 1)
                plan.insert(0, (kind, None if kind == TIME or drawn else n))
            if outcome.rc != 0:  # the resumption is broken: say how, go on in a fresh folder
                record["completed"] = False
                record["failed"] += 1
                record["bad_runs"] += 1
                record["mismatches"].append(
                    f"B{episode}: start {len(history)} ({what}) exited with {outcome.rc} after "
                    f"{'; '.join(history[:-1]) or 'nothing'}; log {outcome.log}:\n{outcome.tail()}")
                break
            record["runs"] += 1
            compared, mismatches = compare_runs(job, a_out, out)
            record["files_compared"] += compared
            record["bad_runs"] += bool(mismatches)
            record["mismatches"] += [f"B{episode}/{m}" for m in mismatches]
            record["leftover_temp_files"] += len(_temp_leftovers(out))
            if not mismatches and not keep:
                shutil.rmtree(out, ignore_errors=True)
            break
    if not record["mismatches"] and not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    record["seconds"] = round(time.monotonic() - started, 1)
    return record
