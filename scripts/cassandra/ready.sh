#!/usr/bin/env bash
# Exit 0 iff a CQL server answers on HOST:PORT (default: env.sh's): sends a
# protocol v4 OPTIONS frame and expects SUPPORTED back. Plain bash (/dev/tcp),
# so a fresh machine needs no Python for it.
#   ready.sh [HOST [PORT]]
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
host=${1:-$CASS_HOST}
port=${2:-$CASS_PORT}
# v4 request header: version 0x04, flags 0, stream 0x0000, opcode 0x05 (OPTIONS), length 0.
# Response header: version 0x84, flags, stream, opcode 0x06 (SUPPORTED), length.
reply=$(timeout 3 bash -c '
  exec 3<>"/dev/tcp/$0/$1" || exit 1
  printf "\x04\x00\x00\x00\x05\x00\x00\x00\x00" >&3
  head -c 9 <&3 | od -An -tx1
' "$host" "$port" 2>/dev/null) || exit 1
set -- $reply
[ "${1:-}" = 84 ] && [ "${5:-}" = 06 ]
