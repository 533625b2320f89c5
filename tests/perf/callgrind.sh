#!/usr/bin/env bash
# tests/perf/callgrind.sh: instructions per cache hit (or per miss) of one or more heimdall
# binaries, counted exactly by valgrind's callgrind (repeatable on a noisy machine, unlike CPU
# time).
#
# For each binary: NSD serves the benchmark zone (as in run.sh); heimdall runs under
# `valgrind --tool=callgrind` with one worker; WARM_PASSES passes over the warm-up file at
# WARM_QPS warm it; the counters are zeroed (`callgrind_control -z`); PASSES passes over the
# counted file at QPS are counted (`callgrind_control -d`); instructions per query = the dump's
# total / queries answered. WORKLOAD=hit (default): both files are the hit file's first QUERIES
# questions, so every counted query is a cache hit. WORKLOAD=miss: the warm-up is the miss
# file's first 1000 questions (upstream sockets, runtime and allocator warmed), the counted file
# its next QUERIES questions, each sent once: every counted query is a miss forwarded to NSD.
# The whole process is counted (worker, runtime threads, hit-ticket application), kernel time
# is not. Prints one line per binary and writes, per binary, the dump and its top functions by
# self instructions per query to OUT (top.WORKLOAD.TAG.txt; callgrind_annotate 3.19 charges
# the worker's whole cost to `clone`, so the script sums the dump's self costs itself).
#
# usage: tests/perf/callgrind.sh [BINARY...]      (default: target/release/heimdall)
# Env knobs (default for hit / miss): WORKLOAD (hit), QUERIES (2000 / 5000), PASSES (10 / 1),
#   QPS (2000 / 500), WARM_PASSES (2 / 1), WARM_QPS (1000 / 500), WORK (/tmp/heimdall-perf),
#   OUT (/tmp/heimdall-callgrind), ZONE_N (1000000), NETNS (1), AUTH_CPU (0), SERVER_CPU (1),
#   CACHE_SIM (0; 1: valgrind's cache simulation, printing simulated data misses per query)
set -euo pipefail

PERF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$PERF_DIR/../.." && pwd)
. "$PERF_DIR/lib.sh"
. "$PERF_DIR/servers.sh"

WORKLOAD=${WORKLOAD:-hit}
CACHE_SIM=${CACHE_SIM:-0}
case $WORKLOAD in
  hit) QUERIES=${QUERIES:-2000} PASSES=${PASSES:-10} QPS=${QPS:-2000}
    WARM_PASSES=${WARM_PASSES:-2} WARM_QPS=${WARM_QPS:-1000} ;;
  miss) QUERIES=${QUERIES:-5000} PASSES=${PASSES:-1} QPS=${QPS:-500}
    WARM_PASSES=${WARM_PASSES:-1} WARM_QPS=${WARM_QPS:-500} ;;
  *) echo "WORKLOAD must be hit or miss, not '$WORKLOAD'" >&2; exit 2 ;;
esac
WORK=${WORK:-/tmp/heimdall-perf}
OUT=${OUT:-/tmp/heimdall-callgrind}
ZONE=bench.test
ZONE_N=${ZONE_N:-1000000}
DATA=$WORK/data-$ZONE_N
RUN=$WORK/callgrind-run
SERVER_CPU=${SERVER_CPU-1}
AUTH_CPU=${AUTH_CPU-0}
NICE=""
ROUND=0
NEEDED_PKGS="dnsperf:dnsperf nsd:nsd dig:bind9-dnsutils valgrind:valgrind python3:python3 ss:iproute2
taskset:util-linux"

