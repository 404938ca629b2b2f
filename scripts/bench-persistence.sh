#!/usr/bin/env bash
# sipring's CPU per call with dialog persistence to Cassandra on vs off, at
# the same sipp load, alternated in one run; and the batching factor.
#
#   scripts/bench-persistence.sh [RATE] [SECS] [REPS] [CORES] [HOLD_MS]
#   (default 2000 calls/s, 10 s, 3 rounds, 1 core, calls held 1000 ms)
#
# sipp uac -> sipring serve -> sipp uas on 127.0.0.1 (INVITE 100 180 200 ACK
# BYE 200). "on" adds --store cassandra://ADDR/bench_persist (each call: an
# Upsert on the 200, a Delete on the BYE). CPU = utime+stime of the sipring
# process (all its threads, the storage thread included; /proc/PID/stat)
# from the start of the uac run to 1.5 s after its end (the last flush), per
# call. Requests and mutations come from sipring's /metrics, Cassandra's CPU
# from its JVM's /proc/PID/stat. The test node (scripts/cassandra) is
# started unless one of ours runs, and stopped afterwards if this started it.
# sipp, sipring and Cassandra share the machine's cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RATE=${1:-2000}
SECS=${2:-10}
REPS=${3:-3}
CORES=${4:-1}
HOLD=${5:-1000}
CALLS=$(( RATE * SECS ))
TCK=$(getconf CLK_TCK)
scripts/install-deps.sh
cargo build --release -q -p sipring --bin sipring
BIN=target/release/sipring
started=0
if ! scripts/cassandra/status.sh >/dev/null; then
  scripts/cassandra/start.sh
  started=1
fi
ADDR=$(scripts/cassandra/status.sh --address)
JVM=$(. scripts/cassandra/env.sh; cass_pid)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ "$started" = 1 ]; then scripts/cassandra/stop.sh; fi
}
trap cleanup EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
  || shuf -i 20000-60000 -n 1; }
metric() { # URL NAME
  { exec 3<>"/dev/tcp/${1%:*}/${1#*:}"; printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3; cat <&3; exec 3<&-; } 2>/dev/null \
    | awk -v n="$2" '$1 == n { printf "%d", $2; found=1 } END { if (!found) printf "0" }'
}

run() { # NAME [sipring serve args...]
  local name=$1; shift
  local base=$(( 21000 + RANDOM % 20000 ))
  local proxy=$base uas=$(( base + 10 )) uac=$(( base + 11 )) mport=$(( base + 12 ))
  sipp -sn uas -i 127.0.0.1 -p $uas -nostdin >/dev/null 2>&1 &
  local uas_pid=$!; PIDS+=("$uas_pid")
  $BIN serve --listen 127.0.0.1:$proxy --cores "$CORES" --forward-to 127.0.0.1:$uas \
    --metrics 127.0.0.1:$mport "$@" 2>/dev/null &
  local pid=$!; PIDS+=("$pid")
  sleep 2
  local t0 j0 s0 rc=0
  t0=$(cpu_ticks "$pid"); j0=$(cpu_ticks "$JVM"); s0=$(date +%s.%N)
  sipp -sn uac 127.0.0.1:$proxy -i 127.0.0.1 -p $uac -r "$RATE" -m "$CALLS" -d "$HOLD" \
    -nostdin -timeout 180s -timeout_error >/dev/null 2>&1 || rc=$?
  local s1; s1=$(date +%s.%N)
  sleep 1.5
  local t1 j1; t1=$(cpu_ticks "$pid"); j1=$(cpu_ticks "$JVM")
  local persisted requests dropped
  persisted=$(metric 127.0.0.1:$mport sipring_store_dialog_mutations_persisted_total)
  requests=$(metric 127.0.0.1:$mport sipring_store_dialog_requests_total)
  dropped=$(metric 127.0.0.1:$mport sipring_store_dialog_mutations_dropped_total)
  kill "$pid" "$uas_pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  awk -v n="$name" -v t0="$t0" -v t1="$t1" -v j0="$j0" -v j1="$j1" -v tck="$TCK" -v calls="$CALLS" \
      -v s0="$s0" -v s1="$s1" -v rc="$rc" -v p="$persisted" -v r="$requests" -v d="$dropped" \
    'BEGIN { cpu=(t1-t0)/tck; jvm=(j1-j0)/tck;
             printf "%-4s sipring %6.1f us/call  persisted %6d (%5.0f/s)  requests %5d (%.3f/call, %.1f mutations/request)  dropped %d  cassandra %6.1f us/call  wall %5.1f s  sipp rc %s\n",
               n, cpu*1e6/calls, p, p/(s1-s0), r, r/calls, (r>0 ? p/r : 0), d, jvm*1e6/calls, s1-s0, rc }'
  sleep 1
}

echo "# $(date -u +%FT%TZ) rate=$RATE calls=$CALLS cores=$CORES hold=${HOLD}ms load: $(cut -d' ' -f1-3 /proc/loadavg)"
for _ in $(seq "$REPS"); do
  run off
  run on --store "cassandra://$ADDR/bench_persist"
done
echo "# load: $(cut -d' ' -f1-3 /proc/loadavg)"
