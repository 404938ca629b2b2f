#!/usr/bin/env bash
# Stop the node that start.sh started: SIGTERM to its JVM (Cassandra's shutdown
# hook drains it), SIGKILL after SIPRING_CASSANDRA_STOP_TIMEOUT seconds (30).
# Only ever signals the pid in its pid file, and only when that pid is our
# CassandraDaemon (env.sh's cass_pid); a stale pid file is removed.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
timeout=${SIPRING_CASSANDRA_STOP_TIMEOUT:-30}
if ! pid=$(cass_pid); then
  rm -f "$CASS_PIDFILE"
  exit 0
fi
kill -TERM "$pid" 2>/dev/null || { rm -f "$CASS_PIDFILE"; exit 0; }
for _ in $(seq $(( timeout * 5 ))); do
  kill -0 "$pid" 2>/dev/null || { rm -f "$CASS_PIDFILE"; echo "cassandra: stopped (pid $pid)" >&2; exit 0; }
  sleep 0.2
done
echo "cassandra: pid $pid ignored SIGTERM for ${timeout}s, killing it" >&2
kill -KILL "$pid" 2>/dev/null || true
for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
rm -f "$CASS_PIDFILE"
