#!/usr/bin/env bash
# bench-batch.sh [N] [--skip-slurm]
#
# Throughput of trivial batch jobs, Tessera's batch scheduler against Slurm 22.05, in one
# run on this machine (BENCHMARKS.md, "Batch scheduler vs Slurm"). N defaults to 10000.
#
# For each system, two modes:
#   loop   N sequential submissions, one client process each (`sbatch --wrap`,
#          `tessera batch submit --wrap`); every job appends its job id to a run file.
#   array  one array submission of N tasks (`--array 0-(N-1)`, no cap); every task appends
#          its array index.
# submit_s is the submission wall time; complete_s runs from the start of submission until
# the system's queue holds none of the run's jobs and the run file has N distinct lines.
# submit_per_s = N / submit_s, complete_per_s = distinct lines / complete_s.
#
# Slurm: scripts/slurm/start.sh under $SLURM_ROOT (default: inside this run's temp dir),
# one node with the machine's CPUs and OverSubscribe=FORCE:64 (128 slots on 2 CPUs); jobs
# are `-n1 -c1 --mem=16M -t1`, output to /dev/null.
# Tessera: `tessera up` on a free 127.0.0.1 port with $TESSERA_AGENTS agents (default 2,
# each an equal share of the machine); jobs are `--cpus 0.01 --mem 4` (up to ~200 at once).
#
# Output: one line per system and mode,
#   system=… mode=… n=… submit_s=… submit_per_s=… complete_s=… complete_per_s=… drain_s=…
#   ran=… unique=… submit_fail=… status=… load1=…
# then `ratio mode=…` lines (tessera/slurm) and `total_s=…`.
# Exits 1 if any run lost or duplicated a job (ran or unique ≠ N), had a failed submission
# or timed out; 2 on a setup error.
#
# Environment: TESSERA_BIN [target/release/tessera], TESSERA_AGENTS [2], SLURM_ROOT,
# BENCH_POLL_S [0.2], BENCH_TIMEOUT_S [N/2+300, per drain], KEEP_WORK=1 keeps the temp
# dir (it is also kept when a run fails). Needs root (Slurm), curl.
set -uo pipefail

usage() { echo "usage: $0 [N] [--skip-slurm]" >&2; exit 2; }
N=10000
SKIP_SLURM=0
for a in "$@"; do
  case "$a" in
    --skip-slurm) SKIP_SLURM=1 ;;
    -h | --help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    '' | *[!0-9]*) usage ;;
    *) N=$a ;;
  esac
done
[ "$N" -ge 1 ] || usage

REPO=$(cd "$(dirname "$0")/.." && pwd)
TESSERA=${TESSERA_BIN:-$REPO/target/release/tessera}
AGENTS=${TESSERA_AGENTS:-2}
POLL_S=${BENCH_POLL_S:-0.2}
TIMEOUT_S=${BENCH_TIMEOUT_S:-$((N / 2 + 300))}

say() { echo "[bench-batch] $*" >&2; }
die() { say "error: $*"; exit 2; }
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"$1\", ($2) }"; } # calc FORMAT EXPR

[ -x "$TESSERA" ] || die "$TESSERA not found; build it: cargo build --release --bin tessera"
command -v curl >/dev/null || die "curl is needed (to wait for Tessera's /health)"
if [ "$SKIP_SLURM" = 0 ] && [ "$(id -u)" != 0 ]; then
  die "Slurm needs root (slurmd starts the jobs); run as root or pass --skip-slurm"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tessera-bench-batch.XXXXXX") || die "mktemp failed"
