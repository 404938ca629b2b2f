#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian 12 machine, idempotently:
# sipp (Debian package sip-tester), and for the Cassandra test node a JDK 17 and
# Maven when they are missing (scripts/cassandra/fetch.sh then fetches the
# Cassandra jars from Maven Central). Needs root or sudo only when something is
# missing.
set -euo pipefail

need_pkgs=()
command -v sipp >/dev/null 2>&1 || need_pkgs+=(sip-tester)
command -v mvn >/dev/null 2>&1 || need_pkgs+=(maven)
# Cassandra 5.0 needs JDK 17 (or 11; SIPRING_JAVA names one), not a newer JAVA_HOME.
if [ -z "${SIPRING_JAVA:-}" ] && ! compgen -G "/usr/lib/jvm/java-17-openjdk-*/bin/java" >/dev/null; then
  need_pkgs+=(openjdk-17-jre-headless)
fi

if [ ${#need_pkgs[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "install-deps: installing ${need_pkgs[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}"
fi
