#!/usr/bin/env bash
# Reproduce every registered experiment: creates .venv if needed, installs tfbdl, then runs
#   tfbdl run-all --scale smoke --out runs   (options: --scale tiny|smoke|paper, --out DIR,
#                                              --data-dir DIR, --only NAME, --seed N, --no-resume)
# and writes OUT/REPORT.md. Rerunning the same command resumes where it stopped.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/ensure_venv.sh
exec tfbdl run-all "$@"