if [ $# -eq 0 ]; then set -- "$REPO/target/release/heimdall"; fi

# Runs dnsperf over the query file for `passes` passes at `qps`; prints the queries completed.
queries() {
  local file=$1 passes=$2 qps=$3 out
  out=$(taskset -c "$AUTH_CPU" dnsperf -s 127.0.0.1 -p "$(srv_port heimdall)" -d "$file" \
    -n "$passes" -Q "$qps" -c 1 -q 100 -t 2 2>&1) || { echo "$out" >&2; die "dnsperf failed"; }
  awk '/Queries completed:/ { print $3; exit }' <<<"$out"
}

# Counts one binary: prints "BINARY INSTRUCTIONS_PER_QUERY".
count() {
  local bin=$1 tag pid dump answered total
  tag=$(basename "$(dirname "$bin")")-$(basename "$bin")
  dump="$OUT/callgrind.$tag.out"
  rm -f "$dump" "$dump".*
  # start_heimdall runs the binary it is given: a wrapper puts heimdall under callgrind.
  local wrapper="$RUN/under-callgrind-$tag"
  local sim=""; [ "$CACHE_SIM" = 1 ] && sim="--cache-sim=yes"
  printf '#!/bin/sh\nexec valgrind --tool=callgrind %s --callgrind-out-file=%s --compress-strings=no --compress-pos=no %s "$@"\n' \
    "$sim" "$dump" "$bin" >"$wrapper"
  chmod +x "$wrapper"
  start_heimdall heimdall "$wrapper"
  pid=$(srv_pid heimdall)
  wait_dns "$(srv_port heimdall)" 300 "$pid" || { tail -5 "$OUT/logs/heimdall.log" >&2; die "heimdall under callgrind did not answer"; }
  queries "$RUN/warm.txt" "$WARM_PASSES" "$WARM_QPS" >/dev/null
  callgrind_control -z "$pid" >/dev/null 2>&1
  answered=$(queries "$RUN/counted.txt" "$PASSES" "$QPS")
  callgrind_control -d "$pid" >/dev/null 2>&1
  stop_server heimdall
  # The -d dump is the file with the highest part number; its "summary:" (or "totals:") line is
  # the instruction count since the zeroing.
  local part
  part=$(ls -1 "$dump".* 2>/dev/null | sort -t. -k"$(($(tr -cd . <<<"$dump" | wc -c) + 2))" -n | tail -1)
  [ -n "$part" ] || die "no callgrind dump for $bin"
  total=$(awk '/^(summary|totals):/ { print $2; exit }' "$part")
  top_functions "$part" "$answered" 30 >"$OUT/top.$WORKLOAD.$tag.txt"
  awk -v b="$bin" -v w="$WORKLOAD" -v t="$total" -v n="$answered" \
    'BEGIN { printf "%s %.0f instructions per %s (%d answered, %d instructions)\n", b, t / n, w, n, t }'
  if [ "$CACHE_SIM" = 1 ]; then
    # With --cache-sim=yes the dump's events are Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw:
    # simulated first-level and last-level data misses, per query.
    awk -v n="$answered" '/^events:/ { for (i = 2; i <= NF; i++) col[$i] = i }
      /^(summary|totals):/ { printf "  simulated data misses per query: D1 read %.1f, D1 write %.1f, LL read %.2f, LL write %.2f\n",
        $col["D1mr"] / n, $col["D1mw"] / n, $col["DLmr"] / n, $col["DLmw"] / n; exit }' "$part"
  fi
}

# Prints a dump's top N functions by self cost, in instructions per query. In a callgrind dump
# (uncompressed names and positions) a cost line ("POSITION COST") belongs to the last "fn=",
# except the one right after a "calls=" line, which is the callee's inclusive cost.
top_functions() {
  python3 - "$1" "$2" "$3" <<'PY'
import sys
from collections import Counter
dump, answered, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
self_cost, fn, after_call = Counter(), "?", False
with open(dump, errors="replace") as f:
    for line in f:
        c = line[:1]
        if c.isdigit() or c in "+-*":
            if not after_call:
                parts = line.split()
                if len(parts) > 1:
                    self_cost[fn] += int(parts[1])
            after_call = False
        elif line.startswith("fn="):
            fn, after_call = line[3:].strip(), False
        elif line.startswith("calls="):
            after_call = True
total = sum(self_cost.values()) or 1
print(f"{'instr/query':>11} {'share':>6}  function (self cost; {answered} queries)")
for name, cost in self_cost.most_common(n):
    print(f"{cost / max(answered, 1):11.1f} {100 * cost / total:5.1f}%  {name[:150]}")
PY
}

main() {
  mkdir -p "$WORK" "$RUN" "$OUT/logs"
  install_missing
  enter_netns "$@"
  trap 'stop_all' EXIT
  gen_data
  if [ "$WORKLOAD" = hit ]; then
    head -n "$QUERIES" "$DATA/hit.txt" >"$RUN/warm.txt"
    cp "$RUN/warm.txt" "$RUN/counted.txt"
  else
    head -n 1000 "$DATA/miss.txt" >"$RUN/warm.txt"
    sed -n "1001,$((1000 + QUERIES))p" "$DATA/miss.txt" >"$RUN/counted.txt"
  fi
  start_server nsd
  local bin
  for bin in "$@"; do
    [ -x "$bin" ] || die "not an executable: $bin"
    count "$(readlink -f "$bin")"
  done
  log "dumps and top functions in $OUT"
}

main "$@"
