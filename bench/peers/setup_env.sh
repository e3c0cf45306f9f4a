#!/usr/bin/env bash
# Create (or reuse) the side virtual environment that runs neural-tangents for compare_peers.py.
#
#   bash bench/peers/setup_env.sh [VENV]     (default: $TFBDL_PEERS_VENV or ~/.cache/tfbdl-peers/venv)
#
# neural-tangents 0.6.5 needs jax 0.4.x (newer jax removed APIs it imports) and imports TensorFlow
# and tf2jax at import time, so it cannot share the project's environment. The pins are in
# requirements-peers.txt beside this script. The venv must lie outside the repository and must not
# be the environment of the interpreter named by $PROJECT_PYTHON (the project's own Python): this
# script refuses both. $PEERS_PYTHON chooses the interpreter the venv is made from (default python3).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${1:-${TFBDL_PEERS_VENV:-$HOME/.cache/tfbdl-peers/venv}}"
requirements="$here/requirements-peers.txt"
base_python="${PEERS_PYTHON:-python3}"

mkdir -p "$(dirname "$venv")"
target="$(cd "$(dirname "$venv")" && pwd)/$(basename "$venv")"
case "$target/" in
  "$repo"/*) echo "setup_env.sh: refusing to create the peers venv inside the repository ($target)" >&2; exit 2 ;;
esac
if [ -n "${PROJECT_PYTHON:-}" ]; then
  project_prefix="$("$PROJECT_PYTHON" -c 'import sys; print(sys.prefix)')"
  if [ -e "$target" ] && [ "$(cd "$target" && pwd -P)" = "$(cd "$project_prefix" && pwd -P)" ]; then
    echo "setup_env.sh: $target is the project's environment; choose another path" >&2; exit 2
  fi
fi

stamp="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [ -x "$target/bin/python" ] && [ "$(cat "$target/.peers-requirements" 2>/dev/null)" = "$stamp" ]; then
  echo "peers venv up to date: $target"
  exit 0
fi

echo "creating the peers venv in $target (a few minutes: TensorFlow, jaxlib)"
[ -x "$target/bin/python" ] || "$base_python" -m venv "$target"
"$target/bin/python" -m pip install --quiet --upgrade pip
"$target/bin/python" -m pip install --quiet -r "$requirements"
"$target/bin/python" -c "import neural_tangents, jax; print('neural-tangents', neural_tangents.__version__, 'jax', jax.__version__)"
echo "$stamp" > "$target/.peers-requirements"