chmod 755 "$WORK"
# A private copy: a concurrent `cargo build` must not swap the binary in the middle of a run.
mkdir -p "$WORK/bin" && cp "$TESSERA" "$WORK/bin/tessera" || die "cannot copy $TESSERA"
TESSERA_ORIG=$TESSERA
TESSERA=$WORK/bin/tessera
SLURM_ROOT=${SLURM_ROOT:-$WORK/slurm}
export SLURM_ROOT
SLURM_STARTED=0
TESSERA_PID=
FAILED=0
T_START=$(now)

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local t0
  t0=$(now)
  if [ -n "$TESSERA_PID" ] && kill -0 "$TESSERA_PID" 2>/dev/null; then
    say "stopping tessera up (pid $TESSERA_PID)"
    kill -TERM "$TESSERA_PID" 2>/dev/null
    for _ in $(seq 300); do kill -0 "$TESSERA_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$TESSERA_PID" 2>/dev/null; then
      say "tessera up (pid $TESSERA_PID) still running after 30 s; SIGKILL"
      kill -KILL "$TESSERA_PID" 2>/dev/null
    fi
    wait "$TESSERA_PID" 2>/dev/null
    say "tessera up stopped after $(calc %.1f "$(now) - $t0") s"
  fi
  if [ "$SLURM_STARTED" = 1 ]; then
    KEEP_STATE=$([ "$FAILED" = 0 ] && echo 0 || echo 1) "$REPO/scripts/slurm/stop.sh" || true
  fi
  if [ "${KEEP_WORK:-0}" = 1 ] || [ "$FAILED" != 0 ] || [ "$rc" != 0 ]; then
    say "kept $WORK (logs, run files)"
  else
    say "removing $WORK (the sandboxes of every job: can take a minute)"
    rm -rf "$WORK"
  fi
  say "cleanup took $(calc %.1f "$(now) - $t0") s"
  exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM

# ---------------------------------------------------------------------------- systems
SB=(--parsable -p batch -n 1 -c 1 --mem=16M -t 1 --output=/dev/null --error=/dev/null --no-requeue)

start_slurm() {
  local pidf=$SLURM_ROOT/run/slurmctld.pid line
  if [ -s "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then
    say "using the Slurm already running under $SLURM_ROOT (it is left running)"
  else
    SLURM_STARTED=1
  fi
  line=$("$REPO/scripts/slurm/start.sh" | tail -1) || die "scripts/slurm/start.sh failed (see above)"
  case "$line" in SLURM_CONF=*) export "${line?}" ;; *) die "start.sh printed '$line', not SLURM_CONF=…" ;; esac
}

stop_slurm() {
  if [ "$SLURM_STARTED" = 1 ]; then
    KEEP_STATE=$([ "$FAILED" = 0 ] && echo 0 || echo 1) "$REPO/scripts/slurm/stop.sh" || true
    SLURM_STARTED=0
  fi
}

free_port() {
  local p
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 40000))
    # Nothing must answer there (bash's /dev/tcp connects, so success means taken).
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  return 1
}

start_tessera() {
  local port i status_json active
  port=$(free_port) || die "no free port found"
  ADDR=127.0.0.1:$port
  mkdir -p "$WORK/tessera"
  say "starting $TESSERA up --listen $ADDR --agents $AGENTS --work-dir $WORK/tessera"
  "$TESSERA" up --listen "$ADDR" --agents "$AGENTS" --work-dir "$WORK/tessera" \
    >"$WORK/tessera-up.out" 2>"$WORK/tessera-up.err" &
  TESSERA_PID=$!
  for i in $(seq 300); do
    kill -0 "$TESSERA_PID" 2>/dev/null \
      || { tail -20 "$WORK/tessera-up.err" >&2; die "tessera up exited at start (log above)"; }
    curl -fsS -o /dev/null "http://$ADDR/health" 2>/dev/null && break
    [ "$i" = 300 ] && die "tessera up: no /health on $ADDR after 30 s; see $WORK/tessera-up.err"
    sleep 0.1
  done
  # Ready when every agent is active and the batch scheduler's framework is subscribed.
  for i in $(seq 300); do
    status_json=$("$TESSERA" status --master "$ADDR" -o json 2>/dev/null)
    # Agents are the first top-level list; count its ACTIVE entries only (frameworks have
    # a state too).
    active=$(awk '/^  "agents": \[/ { a = 1; next } /^  "[^"]+":/ { a = 0 }
                  a && /^      "state": "ACTIVE"/ { n++ } END { print n + 0 }' <<<"$status_json")
    if [ "$active" -ge "$AGENTS" ] && grep -q '"tessera-batch"' <<<"$status_json"; then break; fi
    [ "$i" = 300 ] && die "tessera up: $active of $AGENTS agents active (or no batch framework) after 60 s; see $WORK/tessera-up.err"
    sleep 0.2
  done
  say "tessera up ready on $ADDR ($active agents active)"
}

# live_count SYSTEM NAME: how many of the run's jobs are still queued or running; -1 if the
# system could not be asked.
live_count() {
  local out
  case "$1" in
    slurm) out=$(squeue -h -n "$2" -o %i 2>/dev/null) || { echo -1; return; }
      [ -z "$out" ] && echo 0 || wc -l <<<"$out" ;;
    tessera) out=$("$TESSERA" batch --server "$ADDR" queue -o json 2>/dev/null) || { echo -1; return; }
      # The instance is private to this run, so every live job is one of ours.
      grep -c '"id":' <<<"$out" ;;
  esac
}

