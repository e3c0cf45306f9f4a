#!/usr/bin/env bash
# Run the test suite: creates .venv if needed, installs tfbdl with its test extras, runs pytest.
# Extra arguments go to pytest (e.g. ./run_tests.sh -k metrics -x).
# TFBDL_DATA_DIR names the dataset folder; with TFBDL_REQUIRE_DATA=1 tests needing it fail
# instead of skipping when it is absent.
# The tests run in parallel worker processes (pytest-xdist), one per CPU core up to 4;
# TFBDL_TEST_WORKERS=N sets the number (1 runs them in this process), as does passing -n yourself.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/ensure_venv.sh
workers="${TFBDL_TEST_WORKERS:-$(python -c 'import os; print(min(4, len(os.sched_getaffinity(0))))')}"
parallel=()
case " $* " in
  *" -n "*|*" -n="*|*" --numprocesses"*) ;;
  *) if [ "$workers" -gt 1 ]; then parallel=(-n "$workers" --dist worksteal); fi ;;
esac
set +e
python -m pytest "${parallel[@]}" "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "run_tests.sh: pytest collected no tests; that counts as a failure" >&2
  exit 1
fi
exit "$status"
