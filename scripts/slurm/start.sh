#!/usr/bin/env bash
# Start a private single-node Slurm 22.05 (munged + slurmctld + slurmd) on 127.0.0.1,
# tuned for many short jobs, as the reference peer for `tessera batch` benchmarks.
#
#   eval "export $(scripts/slurm/start.sh | tail -1)"     # sets SLURM_CONF for clients
#   scripts/slurm/stop.sh                                 # same SLURM_ROOT
#
# Everything (config, state, spool, logs, pid files, munge key and socket) lives under
# $SLURM_ROOT; nothing under /etc is written, and a system munged, if any, is not used.
# Running it again while the daemons are up only re-checks them. Needs root (slurmd runs
# jobs as their owner, and the packages may need installing).
#
# Environment (all optional):
#   SLURM_ROOT           state directory     [${TMPDIR:-/tmp}/tessera-slurm]
#   SLURM_CPUS           CPUs of the node    [nproc]
#   SLURM_OVERSUBSCRIBE  partition OverSubscribe [FORCE:64: 64 jobs per CPU; NO: 1 per CPU]
#   SLURM_SCHED_PARAMS   SchedulerParameters [the throughput set below]
#   SLURM_CTLD_PORT      first of 4 slurmctld ports [6817]
#   SLURM_SLURMD_PORT    slurmd port         [6821]
#   SLURM_NO_INSTALL=1   fail instead of running apt-get when something is missing
#
# Last stdout line: SLURM_CONF=<path>. Progress goes to stderr.
set -euo pipefail

SLURM_ROOT=${SLURM_ROOT:-${TMPDIR:-/tmp}/tessera-slurm}
CTLD_PORT=${SLURM_CTLD_PORT:-6817}
SLURMD_PORT=${SLURM_SLURMD_PORT:-6821}
CPUS=${SLURM_CPUS:-$(nproc)}
OVERSUB=${SLURM_OVERSUBSCRIBE:-FORCE:64}
# Throughput settings (Slurm's high-throughput advice, checked against slurm.conf(5) 22.05):
# defer scheduling out of the submit RPC and batch it; scan deep queues; let the scheduler
# yield to RPC bursts; backfill often and keep going after yielding.
SCHED=${SLURM_SCHED_PARAMS:-defer,batch_sched_delay=1,sched_min_interval=100000,default_queue_depth=1000,partition_job_depth=0,sched_max_job_start=0,max_rpc_cnt=150,bf_interval=5,bf_max_job_test=1000,bf_continue}
PACKAGES=(slurmctld slurmd slurm-client slurm-wlm-basic-plugins munge)

say() { echo "[slurm/start] $*" >&2; }
die() { say "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (slurmd must start jobs; apt-get may be needed)"

# ------------------------------------------------------------------ packages
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "${SLURM_NO_INSTALL:-0}" = 1 ] && die "missing packages ${missing[*]} and SLURM_NO_INSTALL=1"
  command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get"
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y --no-install-recommends "${missing[@]}" >"${TMPDIR:-/tmp}/slurm-apt.log" 2>&1; then
    apt-get update >>"${TMPDIR:-/tmp}/slurm-apt.log" 2>&1 || true
    apt-get install -y --no-install-recommends "${missing[@]}" >>"${TMPDIR:-/tmp}/slurm-apt.log" 2>&1 \
      || die "apt-get install ${missing[*]} failed; see ${TMPDIR:-/tmp}/slurm-apt.log"
  fi
fi
for b in munged munge unmunge slurmctld slurmd sbatch squeue sinfo scontrol scancel; do
  command -v "$b" >/dev/null || die "$b not found after installing ${PACKAGES[*]}"
done

NODE=$(hostname -s)
MEM_MB=$(awk '/^MemTotal:/ { m = int($2 / 1024) - 1024; if (m < 512) m = int($2 / 1024); print m }' /proc/meminfo)
mkdir -p "$SLURM_ROOT"/{etc,state,spool,log,run,munge}
chmod 755 "$SLURM_ROOT"
chmod 700 "$SLURM_ROOT/munge"
CONF=$SLURM_ROOT/etc/slurm.conf
SOCK=$SLURM_ROOT/munge/socket
RUN=$SLURM_ROOT/run
export SLURM_CONF=$CONF

