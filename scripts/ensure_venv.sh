# Sourced by run_tests.sh and run_all.sh: make .venv (or $TFBDL_VENV) if needed and install
# tfbdl with its test extras under constraints.txt. Reinstalls only when the packaging files change.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${TFBDL_VENV:-$repo_root/.venv}"
python="${PYTHON:-python3}"

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "tfbdl needs Python >= 3.10; '$python' is $("$python" --version 2>&1). Set PYTHON=/path/to/python3.x" >&2
  exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "creating virtual environment $venv" >&2
  "$python" -m venv "$venv"
fi
stamp="$(cat "$repo_root/setup.cfg" "$repo_root/pyproject.toml" "$repo_root/constraints.txt" | "$venv/bin/python" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
if [ "$(cat "$venv/.tfbdl-install-stamp" 2>/dev/null)" != "$stamp" ]; then
  echo "installing tfbdl and its dependencies into $venv (constraints.txt)" >&2
  "$venv/bin/python" -m pip install --quiet --upgrade "pip>=23" "setuptools>=64" wheel
  "$venv/bin/python" -m pip install --quiet -c "$repo_root/constraints.txt" -e "$repo_root[test]"
  echo "$stamp" > "$venv/.tfbdl-install-stamp"
fi
export PATH="$venv/bin:$PATH"
