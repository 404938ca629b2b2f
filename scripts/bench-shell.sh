#!/usr/bin/env bash
# CPU per call of blind UDP relays under a fixed sipp load, measured in one
# run: relay_std (blocking std socket), relay_glommio (naive glommio), and
# `sipring serve --relay` (the sipring shell) in several settings.
#
#   scripts/bench-shell.sh [RATE] [CALLS]     (default 2000 calls/s, 20000 calls)
#
# CPU = utime+stime of the relay process from /proc/PID/stat over the uac
# run, divided by the calls. sipp uac -> relay -> sipp uas, 6 messages per
# call (INVITE 180 200 ACK BYE 200), all on 127.0.0.1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RATE=${1:-2000}
CALLS=${2:-20000}
UAS_PORT=5390
RELAY_PORT=5370
TCK=$(getconf CLK_TCK)
scripts/install-deps.sh
cargo build --release -q -p sipring --bin sipring --example relay_std --example relay_glommio
BIN=target/release
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run() { # NAME CMD...
  local name=$1; shift
  sipp -sn uas -i 127.0.0.1 -p $UAS_PORT -nostdin >/dev/null 2>&1 &
  local uas_pid=$!; PIDS+=("$uas_pid")
  "$@" >/dev/null 2>&1 &
  local pid=$!; PIDS+=("$pid")
  sleep 1
  local t0; t0=$(cpu_ticks "$pid")
  local s0; s0=$(date +%s.%N)
  local rc=0
  sipp -sn uac -i 127.0.0.1 -p 5391 -r "$RATE" -m "$CALLS" -nostdin -timeout 120s \
       127.0.0.1:$RELAY_PORT >/dev/null 2>&1 || rc=$?
  local s1; s1=$(date +%s.%N)
  local t1; t1=$(cpu_ticks "$pid")
  kill "$pid" "$uas_pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  awk -v n="$name" -v t0="$t0" -v t1="$t1" -v tck="$TCK" -v calls="$CALLS" -v s0="$s0" -v s1="$s1" -v rc="$rc" \
    'BEGIN { cpu=(t1-t0)/tck; printf "%-34s cpu %6.2f s  %6.1f us/call  wall %5.1f s  sipp rc %s (0: no failed call)\n", n, cpu, cpu*1e6/calls, s1-s0, rc }'
  sleep 1
}

echo "# $(date -u +%FT%TZ) rate=$RATE calls=$CALLS load: $(cut -d' ' -f1-3 /proc/loadavg)"
HOP=127.0.0.1:$UAS_PORT
L=127.0.0.1:$RELAY_PORT
run relay_std            $BIN/examples/relay_std $L $HOP
run relay_glommio        $BIN/examples/relay_glommio $L $HOP
run "sipring relay cores=1"           $BIN/sipring serve --relay --listen $L --forward-to $HOP --cores 1
run "sipring relay cores=2"           $BIN/sipring serve --relay --listen $L --forward-to $HOP --cores 2
for us in 100 300; do
  cfg=$(mktemp); printf '[udp]\nbatch_interval_us = %s\n' "$us" > "$cfg"
  run "sipring relay cores=1 batch=${us}us"  $BIN/sipring serve --relay --config "$cfg" --listen $L --forward-to $HOP --cores 1
  rm -f "$cfg"
done
cfg=$(mktemp); printf '[udp]\nspin_before_park_us = 50\n' > "$cfg"
run "sipring relay cores=1 spin=50us"  $BIN/sipring serve --relay --config "$cfg" --listen $L --forward-to $HOP --cores 1
rm -f "$cfg"