running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# A port held by someone else would make a daemon fail later with a vaguer message.
port_taken() { ss -ltnH "sport = :$1" 2>/dev/null | grep -q .; }
if ! running "$RUN/slurmctld.pid"; then
  for p in $(seq "$CTLD_PORT" $((CTLD_PORT + 3))); do
    port_taken "$p" && die "port $p is in use (another Slurm?); set SLURM_CTLD_PORT"
  done
fi
if ! running "$RUN/slurmd.pid"; then
  port_taken "$SLURMD_PORT" && die "port $SLURMD_PORT is in use; set SLURM_SLURMD_PORT"
fi

# ------------------------------------------------------------------ munge (private)
if [ ! -s "$SLURM_ROOT/munge/key" ]; then
  head -c 1024 /dev/urandom >"$SLURM_ROOT/munge/key"
  chmod 400 "$SLURM_ROOT/munge/key"
fi
if ! running "$RUN/munged.pid"; then
  say "starting munged"
  rm -f "$SOCK" "$SOCK.lock"
  # --force: munged refuses root otherwise.
  munged --force --num-threads=10 --socket="$SOCK" --key-file="$SLURM_ROOT/munge/key" \
    --pid-file="$RUN/munged.pid" --log-file="$SLURM_ROOT/log/munged.log" \
    --seed-file="$SLURM_ROOT/munge/seed" || die "munged failed; see $SLURM_ROOT/log/munged.log"
fi
for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
munge -S "$SOCK" -n </dev/null | unmunge -S "$SOCK" >/dev/null 2>&1 \
  || die "munge credential round trip failed; see $SLURM_ROOT/log/munged.log"

# ------------------------------------------------------------------ slurm.conf
cat >"$CONF.tmp" <<EOF
# Written by scripts/slurm/start.sh: one node, no systemd, no cgroups, no accounting.
ClusterName=tessera-bench
SlurmctldHost=${NODE}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=${SOCK}
SlurmctldPort=${CTLD_PORT}-$((CTLD_PORT + 3))
SlurmdPort=${SLURMD_PORT}
StateSaveLocation=${SLURM_ROOT}/state
SlurmdSpoolDir=${SLURM_ROOT}/spool
SlurmctldPidFile=${RUN}/slurmctld.pid
SlurmdPidFile=${RUN}/slurmd.pid
SlurmctldLogFile=${SLURM_ROOT}/log/slurmctld.log
SlurmdLogFile=${SLURM_ROOT}/log/slurmd.log
SlurmctldDebug=error
SlurmdDebug=error
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerParameters=${SCHED}
MaxJobCount=200000
MaxArraySize=100001
MinJobAge=2
MessageTimeout=30
KillWait=5
InactiveLimit=0
Waittime=0
SlurmdParameters=config_overrides
NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${MEM_MB} State=UNKNOWN
PartitionName=batch Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP OverSubscribe=${OVERSUB}
EOF
mv "$CONF.tmp" "$CONF"
chmod 644 "$CONF"

# ------------------------------------------------------------------ daemons
# Both daemonise and write their pid files; -i: cold start, ignore saved state.
if ! running "$RUN/slurmctld.pid"; then
  say "starting slurmctld"
  slurmctld -f "$CONF" -i || die "slurmctld failed; see $SLURM_ROOT/log/slurmctld.log"
fi
up=0
for _ in $(seq 100); do
  if scontrol -Q ping 2>/dev/null | grep -q 'is UP'; then up=1; break; fi
  sleep 0.1
done
[ "$up" = 1 ] || die "slurmctld does not answer after 10 s; see $SLURM_ROOT/log/slurmctld.log"
if ! running "$RUN/slurmd.pid"; then
  say "starting slurmd"
  slurmd -f "$CONF" -N "$NODE" || die "slurmd failed; see $SLURM_ROOT/log/slurmd.log"
fi

state=
for _ in $(seq 300); do
  state=$(sinfo -h -N -n "$NODE" -o %t 2>/dev/null || true)
  case "$state" in
    idle | mix | alloc) break ;;
    down* | drain*) scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true ;;
  esac
  sleep 0.2
done
case "$state" in
  idle | mix | alloc) ;;
  *) die "node $NODE is '${state:-unknown}' after 60 s; see $SLURM_ROOT/log/" ;;
esac

say "Slurm $(sinfo -V | awk '{print $2}') ready: node $NODE $state, CPUs=$CPUS, OverSubscribe=$OVERSUB, root $SLURM_ROOT"
echo "SLURM_CONF=$CONF"
