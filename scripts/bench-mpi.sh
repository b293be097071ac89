#!/usr/bin/env bash
# bench-mpi.sh [RUNS]
#
# Submit → every rank past MPI_Init, Tessera (`tessera mpi run`, PMI-1 direct launch on a
# `tessera up` with two agents) against `mpiexec.hydra` run directly on this machine, for
# 16 and 64 ranks, in one run (BENCHMARKS.md, "MPI: submit to MPI_Init").
#
# The program is the release `mpi_ring` example with RING_TIMESTAMPS=1: after MPI_Init and
# a barrier, rank 0 prints `initialized_unix_ms=…` (and `started_unix_ms=FIRST..LAST`, when
# the rank processes started). The figure is that time minus the wall clock just before
# the launching command started. Each (system, ranks) pair runs RUNS times (default 5),
# alternating systems; the median is reported.
#
# Tessera: `-n R --ppn R/2 --cpus-per-rank C --mem-per-rank 16M` (both agents, R/2 ranks
# each). C defaults to each agent's cpus / (R/2), rounded down to a thousandth: the gang
# holds all of both agents' cpus, i.e. the two cores Hydra's ranks share. (The agent
# enforces `cpus` as a hard CFS quota; the first figures used C=0.02, a cap of 2% of a core
# per rank. CPUS_PER_RANK=0.02 measures that again.)
# Hydra: `mpiexec.hydra -n R` (fork launcher, one host), twice per round: as is, and
# inside a cpu cgroup of default weight beside the agents' `tessera` task cgroup, so its
# ranks compete with whatever else runs on the machine as Tessera's ranks do (all of a
# cgroup's tasks weigh one process; cgroup v1 only, skipped elsewhere).
#
# Output: `system=… ranks=… run=… init_ms=… started=+A..+B load=L` per run, then
# `median system=… ranks=… init_ms=…` and `ratio ranks=… tessera_over_hydra=…` (and
# `tessera_over_hydra_cgroup=…`).
# Environment: TESSERA_BIN [target/release/tessera], RING_BIN
# [target/release/examples/mpi_ring], CPUS_PER_RANK, KEEP_WORK=1 keeps the temp dir.
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
# The Hydra cgroup: a sibling of the agents' `tessera` cgroup (under this script's own).
CG=
own=$(awk -F: '$2 == "cpu" || $2 ~ /(^|,)cpu(,|$)/ {print $3; exit}' /proc/self/cgroup)
if [ -d /sys/fs/cgroup/cpu ] && [ -n "$own" ]; then
  CG=/sys/fs/cgroup/cpu${own%/}/bench-mpi-hydra-$$
  mkdir "$CG" 2>/dev/null || CG=
fi
[ -n "$CG" ] || say "no cgroup v1 cpu controller here: Hydra runs only as is"
cleanup() {
  kill "$UP" 2>/dev/null; wait "$UP" 2>/dev/null
  [ -n "$CG" ] && rmdir "$CG" 2>/dev/null
  [ "${KEEP_WORK:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  curl -sf "http://$MASTER/health" >/dev/null 2>&1 && break
  sleep 0.1
done
sleep 1
AGENT_CPUS=$(curl -sf "http://$MASTER/master/slaves" |
  python3 -c 'import json,sys; print(min(s["resources"]["cpus"] for s in json.load(sys.stdin)["slaves"]))')

ms() { date +%s%3N; }
init_of() { grep -o 'initialized_unix_ms=[0-9]*' "$1" | head -1 | cut -d= -f2; }
started_of() { # file t0 -> +A..+B
  local s
  s=$(grep -o 'started_unix_ms=[0-9]*\.\.[0-9]*' "$1" | head -1 | cut -d= -f2)
  [ -n "$s" ] && echo "+$((${s%..*} - $2))..+$((${s#*..} - $2))"
}
load() { cut -d' ' -f1 /proc/loadavg; }
report() { # system ranks run t0 file
  local t
  t=$(init_of "$5")
  if [ -z "$t" ]; then echo "system=$1 ranks=$2 run=$3 init_ms=fail"; return; fi
  echo "system=$1 ranks=$2 run=$3 init_ms=$((t - $4)) started=$(started_of "$5" "$4") load=$(load)"
  echo $((t - $4)) >>"$WORK/$1.$2"
}

run_tessera() { # ranks run
  local r=$1 t0 cpr
  cpr=${CPUS_PER_RANK:-$(awk "BEGIN {printf \"%.3f\", int(1000 * $AGENT_CPUS / ($r / 2)) / 1000}")}
  t0=$(ms)
  "$TESSERA" mpi run --master "$MASTER" -q -n "$r" --ppn $((r / 2)) --cpus-per-rank "$cpr" \
    --mem-per-rank 16M --env RING_TIMESTAMPS=1 "$RING" </dev/null >"$WORK/out" 2>"$WORK/err" ||
    say "tessera run failed: $(tail -3 "$WORK/err")"
  report tessera "$r" "$2" "$t0" "$WORK/out"
}
run_hydra() { # system ranks run
  local r=$2 t0
  t0=$(ms)
  if [ "$1" = hydra-cgroup ]; then
    RING_TIMESTAMPS=1 sh -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' sh "$CG" \
      mpiexec.hydra -n "$r" "$RING" >"$WORK/out" 2>"$WORK/err"
  else
    RING_TIMESTAMPS=1 mpiexec.hydra -n "$r" "$RING" >"$WORK/out" 2>"$WORK/err"
  fi || say "$1 run failed: $(tail -3 "$WORK/err")"
  report "$1" "$r" "$3" "$t0" "$WORK/out"
}
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

say "agents have $AGENT_CPUS cpus each; cpus per rank: ${CPUS_PER_RANK:-all of them}"
for r in 16 64; do
  for i in $(seq 1 "$RUNS"); do
    run_tessera "$r" "$i"
    run_hydra hydra "$r" "$i"
    [ -n "$CG" ] && run_hydra hydra-cgroup "$r" "$i"
  done
  for s in tessera hydra hydra-cgroup; do
    [ -s "$WORK/$s.$r" ] && echo "median system=$s ranks=$r init_ms=$(median <"$WORK/$s.$r")"
  done
  mt=$(median <"$WORK/tessera.$r"); mh=$(median <"$WORK/hydra.$r")
  line="ratio ranks=$r tessera_over_hydra=$(awk "BEGIN {printf \"%.2f\", $mt / $mh}")"
  if [ -s "$WORK/hydra-cgroup.$r" ]; then
    mc=$(median <"$WORK/hydra-cgroup.$r")
    line="$line tessera_over_hydra_cgroup=$(awk "BEGIN {printf \"%.2f\", $mt / $mc}")"
  fi
  echo "$line"
done
