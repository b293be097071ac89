#!/usr/bin/env bash
# Installs what the tests need (when missing) and runs every test of the workspace.
# Usage: bash scripts/test.sh [extra nextest args]
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(gcc)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
# A static busybox is the rootfs of the tiny image the Docker containerizer tests import.
[ -x /bin/busybox ] || need_apt+=(busybox-static)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "test.sh: installing Debian packages: ${need_apt[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "test.sh: cargo-nextest not found; installing it from crates.io"
  cargo install --locked cargo-nextest
fi

# One shared target directory for every crate (set CARGO_TARGET_DIR to move it).
cargo nextest run --workspace --no-fail-fast "$@"

# Real Mesos client libraries (pymesos, mesoshttp) against `tessera up`.
bash scripts/test-python.sh
