#!/usr/bin/env bash
# Stop the Slurm that scripts/slurm/start.sh started under $SLURM_ROOT: cancel its jobs,
# then slurmd, slurmctld and munged, each by its pid file only (TERM, KILL after 10 s).
# Removes $SLURM_ROOT afterwards unless KEEP_STATE=1.
set -uo pipefail

SLURM_ROOT=${SLURM_ROOT:-${TMPDIR:-/tmp}/tessera-slurm}
RUN=$SLURM_ROOT/run
say() { echo "[slurm/stop] $*" >&2; }

stop_by_pidfile() { # NAME PIDFILE
  local name=$1 file=$2 pid
  [ -s "$file" ] || return 0
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    say "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      say "$name (pid $pid) still running after 10 s; SIGKILL"
      kill -KILL "$pid" 2>/dev/null
    fi
  fi
  rm -f "$file"
}

if [ -f "$SLURM_ROOT/etc/slurm.conf" ] && [ -s "$RUN/slurmctld.pid" ] \
  && kill -0 "$(cat "$RUN/slurmctld.pid")" 2>/dev/null; then
  SLURM_CONF=$SLURM_ROOT/etc/slurm.conf timeout 10 scancel --quiet -p batch >/dev/null 2>&1 || true
fi
stop_by_pidfile slurmd "$RUN/slurmd.pid"
stop_by_pidfile slurmctld "$RUN/slurmctld.pid"
stop_by_pidfile munged "$RUN/munged.pid"

if [ "${KEEP_STATE:-0}" != 1 ] && [ -d "$SLURM_ROOT/run" ]; then
  # Only a directory that looks like ours (it has run/ and etc/) is removed.
  [ -d "$SLURM_ROOT/etc" ] && rm -rf "$SLURM_ROOT"
fi
say "stopped"
