#!/usr/bin/env bash
# Run the test suite: creates .venv if needed, installs tfbdl with its test extras, runs pytest.
# Extra arguments go to pytest (e.g. ./run_tests.sh -k metrics -x).
# TFBDL_DATA_DIR names the dataset folder; with TFBDL_REQUIRE_DATA=1 tests needing it fail
# instead of skipping when it is absent.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/ensure_venv.sh
set +e
python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "run_tests.sh: pytest collected no tests; that counts as a failure" >&2
  exit 1
fi
exit "$status"
