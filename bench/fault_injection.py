#!/usr/bin/env python
"""Hundreds of ``kill -9``: every long job of tfbdl killed N times, rerun, compared with an unbroken run.

    python bench/fault_injection.py [--kills 50] [--kills-for "JOB=N" ...] [--job JOB ...]
                                    [--workers 1] [--seed 0] [--out TABLE.md] [--workdir DIR] [--keep]

For each job of tests/fault_injection.py it runs the job once uninterrupted, then kills reruns
with SIGKILL ``--kills`` times (a third inside writes: atomic file writes and block-store tasks;
the rest at random instants of the uninterrupted run's duration), rerunning until each run
completes and starting over in a fresh folder while kills remain, and compares every completed
run's results with the uninterrupted one (arrays bitwise; JSON / CSV / Markdown but for
wall-clock seconds and timestamps). It prints the table

    job | kills survived | completed | files compared | results lost or corrupted

(completed: the reruns that ended; lost or corrupted: the reruns that failed or differ, and the
differences) and writes it as Markdown to ``--out``; every difference, with the kills that led
to it, follows the table. Exit status 1 when any job lost or corrupted a result. Run from the
repository root; ``TFBDL_DATA_DIR`` is passed on to the jobs.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from tests.cli.fault_injection import JOBS, JobFailed, inject  # noqa: E402

HEADER = ("job", "kills survived", "completed", "files compared", "results lost or corrupted")


def table(records: list[dict]) -> str:
    """The Markdown table of the records (one row per job, then the totals)."""
    lines = ["| " + " | ".join(HEADER) + " |", "|---|---:|---|---:|---|"]
    for r in records + [_total(records)]:
        kinds = ", ".join(f"{n} {k}" for k, n in r["kinds"].items() if n)
        completed = _count(r["runs"], "run") + ("" if r["completed"] else f", {r['failed']} failed")
        lost = "0"
        if r["bad_runs"]:
            lost = f"{_count(r['bad_runs'], 'run')} ({_count(len(r['mismatches']), 'difference')})"
        lines.append(f"| {r['job']} | {r['kills']} ({kinds or 'none'}) | {completed} | {r['files_compared']} | "
                     f"{lost} |")
    return "\n".join(lines) + "\n"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _total(records: list[dict]) -> dict:
    kinds: dict[str, int] = {}
    for r in records:
        for k, n in r["kinds"].items():
            kinds[k] = kinds.get(k, 0) + n
    return {"job": "**all**", "kills": sum(r["kills"] for r in records), "kinds": kinds,
            "runs": sum(r["runs"] for r in records), "completed": all(r["completed"] for r in records),
            "failed": sum(r["failed"] for r in records), "files_compared": sum(r["files_compared"] for r in records),
            "bad_runs": sum(r["bad_runs"] for r in records),
            "mismatches": [m for r in records for m in r["mismatches"]]}


def _run(job, args, kills: int, workdir: pathlib.Path, say) -> dict:
    """One job's record (a failing uninterrupted run is a record too)."""
    try:
        record = inject(job, workdir / job.name.replace(" ", "_"), kills=kills, write_share=args.write_share,
                        seed=args.seed, say=say, keep=args.keep)
    except JobFailed as error:
        record = {"job": job.name, "kills": 0, "completed": False, "files_compared": 0, "runs": 0, "failed": 1,
                  "bad_runs": 1, "kinds": {}, "history": {}, "mismatches": [f"uninterrupted run failed: {error}"]}
    print(f"{job.name}: {record['kills']} kills, {record['runs']} completed runs, {record['files_compared']} "
          f"files compared, {len(record['mismatches'])} differences ({record.get('seconds', 0):.0f} s)", flush=True)
    return record


def _kills_for(values: list[str], names: list[str]) -> dict[str, int]:
    out = {}
    for value in values:
        name, _, n = value.rpartition("=")
        if name not in names or not n.isdigit():
            raise SystemExit(f"--kills-for wants JOB=N with JOB one of {names}, got {value!r}")
        out[name] = int(n)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    names = [j.name for j in JOBS]
    parser.add_argument("--kills", type=int, default=50, help="Kills per job (default 50).")
    parser.add_argument("--kills-for", action="append", default=[], metavar="JOB=N",
                        help="Kills for one job instead of --kills (repeat; e.g. 'bdl multiswag=5').")
    parser.add_argument("--job", action="append", choices=names, help="Only this job (repeat; default: all).")
    parser.add_argument("--workers", type=int, default=1, help="Jobs run side by side (default 1).")
    parser.add_argument("--write-share", type=float, default=1 / 3, help="Share of the kills inside writes.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the kill instants.")
    parser.add_argument("--out", type=pathlib.Path, help="Write the Markdown table here.")
    parser.add_argument("--workdir", type=pathlib.Path, help="Where the runs go (default: a temp folder).")
    parser.add_argument("--keep", action="store_true", help="Keep the run folders even without differences.")
    parser.add_argument("--quiet", action="store_true", help="Do not print every start.")
    args = parser.parse_args(argv)

    jobs = [j for j in JOBS if not args.job or j.name in args.job]
    kills = {j.name: args.kills for j in jobs} | _kills_for(args.kills_for, names)
    workdir = args.workdir or pathlib.Path(tempfile.mkdtemp(prefix="tfbdl-fault-injection-"))
    say = (lambda text: None) if args.quiet else (lambda text: print(text, flush=True))
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.workers)) as pool:
        futures = [pool.submit(_run, job, args, kills[job.name], workdir, say) for job in jobs]
        records = [f.result() for f in futures]

    text = table(records)
    details = []
    for r in records:
        for m in r["mismatches"]:
            folder = m.split("/", 1)[0].split(":", 1)[0]
            starts = "; ".join(r["history"].get(folder, []))
            details.append(f"- {r['job']}: {m}" + (f"\n  (starts in {folder}: {starts})" if starts else ""))
    if details:
        text += "\nResults lost or corrupted:\n\n" + "\n".join(details) + "\n"
    text += f"\n{time.monotonic() - started:.0f} s in all; seed {args.seed}; runs under {workdir}.\n"
    print()
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    return 1 if details else 0


if __name__ == "__main__":
    sys.exit(main())
