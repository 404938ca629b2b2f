#!/usr/bin/env bash
# Dialog-state writes to a real Cassandra, without SIP (examples/dialog_writes.rs):
# UNLOGGED BATCH per partition vs concurrent single statements at the same
# call rate, alternated in one run, then the batching factor against
# batch_window. Each "call" is an Upsert when answered and a Delete 1 s later.
#
#   scripts/bench-cassandra.sh [RATE] [SECS] [REPS]   (default 2000 calls/s, 10 s, 3)
#
# Starts the test node (scripts/cassandra/start.sh) unless one of ours runs,
# and stops it afterwards if it started it. The machine's 2 cores are shared by
# the writer threads, the storage thread and Cassandra.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RATE=${1:-2000}
SECS=${2:-10}
REPS=${3:-3}
cargo build --release -q -p sipring --example dialog_writes
BIN=target/release/examples/dialog_writes
started=0
if ! scripts/cassandra/status.sh >/dev/null; then
  scripts/cassandra/start.sh
  started=1
fi
[ "$started" = 1 ] && trap 'scripts/cassandra/stop.sh' EXIT
ADDR=$(scripts/cassandra/status.sh --address)
. scripts/cassandra/env.sh
PID=$(cass_pid)
echo "# $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# warm-up (JIT)"
$BIN --cassandra "$ADDR" --cassandra-pid "$PID" --rate "$RATE" --secs 5 --mode unlogged >/dev/null
$BIN --cassandra "$ADDR" --cassandra-pid "$PID" --rate "$RATE" --secs 5 --mode concurrent >/dev/null
echo "# batch_mode at $RATE calls/s, batch_max 64, batch_window 5 ms"
for _ in $(seq "$REPS"); do
  for mode in unlogged concurrent; do
    $BIN --cassandra "$ADDR" --cassandra-pid "$PID" --rate "$RATE" --secs "$SECS" --mode "$mode"
  done
done
echo "# batch_window at $RATE calls/s (unlogged)"
for w in 2000 5000 10000 20000; do
  $BIN --cassandra "$ADDR" --cassandra-pid "$PID" --rate "$RATE" --secs "$SECS" --window-us "$w" \
    | sed "s/^/window_us=$w /"
done
echo "# batch_window at $RATE calls/s, one core (unlogged)"
$BIN --cassandra "$ADDR" --cassandra-pid "$PID" --rate "$RATE" --secs "$SECS" --cores 1
echo "# load: $(cut -d' ' -f1-3 /proc/loadavg)"
