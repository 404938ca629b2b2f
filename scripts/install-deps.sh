#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian 12 machine, idempotently:
# sipp (Debian package sip-tester). Other steps (Cassandra jars) are added by the
# scripts that need them. Needs root or sudo only when something is missing.
set -euo pipefail

need_pkgs=()
command -v sipp >/dev/null 2>&1 || need_pkgs+=(sip-tester)

if [ ${#need_pkgs[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "install-deps: installing ${need_pkgs[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}"
fi
