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
cargo test --workspace --locked
