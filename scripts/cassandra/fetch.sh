#!/usr/bin/env bash
# Fetch Apache Cassandra (cassandra-all) and its runtime jars from Maven Central
# with mvn, once: a complete earlier fetch (marked by lib/.complete) is reused.
# Where they go: see env.sh (default ~/.cache/sipring/cassandra/VERSION/lib).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

if [ -f "$CASS_LIB/.complete" ]; then
  exit 0
fi
command -v mvn >/dev/null 2>&1 || { echo "cassandra/fetch: mvn (Maven) is needed" >&2; exit 1; }
echo "cassandra/fetch: Cassandra $CASS_VERSION jars from Maven Central into $CASS_LIB" >&2
start=$(date +%s)
rm -rf "$CASS_LIB"
mkdir -p "$CASS_LIB" "$CASS_M2"
# A private copy of the pom so that Maven writes nothing into the repository.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$CASS_DIR/pom.xml" "$work/pom.xml"
log=$CASS_CACHE/fetch-$CASS_VERSION.log
if ! mvn -B -Dstyle.color=never -f "$work/pom.xml" -Dmaven.repo.local="$CASS_M2" \
  -Dcassandra.version="$CASS_VERSION" -Dcassandra.lib.dir="$CASS_LIB" package >"$log" 2>&1; then
  echo "cassandra/fetch: mvn failed; last lines of $log:" >&2
  tail -n 40 "$log" >&2
  exit 1
fi
compgen -G "$CASS_LIB/cassandra-all-$CASS_VERSION.jar" >/dev/null \
  || { echo "cassandra/fetch: cassandra-all-$CASS_VERSION.jar missing after mvn" >&2; exit 1; }
touch "$CASS_LIB/.complete"
echo "cassandra/fetch: $(ls "$CASS_LIB" | wc -l) jars, $(du -sh "$CASS_LIB" | cut -f1), in $(( $(date +%s) - start ))s" >&2
