#!/usr/bin/env bash
# Say whether our node runs and answers CQL. Exit 0: running and ready;
# 1: not running; 2: running but not (yet) answering CQL.
#   status.sh --address   prints only its CQL address (HOST:PORT)
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
if [ "${1:-}" = "--address" ]; then
  echo "$CASS_HOST:$CASS_PORT"
  exit 0
fi
if ! pid=$(cass_pid); then
  echo "cassandra: not running (base $CASS_BASE)"
  exit 1
fi
if "$CASS_DIR/ready.sh"; then
  echo "cassandra: running, pid $pid, CQL on $CASS_HOST:$CASS_PORT (base $CASS_BASE)"
  exit 0
fi
echo "cassandra: running, pid $pid, CQL not answering on $CASS_HOST:$CASS_PORT yet"
exit 2
