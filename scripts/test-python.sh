#!/usr/bin/env bash
# Drives real Mesos client libraries from PyPI (pymesos, mesoshttp) against `tessera up`.
# Usage: bash scripts/test-python.sh [extra pytest args]
# Installs the virtualenv (scripts/python-env.sh), builds the binary, runs tests/python.
set -euo pipefail
cd "$(dirname "$0")/.."

start=$(date +%s)
bash scripts/python-env.sh
echo "test-python.sh: cargo build -p tessera"
cargo build -p tessera

set +e
.venv/bin/pytest -q -rs -p no:cacheprovider tests/python "$@"
rc=$?
set -e
if [ "$rc" -eq 0 ]; then
  echo "test-python.sh: real-client tests PASSED in $(( $(date +%s) - start ))s"
else
  echo "test-python.sh: real-client tests FAILED (pytest exit code $rc) in $(( $(date +%s) - start ))s"
fi
exit "$rc"
