#!/usr/bin/env bash
# bench-mpi.sh [RUNS]
#
# Submit → every rank past MPI_Init, Tessera (`tessera mpi run`, PMI-1 direct launch on a
# `tessera up` with two agents) against `mpiexec.hydra` run directly on this machine, for
# 16 and 64 ranks, in one run (BENCHMARKS.md, "MPI: submit to MPI_Init").
#
# The program is the release `mpi_ring` example with RING_TIMESTAMPS=1: after MPI_Init and
# a barrier, rank 0 prints `initialized_unix_ms=…`. The figure is that time minus the
# wall clock just before the launching command started. Each (system, ranks) pair runs
# RUNS times (default 5), alternating systems; the median is reported.
#
# Tessera: `-n R --ppn R/2 --cpus-per-rank 0.02 --mem-per-rank 16M` (both agents, R/2
# ranks each). Hydra: `mpiexec.hydra -n R` (fork launcher, one host).
#
# Output: `system=… ranks=… run=… init_ms=…` per run, then `median system=… ranks=…
# init_ms=…` and `ratio ranks=… tessera_over_hydra=…`.
# Environment: TESSERA_BIN [target/release/tessera], RING_BIN
# [target/release/examples/mpi_ring], KEEP_WORK=1 keeps the temp dir.
set -uo pipefail
RUNS=${1:-5}
REPO=$(cd "$(dirname "$0")/.." && pwd)
TESSERA=${TESSERA_BIN:-$REPO/target/release/tessera}
RING=${RING_BIN:-$REPO/target/release/examples/mpi_ring}
say() { echo "[bench-mpi] $*" >&2; }
die() { say "error: $*"; exit 2; }
[ -x "$TESSERA" ] || die "$TESSERA not found; cargo build --release --bin tessera"
[ -x "$RING" ] || die "$RING not found; cargo build --release --example mpi_ring"
command -v mpiexec.hydra >/dev/null || die "mpiexec.hydra not found; apt-get install mpich"

WORK=$(mktemp -d /tmp/bench-mpi.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
MASTER=127.0.0.1:$PORT
"$TESSERA" up --listen "$MASTER" --agents 2 --no-batch --work-dir "$WORK/up" >"$WORK/up.log" 2>&1 &
UP=$!
cleanup() {
  kill "$UP" 2>/dev/null; wait "$UP" 2>/dev/null
  [ "${KEEP_WORK:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  curl -sf "http://$MASTER/health" >/dev/null 2>&1 && break
  sleep 0.1
done
sleep 1

ms() { date +%s%3N; }
init_of() { grep -o 'initialized_unix_ms=[0-9]*' "$1" | head -1 | cut -d= -f2; }

run_tessera() { # ranks
  local r=$1 t0 t
  t0=$(ms)
  "$TESSERA" mpi run --master "$MASTER" -q -n "$r" --ppn $((r / 2)) --cpus-per-rank 0.02 \
    --mem-per-rank 16M --env RING_TIMESTAMPS=1 "$RING" >"$WORK/out" 2>"$WORK/err" || {
    say "tessera run failed: $(tail -3 "$WORK/err")"; echo fail; return; }
  t=$(init_of "$WORK/out"); echo $((t - t0))
}
run_hydra() { # ranks
  local r=$1 t0 t
  t0=$(ms)
  RING_TIMESTAMPS=1 mpiexec.hydra -n "$r" "$RING" >"$WORK/out" 2>"$WORK/err" || {
    say "hydra run failed: $(tail -3 "$WORK/err")"; echo fail; return; }
  t=$(init_of "$WORK/out"); echo $((t - t0))
}
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

for r in 16 64; do
  : >"$WORK/t.$r"; : >"$WORK/h.$r"
  for i in $(seq 1 "$RUNS"); do
    t=$(run_tessera "$r"); echo "system=tessera ranks=$r run=$i init_ms=$t"
    [ "$t" = fail ] || echo "$t" >>"$WORK/t.$r"
    h=$(run_hydra "$r"); echo "system=hydra ranks=$r run=$i init_ms=$h"
    [ "$h" = fail ] || echo "$h" >>"$WORK/h.$r"
  done
  mt=$(median <"$WORK/t.$r"); mh=$(median <"$WORK/h.$r")
  echo "median system=tessera ranks=$r init_ms=$mt"
  echo "median system=hydra ranks=$r init_ms=$mh"
  echo "ratio ranks=$r tessera_over_hydra=$(awk "BEGIN {printf \"%.2f\", $mt / $mh}")"
done