submit_loop() { # SYSTEM NAME RUNFILE ERRFILE -> prints failures
  local fail=0 i
  case "$1" in
    slurm)
      for ((i = 0; i < N; i++)); do
        sbatch "${SB[@]}" -J "$2" --wrap "echo \$SLURM_JOB_ID >> $3" >/dev/null 2>>"$4" || fail=$((fail + 1))
      done ;;
    tessera)
      for ((i = 0; i < N; i++)); do
        "$TESSERA" batch --server "$ADDR" submit -J "$2" --cpus 0.01 --mem 4 \
          --wrap "echo \$TESSERA_JOB_ID >> $3" >/dev/null 2>>"$4" || fail=$((fail + 1))
      done ;;
  esac
  echo "$fail"
}

submit_array() { # SYSTEM NAME RUNFILE ERRFILE -> prints failures (N if the one call failed)
  case "$1" in
    slurm) sbatch "${SB[@]}" -J "$2" --array="0-$((N - 1))" \
      --wrap "echo \$SLURM_ARRAY_TASK_ID >> $3" >/dev/null 2>>"$4" ;;
    tessera) "$TESSERA" batch --server "$ADDR" submit -J "$2" --cpus 0.01 --mem 4 \
      --array "0-$((N - 1))" --wrap "echo \$TESSERA_ARRAY_INDEX >> $3" >/dev/null 2>>"$4" ;;
  esac && echo 0 || echo "$N"
}

# wait_done SYSTEM NAME RUNFILE DEADLINE -> ok | timeout | lost
# The run file is cheap to read, so it is checked every POLL_S; the queue is asked only
# once the file has N lines, or every 2 s (so that lost jobs end the wait), to keep the
# observer's load off both systems alike.
wait_done() {
  local sys=$1 name=$2 file=$3 deadline=$4 lines live t last_ask=0 empty_since=
  while :; do
    t=$(now)
    lines=$(wc -l <"$file")
    if [ "$lines" -ge "$N" ] || [ "$(calc %d "$t - $last_ask >= 2")" = 1 ]; then
      last_ask=$t
      live=$(live_count "$sys" "$name")
      if [ "$live" = 0 ]; then
        [ "$(sort -u "$file" | wc -l)" -ge "$N" ] && { echo ok; return; }
        # Queue empty, lines missing: allow 5 s for late appends, then call them lost.
        empty_since=${empty_since:-$t}
        [ "$(calc %d "$t - $empty_since > 5")" = 1 ] && { echo lost; return; }
      else
        empty_since=
      fi
    fi
    [ "$(calc %d "$t > $deadline")" = 1 ] && { echo timeout; return; }
    sleep "$POLL_S"
  done
}

declare -A RESULT # RESULT[system.mode.key]

