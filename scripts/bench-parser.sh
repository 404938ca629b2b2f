#!/usr/bin/env bash
# Parser benchmarks (BENCHMARKS.md, "Parser"): sipring-parser against rsip on
# the same messages in the same run.
#
#   scripts/bench-parser.sh            criterion timings, then the table
#   scripts/bench-parser.sh callgrind  instructions per message (valgrind)
#   scripts/bench-parser.sh profiles   release-profile variants (lto,
#                                      codegen-units, panic), instructions
#                                      and time per message for each
#
# Criterion's estimates are read from target/criterion; timings move with
# the machine's load (print `uptime` beside them), instruction counts do not.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MESSAGES=(invite_sdp_1k ok200_3via_4rr register_digest ack bye invite_3k5)
PATHS=(a_index b_routing c_views rsip_parse rsip_routing rsip_views)

# Instructions per message of PATH on MESSAGE with binary BIN:
# (Ir at N=2000 - Ir at N=0) / 2000.
instructions() {
    local bin=$1 path=$2 msg=$3 a b
    a=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$path" "$msg" 0 2>&1 |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p')
    b=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$path" "$msg" 2000 2>&1 |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p')
    echo $(((b - a) / 2000))
}

# Best of three wall-clock runs of N messages, in ns per message.
nanos() {
    local bin=$1 path=$2 msg=$3 n=${4:-300000} best=0 t0 t1 d
    for _ in 1 2 3; do
        t0=$(date +%s%N)
        "$bin" "$path" "$msg" "$n"
        t1=$(date +%s%N)
        d=$(((t1 - t0) / n))
        if ((best == 0 || d < best)); then best=$d; fi
    done
    echo "$best"
}

case "${1:-criterion}" in
criterion)
    uptime
    cargo bench -p sipring-bench --bench parser -- \
        --warm-up-time 1 --measurement-time "${MEASURE_S:-5}"
    uptime
    python3 - target/criterion <<'EOF'
import json, os, sys
root = sys.argv[1]
msgs = ["invite_sdp_1k", "ok200_3via_4rr", "register_digest", "ack", "bye", "invite_3k5"]
sizes = {}
for m in msgs:
    path = os.path.join("bench/fixtures/parser", {
        "invite_sdp_1k": "invite.sip", "ok200_3via_4rr": "ok200.sip",
        "register_digest": "register.sip", "ack": "ack.sip", "bye": "bye.sip",
        "invite_3k5": "large.sip"}[m])
    sizes[m] = os.path.getsize(path)
def ns(m, p):
    f = os.path.join(root, f"parser_{m}", p, "new", "estimates.json")
    return json.load(open(f))["median"]["point_estimate"]
print("| message (bytes) | (a) index | (b) + routing | (c) every view | rsip parse | rsip + routing | rsip + views | (b) vs rsip + routing | (c) vs rsip + views | (c) vs rsip parse |")
print("|---|---|---|---|---|---|---|---|---|---|")
for m in msgs:
    v = {p: ns(m, p) for p in ["a_index", "b_routing", "c_views", "rsip_parse", "rsip_routing", "rsip_views"]}
    mbs = lambda t: sizes[m] / t * 1e3  # bytes/ns -> MB/s
    cell = lambda p: f"{v[p]:.0f} ns ({mbs(v[p]):.0f} MB/s)"
    print(f"| {m} ({sizes[m]}) | {cell('a_index')} | {cell('b_routing')} | {cell('c_views')} | "
          f"{cell('rsip_parse')} | {cell('rsip_routing')} | {cell('rsip_views')} | "
          f"{v['rsip_routing'] / v['b_routing']:.1f}x | {v['rsip_views'] / v['c_views']:.1f}x | "
          f"{v['rsip_parse'] / v['c_views']:.1f}x |")
EOF
    ;;
callgrind)
    cargo build --release -p sipring-bench --example parser_count
    bin=target/release/examples/parser_count
    echo "| message | a_index | b_routing | c_views | rsip_parse | rsip_routing | rsip_views |"
    echo "|---|---|---|---|---|---|---|"
    for msg in "${MESSAGES[@]}"; do
        row="| $msg |"
        for path in "${PATHS[@]}"; do
            row="$row $(instructions "$bin" "$path" "$msg") |"
        done
        echo "$row"
    done
    ;;
profiles)
    # name lto codegen-units panic
    variants=(
        "chosen fat 1 abort"
        "fat-unwind fat 1 unwind"
        "thin thin 1 abort"
        "no-lto false 1 abort"
        "cargo-default false 16 unwind"
    )
    # Build every variant first, so that the timings run back to back.
    for v in "${variants[@]}"; do
        read -r name lto cgu panic <<<"$v"
        CARGO_TARGET_DIR=target/profile-$name CARGO_PROFILE_RELEASE_LTO=$lto \
            CARGO_PROFILE_RELEASE_CODEGEN_UNITS=$cgu CARGO_PROFILE_RELEASE_PANIC=$panic \
            cargo build --quiet --release -p sipring-bench --example parser_count
    done
    uptime
    echo "| profile (lto, codegen-units, panic) | (b) invite instr | (c) invite instr | (b) invite ns | (c) invite ns | (c) 3.5 KB ns | rsip views invite ns | binary bytes |"
    echo "|---|---|---|---|---|---|---|---|"
    for v in "${variants[@]}"; do
        read -r name lto cgu panic <<<"$v"
        bin=target/profile-$name/release/examples/parser_count
        echo "| $name ($lto, $cgu, $panic) | $(instructions "$bin" b_routing invite_sdp_1k) |" \
            "$(instructions "$bin" c_views invite_sdp_1k) |" \
            "$(nanos "$bin" b_routing invite_sdp_1k) | $(nanos "$bin" c_views invite_sdp_1k) |" \
            "$(nanos "$bin" c_views invite_3k5) | $(nanos "$bin" rsip_views invite_sdp_1k 50000) |" \
            "$(stat -c %s "$bin") |"
    done
    uptime
    ;;
*)
    echo "usage: $0 [criterion|callgrind|profiles]" >&2
    exit 2
    ;;
esac
