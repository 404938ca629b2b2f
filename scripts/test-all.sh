#!/usr/bin/env bash
# The whole test suite: installs what it needs, checks formatting and lints,
# then runs every test of the workspace. This is the README's test command and
# the only thing .ci/run runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-deps.sh

# Tests that need sipp fail (rather than skip) when it is missing.
export SIPRING_REQUIRE_SIPP=1

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

# A real single-node Cassandra for the Cassandra backend's tests: jars fetched
# from Maven Central on the first run (scripts/cassandra/fetch.sh), started
# here (idempotently) and always stopped on exit. Those tests fail, rather than
# skip, when it does not answer.
trap 'scripts/cassandra/stop.sh' EXIT
scripts/cassandra/start.sh
export SIPRING_REQUIRE_CASSANDRA=1
# The node is ours: the outage test may stop and restart it.
export SIPRING_CASSANDRA_MANAGED=1
SIPRING_CASSANDRA=$(scripts/cassandra/status.sh --address)
export SIPRING_CASSANDRA

cargo test --workspace --locked