run_case() { # SYSTEM MODE
  local sys=$1 mode=$2 name file err t0 t1 t2 fail st ran uniq sub_s comp_s line
  name=tb-$sys-$mode-$$
  file=$WORK/$sys-$mode.ran
  err=$WORK/$sys-$mode.err
  : >"$file"
  say "$sys $mode: submitting $N"
  t0=$(now)
  if [ "$mode" = loop ]; then
    fail=$(submit_loop "$sys" "$name" "$file" "$err")
  else
    fail=$(submit_array "$sys" "$name" "$file" "$err")
  fi
  t1=$(now)
  say "$sys $mode: submitted in $(calc %.1f "$t1 - $t0") s, waiting for completion"
  st=$(wait_done "$sys" "$name" "$file" "$(calc %.3f "$t1 + $TIMEOUT_S")")
  t2=$(now)
  ran=$(wc -l <"$file")
  uniq=$(sort -u "$file" | wc -l)
  sub_s=$(calc %.3f "$t1 - $t0")
  comp_s=$(calc %.3f "$t2 - $t0")
  [ "$st" = ok ] && [ "$ran" = "$N" ] && [ "$uniq" = "$N" ] && [ "$fail" = 0 ] || {
    FAILED=1
    [ "$st" = ok ] && st=bad-count
  }
  RESULT[$sys.$mode.submit]=$(calc %.1f "$N / $sub_s")
  RESULT[$sys.$mode.complete]=$(calc %.1f "$uniq / $comp_s")
  line="system=$sys mode=$mode n=$N submit_s=$sub_s submit_per_s=${RESULT[$sys.$mode.submit]}"
  line+=" complete_s=$comp_s complete_per_s=${RESULT[$sys.$mode.complete]} drain_s=$(calc %.3f "$t2 - $t1")"
  line+=" ran=$ran unique=$uniq submit_fail=$fail status=$st load1=$(cut -d' ' -f1 /proc/loadavg)"
  echo "$line"
  RESULT[$sys.$mode.line]=$line
  [ -s "$err" ] && say "$sys $mode: submission errors in $err: $(head -c 300 "$err")"
  if [ "$st" != ok ]; then
    say "$sys $mode: status $st (ran=$ran unique=$uniq of $N); cancelling what is left"
    if [ "$sys" = slurm ]; then scancel -n "$name" 2>/dev/null; fi
  fi
}

wait_slurm_empty() {
  for _ in $(seq 300); do [ "$(squeue -h -p batch 2>/dev/null | wc -l)" = 0 ] && return; sleep 0.2; done
}

# ---------------------------------------------------------------------------- run
say "n=$N machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
say "tessera $("$TESSERA" --version 2>/dev/null | awk '{print $2}') ($TESSERA_ORIG, built $(date -r "$TESSERA_ORIG" '+%F %T')) at $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?'); work dir $WORK"

if [ "$SKIP_SLURM" = 0 ]; then
  start_slurm
  say "slurm $(sinfo -V | awk '{print $2}'), SLURM_CONF=$SLURM_CONF"
  run_case slurm loop
  wait_slurm_empty
  run_case slurm array
  stop_slurm
fi

start_tessera
run_case tessera loop
run_case tessera array

if [ "$SKIP_SLURM" = 0 ]; then
  for mode in loop array; do
    s_sub=${RESULT[slurm.$mode.submit]} s_comp=${RESULT[slurm.$mode.complete]}
    t_sub=${RESULT[tessera.$mode.submit]} t_comp=${RESULT[tessera.$mode.complete]}
    r_comp=$(calc %.2f "($s_comp > 0) ? $t_comp / $s_comp : 0")
    if [ "$mode" = loop ]; then
      r_sub=$(calc %.2f "($s_sub > 0) ? $t_sub / $s_sub : 0")
      echo "ratio mode=$mode tessera/slurm submit=${r_sub}x complete=${r_comp}x target=3x" \
        "submit_met=$(calc %s "($r_sub >= 3) ? \"yes\" : \"no\"")" \
        "complete_met=$(calc %s "($r_comp >= 3) ? \"yes\" : \"no\"")"
    else
      # One array submission is one request on both sides: its rate says nothing.
      echo "ratio mode=$mode tessera/slurm submit=n/a complete=${r_comp}x target=3x" \
        "complete_met=$(calc %s "($r_comp >= 3) ? \"yes\" : \"no\"")"
    fi
  done
fi
echo "total_s=$(calc %.1f "$(now) - $T_START")"
[ "$FAILED" = 0 ] || { say "some run lost, duplicated or failed jobs (status above)"; exit 1; }
