#!/usr/bin/env bash
# Installs what the tests need (when missing) and runs every test of the workspace.
# Usage: bash scripts/test.sh [extra nextest args]
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "test.sh: cargo-nextest not found; installing it from crates.io"
  cargo install --locked cargo-nextest
fi

# The Open MPI build of the mpi_ring example (`tessera mpi run --impl openmpi` tests): its
# own target directory, since mpi-sys does not rebuild when MPICC changes.
MPICC=mpicc.openmpi cargo build --quiet --manifest-path tests/openmpi-ring/Cargo.toml \
  --target-dir "${CARGO_TARGET_DIR:-target}/openmpi"

# One shared target directory for every crate (set CARGO_TARGET_DIR to move it).
cargo nextest run --workspace --no-fail-fast "$@"

# Real Mesos client libraries (pymesos, mesoshttp) against `tessera up`.
bash scripts/test-python.sh
