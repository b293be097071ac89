#!/usr/bin/env bash
# Installs, when missing, the Debian packages the build and the tests need:
# a C compiler, Python (pymesos/mesoshttp tests), a static busybox (the Docker tests'
# image), MPICH and Open MPI with libclang (the `mpi` crate's bindings for the MPI
# examples, which `cargo clippy --all-targets` and the tests build).
set -euo pipefail

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(gcc)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
[ -x /bin/busybox ] || need_apt+=(busybox-static)
command -v mpichversion >/dev/null 2>&1 || need_apt+=(mpich libmpich-dev)
command -v ompi_info >/dev/null 2>&1 || need_apt+=(openmpi-bin libopenmpi-dev)
ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1 || need_apt+=(libclang-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install-test-deps: installing Debian packages: ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
